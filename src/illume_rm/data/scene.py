"""Scene graphs of the shapes world, and the claims a rationale can make about one.

What is true of a scene belongs to the dataset that made it: the generator in
``shapes.py`` writes its references in the language parsed here, and the
oracle selector and the grounded-rate metric check rationales with
:func:`check_rationale`. A scene graph is a plain dict (it travels in
``Example.meta["scene"]``)::

    {"grid": 3, "objects": [{"shape": "circle", "color": "red", "size": "small",
                             "row": 0, "col": 2}, ...]}

A rationale is split into clauses; every clause must parse into claims and
every claim must hold. A clause that cannot be parsed is *not* acceptable.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

SHAPES = ("circle", "square", "triangle")
COLORS = ("red", "green", "blue", "yellow", "purple", "gray")
SIZES = ("small", "large")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_SHAPE_WORDS = {
    "circle": "circle", "circles": "circle", "ball": "circle", "balls": "circle", "disc": "circle",
    "square": "square", "squares": "square", "box": "square", "boxes": "square",
    "triangle": "triangle", "triangles": "triangle",
    "rectangle": "rectangle", "rectangles": "rectangle",  # easy-VQA's shapes
}
_ANY_WORDS = {"object", "objects", "thing", "things", "shape", "shapes", "one", "ones", "item", "items"}
_COLOR_WORDS = {c: c for c in COLORS + ("teal", "black", "brown")} | {"grey": "gray", "violet": "purple"}
_SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small", "large": "large", "big": "large"}

# Where on the 3x3 grid: (row or None, col or None).
_PLACES = {
    "top left": (0, 0), "upper left": (0, 0), "top right": (0, 2), "upper right": (0, 2),
    "bottom left": (2, 0), "lower left": (2, 0), "bottom right": (2, 2), "lower right": (2, 2),
    "top": (0, None), "bottom": (2, None), "left": (None, 0), "right": (None, 2),
    "centre": (1, 1), "center": (1, 1), "middle": (1, 1),
    "top middle": (0, 1), "bottom middle": (2, 1), "middle left": (1, 0), "middle right": (1, 2),
}
_PLACE_RE = re.compile(
    r"(?:in|at|on)\s+the\s+(" + "|".join(sorted(map(re.escape, _PLACES), key=len, reverse=True)) + r")"
    r"(?:\s+(?:of the (?:image|picture|scene)|corner|side|row|column))?$"
)
_RELATIONS = {
    "to the left of": "left", "left of": "left", "on the left of": "left",
    "to the right of": "right", "right of": "right", "on the right of": "right",
    "above": "above", "over": "above", "higher than": "above",
    "below": "below", "under": "below", "beneath": "below", "lower than": "below",
}
_REL_RE = re.compile(
    r"^(.*?)\s+(?:is|are)\s+(" + "|".join(sorted(map(re.escape, _RELATIONS), key=len, reverse=True)) + r")\s+(.*)$"
)
# "the top left is a small red circle", "the centre has nothing": a single grid cell as the subject
_CELLS = {k: v for k, v in _PLACES.items() if None not in v and k != "middle"}
_CELL_SUBJECT_RE = re.compile(
    r"^the (" + "|".join(sorted(map(re.escape, _CELLS), key=len, reverse=True)) + r")(?: cell| corner)?"
    r" (?:is|has|holds|contains|shows) (.+)$"
)
_ATTR_NAMES = {"color": "color", "colour": "color", "shape": "shape", "size": "size"}


def place_phrase(row: int, col: int) -> str:
    """The exact phrase for a grid cell: 'in the top left', 'in the middle right', 'in the centre'.

    The parser also reads looser phrases ('on the left' is any cell of the left column).
    """
    vert = ("top", "middle", "bottom")[row]
    horiz = ("left", "middle", "right")[col]
    if row == 1 and col == 1:
        return "in the centre"
    return f"in the {vert} {horiz}"


def number_word(n: int) -> str:
    return NUMBERS[n] if 0 <= n < len(NUMBERS) else str(n)


@dataclass
class Description:
    """A noun phrase: the attributes an object must have to be meant by it."""

    shape: str | None = None
    color: str | None = None
    size: str | None = None
    row: int | None = None
    col: int | None = None
    definite: bool = False
    count: int | None = None  # "two red objects"
    negated: bool = False  # "no red circle"

    def matches(self, obj: dict) -> bool:
        return all(
            want is None or obj.get(key) == want
            for key, want in (("shape", self.shape), ("color", self.color), ("size", self.size),
                              ("row", self.row), ("col", self.col))
        )

    def select(self, scene: dict) -> list[dict]:
        return [o for o in scene["objects"] if self.matches(o)]


@dataclass
class Verdict:
    """The outcome of checking a rationale: every claim true, and what failed."""

    ok: bool
    claims: int = 0
    problems: list[str] = field(default_factory=list)
    mentioned: list[int] = field(default_factory=list)  # indices of objects the text refers to


class _Unparsed(Exception):
    pass


class _Checker:
    def __init__(self, scene: dict, focus: list[int] | None = None):
        self.scene = scene
        self.focus = focus or []
        self.claims = 0
        self.problems: list[str] = []
        self.mentioned: set[int] = set()

    # -- noun phrases -------------------------------------------------------------
    def parse_np(self, text: str) -> Description:
        words = text.strip().split()
        if not words:
            raise _Unparsed("empty noun phrase")
        d = Description()
        head = words[0]
        if head in ("the", "this", "that"):
            d.definite = True
            words = words[1:]
        elif head in ("a", "an"):
            words = words[1:]
        elif head == "no":
            d.negated = True
            words = words[1:]
        elif head in NUMBERS or head.isdigit():
            d.count = NUMBERS.index(head) if head in NUMBERS else int(head)
            words = words[1:]
        elif head in ("only", "just"):
            return self.parse_np(" ".join(words[1:]))
        rest = " ".join(words)
        m = re.search(r"\s+(?:that is|which is)?\s*((?:in|at|on)\s+the\s+.*)$", rest)
        if m and _PLACE_RE.match(m.group(1)):
            d.row, d.col = _PLACES[_PLACE_RE.match(m.group(1)).group(1)]
            rest = rest[: m.start()]
        words = rest.split()
        if not words:
            raise _Unparsed(f"no noun in '{text}'")
        noun = words[-1]
        if noun in _SHAPE_WORDS:
            d.shape = _SHAPE_WORDS[noun]
        elif noun not in _ANY_WORDS:
            raise _Unparsed(f"unknown noun '{noun}'")
        for w in words[:-1]:
            if w in _COLOR_WORDS:
                d.color = _COLOR_WORDS[w]
            elif w in _SIZE_WORDS:
                d.size = _SIZE_WORDS[w]
            elif w in ("other", "only", "single"):
                continue
            else:
                raise _Unparsed(f"unknown word '{w}' in '{text}'")
        return d

    def resolve(self, d: Description, text: str) -> dict | None:
        """The one object a definite description picks out, or a problem."""
        found = d.select(self.scene)
        if len(found) != 1:
            self.problems.append(
                f"'{text}' refers to {len(found)} objects" if found else f"there is no {text.removeprefix('the ')}"
            )
            return None
        self.mentioned.add(self.scene["objects"].index(found[0]))
        return found[0]

    def claim(self, ok: bool, problem: str) -> None:
        self.claims += 1
        if not ok:
            self.problems.append(problem)

    def mention(self, objs: list[dict]) -> None:
        for o in objs:
            self.mentioned.add(self.scene["objects"].index(o))

    # -- clauses ------------------------------------------------------------------
    def existential(self, np_text: str, plural: bool) -> None:
        d = self.parse_np(np_text)
        found = d.select(self.scene)
        if d.negated:
            self.claim(not found, f"there is a {np_text.removeprefix('no ')}")
        elif d.count is not None:
            self.mention(found)
            self.claim(len(found) == d.count, f"there are {len(found)}, not {d.count}, {np_text.split(' ', 1)[-1]}")
        else:
            self.mention(found[:1])
            self.claim(bool(found), f"there is no {np_text.removeprefix('a ').removeprefix('an ')}")

    def predicate(self, subject: str, pred: str) -> None:
        """'<subject> is <pred>' where pred is an attribute, a place, or a noun phrase."""
        subjects = [s for s in re.split(r"\s*(?:,|\band\b)\s*", subject) if s]
        targets = []
        for s in subjects:
            if s in ("both", "both of them", "they", "both objects"):
                continue
            if s == "it":  # the one object the question is about, when it is about one
                if len(self.focus) != 1:
                    raise _Unparsed("'it' refers to no single object of the question")
                targets.append(self.scene["objects"][self.focus[0]])
                self.mentioned.add(self.focus[0])
                continue
            d = self.parse_np(s)
            if not d.definite:
                raise _Unparsed(f"'{s}' is not a definite description")
            obj = self.resolve(d, s)
            if obj is None:
                self.claims += 1
                return
            targets.append(obj)
        if not targets:
            raise _Unparsed("no subject")
        pred = pred.strip()
        pred = re.sub(r"^(?:both|all|each)\s+", "", pred)
        m = re.match(r"^(?:the\s+)?(same|different)\s+(colou?r|shape|size)s?(?:\s+as\s+(.*))?$", pred) or \
            re.match(r"^(?:of\s+)?(?:the\s+)?(same|different)\s+(colou?r|shape|size)s?(?:\s+as\s+(.*))?$", pred)
        if m:
            key = _ATTR_NAMES[m.group(2)]
            if m.group(3):
                other = self.parse_np(m.group(3))
                obj = self.resolve(other, m.group(3))
                if obj is None:
                    self.claims += 1
                    return
                targets.append(obj)
            if len(targets) < 2:
                raise _Unparsed("a comparison needs two objects")
            values = {t[key] for t in targets}
            same = len(values) == 1
            self.claim(same == (m.group(1) == "same"), f"they are not {m.group(1)} in {key}")
            return
        if _PLACE_RE.match(pred):
            row, col = _PLACES[_PLACE_RE.match(pred).group(1)]
            for t in targets:
                self.claim((row is None or t["row"] == row) and (col is None or t["col"] == col),
                           f"the {t['color']} {t['shape']} is not {pred}")
            return
        words = pred.split()
        if len(words) >= 1 and words[0] in ("a", "an"):
            d = self.parse_np(pred)
            for t in targets:
                self.claim(d.matches(t), f"the {t['color']} {t['shape']} is not {pred}")
            return
        for w in words:
            if w in _COLOR_WORDS:
                for t in targets:
                    self.claim(t["color"] == _COLOR_WORDS[w], f"the {t['shape']} is {t['color']}, not {w}")
            elif w in _SIZE_WORDS:
                for t in targets:
                    self.claim(t["size"] == _SIZE_WORDS[w], f"the {t['color']} {t['shape']} is {t['size']}, not {w}")
            elif w in _SHAPE_WORDS:
                for t in targets:
                    self.claim(t["shape"] == _SHAPE_WORDS[w], f"the {t['color']} object is a {t['shape']}, not a {w}")
            elif w in ("both", "and", "also", "too"):
                continue
            else:
                raise _Unparsed(f"cannot read '{pred}'")

    def relation(self, a_text: str, rel: str, b_text: str) -> None:
        a, b = self.parse_np(a_text), self.parse_np(b_text)
        if not (a.definite and b.definite):
            raise _Unparsed("relations need definite descriptions")
        oa, ob = self.resolve(a, a_text), self.resolve(b, b_text)
        if oa is None or ob is None:
            self.claims += 1
            return
        kind = _RELATIONS[rel]
        holds = {
            "left": oa["col"] < ob["col"], "right": oa["col"] > ob["col"],
            "above": oa["row"] < ob["row"], "below": oa["row"] > ob["row"],
        }[kind]
        self.claim(holds, f"{a_text} is not {rel} {b_text}")

    def enumeration(self, items: list[str], exhaustive: bool) -> None:
        descs = [self.parse_np(i) for i in items]
        used: set[int] = set()
        for text, d in zip(items, descs):
            n = d.count or 1
            free = [i for i, o in enumerate(self.scene["objects"]) if i not in used and d.matches(o)]
            self.claim(len(free) >= n, f"there is no {text.removeprefix('a ').removeprefix('an ')}")
            used.update(free[:n])
        self.mentioned.update(used)
        if exhaustive:
            self.claim(len(used) == len(self.scene["objects"]),
                       f"the scene has {len(self.scene['objects'])} objects, not {len(used)}")

    def cell(self, place: str, pred: str) -> None:
        """'the <cell> is/has <noun phrase | nothing>': what is in one grid cell."""
        row, col = _CELLS[place]
        here = [o for o in self.scene["objects"] if o["row"] == row and o["col"] == col]
        if pred in ("nothing", "empty", "no object", "no objects", "no shape"):
            self.claim(not here, f"the {place} is not empty")
            return
        d = self.parse_np(pred if pred.split()[0] in ("a", "an") else "a " + pred)
        if d.negated or d.count is not None or d.row is not None:
            raise _Unparsed(f"cannot read 'the {place} ... {pred}'")
        self.mention(here)
        self.claim(bool(here) and d.matches(here[0]), f"the {place} does not hold {pred}")

    def clause(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        m = _CELL_SUBJECT_RE.match(text)
        if m:
            self.cell(m.group(1), m.group(2).strip())
            return
        m = re.match(r"^there (?:is|are)\s+(.*)$", text)
        if m:
            items = [i for i in re.split(r"\s*(?:,|\band\b)\s*", m.group(1)) if i]
            if len(items) == 1:
                self.existential(items[0], plural=False)
            else:
                self.enumeration(items, exhaustive=False)
            return
        m = re.match(r"^(\w+) (?:objects?|shapes?|things?):\s*(.+)$", text)  # the captions' form
        if m and (m.group(1) in NUMBERS or m.group(1).isdigit()):
            n = NUMBERS.index(m.group(1)) if m.group(1) in NUMBERS else int(m.group(1))
            self.claim(len(self.scene["objects"]) == n, f"the scene has {len(self.scene['objects'])} objects, not {n}")
            items = [i for i in re.split(r"\s*(?:,|\band\b)\s*", m.group(2)) if i]
            self.enumeration(items, exhaustive=True)
            return
        m = re.match(r"^(?:the (?:only )?(?:objects|shapes|things) (?:are|in the (?:image|picture|scene) are)"
                     r"|the (?:image|picture|scene) (?:shows|contains|has) only"
                     r"|(?:it|the image|the picture|the scene) only (?:shows|contains|has))\s+(.*)$", text)
        if m:
            items = [i for i in re.split(r"\s*(?:,|\band\b)\s*", m.group(1)) if i]
            self.enumeration(items, exhaustive=True)
            return
        m = re.match(r"^(?:the (?:image|picture|scene) (?:shows|contains|has)|i see|we see|i can see|you can see)\s+(.*)$", text)
        if m:
            items = [i for i in re.split(r"\s*(?:,|\band\b)\s*", m.group(1)) if i]
            self.enumeration(items, exhaustive=False)
            return
        m = _REL_RE.match(text)
        if m:
            self.relation(m.group(1), m.group(2), m.group(3))
            return
        m = re.match(r"^(.*?)\s+(?:is|are)\s+(.*)$", text)
        if m:
            self.predicate(m.group(1), m.group(2))
            return
        m = re.match(r"^(.*?)\s+(?:has|have)\s+(?:the\s+)?(same|different)\s+(colou?r|shape|size)s?(?:\s+as\s+(.*))?$", text)
        if m:
            self.predicate(m.group(1), f"{m.group(2)} {m.group(3)}" + (f" as {m.group(4)}" if m.group(4) else ""))
            return
        raise _Unparsed(f"cannot read '{text}'")


def split_clauses(text: str) -> list[str]:
    """Split a rationale into clauses, keeping noun-phrase lists ("a red circle and a blue square") whole."""
    text = text.lower().strip()
    text = re.sub(r"\b(it|there|that)'s\b", r"\1 is", text)
    text = re.sub(r"^(?:because|since|as|seeing that)\s+", "", text)
    text = re.sub(r"[.!]+\s*$", "", text)
    chunks = [c.strip() for c in re.split(r"\s*(?:;|\.\s|,?\s+(?:while|whereas|but)\s+)\s*", text) if c.strip()]
    clauses: list[str] = []
    verb = re.compile(r"\b(?:is|are|has|have|shows|contains|see)\b")
    for chunk in chunks:
        parts = [p.strip() for p in re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", chunk) if p.strip()]
        current: list[str] = []
        for p in parts:
            starts_clause = bool(verb.search(p)) and (p.startswith(("there ", "the ", "it ", "i ", "we ", "you ", "both ", "they ")) or not current)
            if starts_clause and current and verb.search(" ".join(current)):
                clauses.append(" and ".join(current))
                current = [p]
            else:
                current.append(p)
        if current:
            clauses.append(" and ".join(current))
    return clauses


def check_rationale(scene: dict, text: str, focus: list[int] | None = None) -> Verdict:
    """Check every claim of a rationale against a scene graph.

    Acceptable only when the text parses into at least one claim and every
    claim is true. Words outside the shapes world are unparsed, and unparsed
    text is not acceptable; "it" is the question's object when ``focus`` (the
    indices of the objects the question is about) names exactly one.
    """
    checker = _Checker(scene, focus)
    try:
        for clause in split_clauses(text):
            checker.clause(clause)
    except _Unparsed as exc:
        return Verdict(False, checker.claims, checker.problems + [f"unparsed: {exc}"], sorted(checker.mentioned))
    ok = checker.claims > 0 and not checker.problems
    problems = checker.problems or ([] if checker.claims else ["no claim made"])
    return Verdict(ok, checker.claims, problems, sorted(checker.mentioned))


def tokens_of_interest(text: str) -> set[str]:
    """The shapes-world words (colours, shapes, sizes) a text speaks of, normalised."""
    out = set()
    for w in re.findall(r"[a-z]+", text.lower()):
        for table in (_COLOR_WORDS, _SHAPE_WORDS, _SIZE_WORDS):
            if w in table:
                out.add(table[w])
    return out


def is_grounded(meta: dict, question: str, rationale: str) -> bool:
    """What the oracle and the grounded rate ask: every claim true of ``meta["scene"]``, and the
    rationale speaks of what the question asks about (an object in ``meta["focus"]``, or, as in
    "there is no red circle", a colour, shape or size the question names)."""
    verdict = check_rationale(meta["scene"], rationale, meta.get("focus"))
    if not verdict.ok:
        return False
    if set(meta.get("focus", [])) & set(verdict.mentioned):
        return True
    return bool(tokens_of_interest(question) & tokens_of_interest(rationale))
