"""Scene graphs of the shapes world, and the claims a rationale can make about one.

What is true of a scene belongs to the dataset that made it: the generator in
``shapes.py`` writes its references in the language parsed here, and the
oracle selector and the grounded-rate metric check rationales with
:func:`is_grounded`. A scene graph is a plain dict (it travels in
``Example.meta["scene"]``)::

    {"grid": 3, "objects": [{"shape": "circle", "color": "red", "size": "small",
                             "row": 0, "col": 2}, ...]}

A rationale is split into clauses; every clause must parse into claims and every
claim must hold (:func:`check_rationale`). A clause that cannot be read, a guess
("maybe", "probably"), or a word outside the shapes world makes the rationale
*not* acceptable. :func:`is_grounded` also asks that what the rationale says
*supports the candidate's answer* to the question: it pins down the asked
attribute of the asked object, the presence or absence of the asked thing, how
many there are, whether two objects share the attribute, or where one object is
relative to the other. The vocabulary (synonyms, places, relations) is in
``data_cards/shapes.md``; ``tests/data/oracle_cases.yaml`` holds a careful
person's verdicts on rationales written by hand.

Everything here runs in time linear in the text: rationales longer than
``MAX_CHARS`` and characters outside plain ASCII text are refused up front.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

SHAPES = ("circle", "square", "triangle")
COLORS = ("red", "green", "blue", "yellow", "purple", "gray")
SIZES = ("small", "large")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MAX_CHARS = 400

_SHAPE_WORDS = {
    "circle": "circle", "circles": "circle", "ball": "circle", "balls": "circle", "disc": "circle",
    "discs": "circle", "disk": "circle", "disks": "circle",
    "square": "square", "squares": "square", "box": "square", "boxes": "square",
    "triangle": "triangle", "triangles": "triangle",
    "rectangle": "rectangle", "rectangles": "rectangle",  # easy-VQA's shapes
}
_ANY_WORDS = {"object", "objects", "thing", "things", "shape", "shapes", "one", "ones", "item", "items"}
_PLURALS = {"circles", "balls", "discs", "disks", "squares", "boxes", "triangles", "rectangles", "objects", "things",
            "shapes", "ones", "items"}
_COLOR_WORDS = {c: c for c in COLORS + ("teal", "black", "brown")} | {"grey": "gray", "violet": "purple"}
_SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small", "large": "large", "big": "large",
               "huge": "large"}
_KEYS = ("shape", "color", "size", "row", "col")

# Where on the 3x3 grid: (row or None, col or None).
_PLACES = {
    "top left": (0, 0), "upper left": (0, 0), "top right": (0, 2), "upper right": (0, 2),
    "bottom left": (2, 0), "lower left": (2, 0), "bottom right": (2, 2), "lower right": (2, 2),
    "top": (0, None), "bottom": (2, None), "left": (None, 0), "right": (None, 2),
    "centre": (1, 1), "center": (1, 1), "middle": (1, 1),
    "top middle": (0, 1), "top centre": (0, 1), "top center": (0, 1),
    "bottom middle": (2, 1), "bottom centre": (2, 1), "bottom center": (2, 1),
    "middle left": (1, 0), "centre left": (1, 0), "center left": (1, 0),
    "middle right": (1, 2), "centre right": (1, 2), "center right": (1, 2),
    "top row": (0, None), "upper row": (0, None), "middle row": (1, None), "centre row": (1, None),
    "center row": (1, None), "bottom row": (2, None), "lower row": (2, None),
    "left column": (None, 0), "middle column": (None, 1), "centre column": (None, 1), "center column": (None, 1),
    "right column": (None, 2), "left side": (None, 0), "right side": (None, 2),
}
_PLACE_ALT = "|".join(sorted(map(re.escape, _PLACES), key=len, reverse=True))
_PLACE_RE = re.compile(r"(?:in|at|on) the (" + _PLACE_ALT + r")(?: (?:corner|cell|part|half))?"
                       r"(?: of the (?:image|picture|scene|grid))?$")
_RELATIONS = {
    "to the left of": "left", "left of": "left", "on the left of": "left",
    "to the right of": "right", "right of": "right", "on the right of": "right",
    "above": "above", "over": "above", "higher than": "above",
    "below": "below", "under": "below", "beneath": "below", "underneath": "below", "lower than": "below",
    "next to": "next", "beside": "next", "adjacent to": "next",
    "larger than": "larger", "bigger than": "larger", "smaller than": "smaller",
}
_REL_RE = re.compile(
    r"^(.+?) (?:is|are) (directly |just |immediately )?("
    + "|".join(sorted(map(re.escape, _RELATIONS), key=len, reverse=True)) + r") (.+)$"
)
# "the top left is a small red circle", "the centre has nothing": a single grid cell as the subject
_CELLS = {k: v for k, v in _PLACES.items() if None not in v and k != "middle"}
_CELL_SUBJECT_RE = re.compile(
    r"^the (" + "|".join(sorted(map(re.escape, _CELLS), key=len, reverse=True)) + r")(?: cell| corner)?"
    r" (?:is|has|holds|contains|shows) (.+)$"
)
_ATTR_NAMES = {"color": "color", "colour": "color", "shape": "shape", "size": "size"}
_HEDGE_RE = re.compile(r"\b(?:maybe|perhaps|probably|possibly|likely|might|i think|i guess|i believe|may be|"
                       r"could be|must be|not sure)\b")
_ALLOWED_RE = re.compile(r"[a-z0-9 ,;:.!?'\-]*", re.ASCII)
_VERB_RE = re.compile(r"\b(?:is|are|has|have|shows|show|contains|contain|see|holds|hold)\b")
_SUBJECT_STARTS = ("there ", "the ", "it ", "i ", "we ", "you ", "both ", "they ", "which ", "nothing ", "no ",
                   "every ", "all ", "each ", "only ")


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


def _number(word: str) -> int | None:
    if word in NUMBERS:
        return NUMBERS.index(word)
    if re.fullmatch(r"[0-9]{1,2}", word, re.ASCII):
        return int(word)
    return None


@dataclass
class Description:
    """A noun phrase: the attributes an object must have to be meant by it, and how it quantifies."""

    shape: str | None = None
    color: str | None = None
    size: str | None = None
    row: int | None = None
    col: int | None = None
    definite: bool = False
    count: int | None = None  # "two red objects", "exactly two", "one circle"
    negated: bool = False     # "no red circle", "zero circles", "not a circle"
    plural: bool = False      # "the triangles", "circles"
    universal: bool = False   # "every object", "all the objects", "each circle"
    other: bool = False       # "no other circle"
    only: bool = False        # "the only circle"

    def attrs(self) -> dict:
        return {k: getattr(self, k) for k in _KEYS if getattr(self, k) is not None}

    def matches(self, obj: dict) -> bool:
        return all(obj.get(k) == v for k, v in self.attrs().items())



def _implies(a: dict, b: dict) -> bool:
    """Whatever has attributes ``a`` has attributes ``b`` (``a`` is at least as specific)."""
    return all(a.get(k) == v for k, v in b.items())


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
    """Reads clauses into claims (each true or not of the scene) and facts (what the text says,
    for deciding whether it supports an answer)."""

    def __init__(self, scene: dict, focus: list[int] | None = None):
        self.scene = scene
        self.objects = scene["objects"]
        self.focus = focus or []
        self.claims = 0
        self.problems: list[str] = []
        self.mentioned: set[int] = set()
        # facts
        self.attrs: dict[int, dict] = {}              # object -> attributes the text gives it
        self.exists: list[dict] = []                   # "there is a D"
        self.nones: list[dict] = []                    # "there is no D"
        self.counts: list[tuple[dict, int]] = []       # exactly n objects are D
        self.closed: list[tuple[dict, set[int]]] = []  # every D is one of these objects
        self.rels: set[tuple[int, int, str]] = set()   # (a, b, left/right/above/below)
        self.same: set[tuple[int, int, str, bool]] = set()
        self.options: dict[tuple[int, str], set] = {}   # "the circles are blue and yellow": each is one of
        self.last_pred: str | None = None
        self.last_found: set[int] = set()
        self.last_subjects: list[int] = []

    # -- bookkeeping ----------------------------------------------------------------
    def claim(self, ok: bool, problem: str) -> None:
        self.claims += 1
        if not ok:
            self.problems.append(problem)

    def give(self, i: int, attrs: dict) -> None:
        self.mentioned.add(i)
        self.attrs.setdefault(i, {}).update(attrs)

    def matching(self, attrs: dict, exclude: set[int] = frozenset()) -> list[int]:
        return [i for i, o in enumerate(self.objects) if i not in exclude and _implies(o, attrs)]

    @staticmethod
    def name(attrs: dict) -> str:
        words = [attrs[k] for k in ("size", "color", "shape") if k in attrs]
        if "shape" not in attrs:
            words.append("object")
        if "row" in attrs or "col" in attrs:
            words.append("there")
        return " ".join(words)

    # -- noun phrases -------------------------------------------------------------
    def parse_np(self, text: str) -> Description:
        words = text.strip().split()
        d = Description()
        while words and words[0] in ("only", "just", "exactly"):
            d.only = d.only or words[0] == "only"
            words = words[1:]
        if not words:
            raise _Unparsed(f"no noun in '{text}'")
        head = words[0]
        if head in ("the", "this", "that", "these", "those"):
            d.definite = True
            words = words[1:]
            if words and words[0] == "only":
                d.only, words = True, words[1:]
            if words and _number(words[0]) is not None and len(words) > 1:
                d.count, words = _number(words[0]), words[1:]
        elif head in ("a", "an", "some", "any"):
            words = words[1:]
        elif head in ("no", "zero") or (head == "not" and len(words) > 1 and words[1] in ("a", "an", "any")):
            d.negated = True
            words = words[2:] if head == "not" else words[1:]
        elif head == "both":
            d.definite, d.count, d.plural = True, 2, True
            words = words[1:]
            if words[:2] == ["of", "the"]:
                words = words[2:]
        elif head in ("every", "each", "all"):
            d.universal = True
            words = words[1:]
            if words[:1] == ["the"] or words[:2] == ["of", "the"]:
                words = words[words.index("the") + 1:]
        elif _number(head) is not None and len(words) > 1:
            d.count = _number(head)
            words = words[1:]
        rest = " ".join(words)
        m = re.match(r"^(.*?) (?:that is |which is |that are |which are )?((?:in|at|on) the .+)$", rest)
        if m and _PLACE_RE.match(m.group(2)):
            d.row, d.col = _PLACES[_PLACE_RE.match(m.group(2)).group(1)]
            rest = m.group(1)
        words = rest.split()
        if not words:
            raise _Unparsed(f"no noun in '{text}'")
        noun = words[-1]
        if noun in _SHAPE_WORDS:
            d.shape = _SHAPE_WORDS[noun]
        elif noun not in _ANY_WORDS:
            raise _Unparsed(f"unknown noun '{noun}'")
        d.plural = d.plural or noun in _PLURALS
        for w in words[:-1]:
            for key, table in (("color", _COLOR_WORDS), ("size", _SIZE_WORDS)):
                if w in table:
                    if getattr(d, key) not in (None, table[w]):
                        raise _Unparsed(f"two {key}s in '{text}'")
                    setattr(d, key, table[w])
                    break
            else:
                if w in ("other", "single", "only"):
                    d.other = d.other or w == "other"
                    d.only = d.only or w == "only"
                else:
                    raise _Unparsed(f"unknown word '{w}' in '{text}'")
        return d

    def resolve(self, d: Description, text: str) -> list[int] | None:
        """The objects a definite or universal description refers to (all of them for a plural, the
        one for a singular); a false presupposition is a false claim (returns None)."""
        attrs = d.attrs()
        found = self.matching(attrs)
        if d.universal:
            ok = bool(found)
        elif d.count is not None:
            ok = len(found) == d.count
        elif d.plural:
            ok = len(found) >= 2
        else:
            ok = len(found) == 1
        if not ok:
            self.claim(False, f"'{text}' refers to {len(found)} objects" if found else f"there is no {self.name(attrs)}")
            return None
        self.closed.append((attrs, set(found)))
        self.counts.append((attrs, len(found)))
        for i in found:
            self.give(i, attrs)
        return found

    def subjects(self, text: str) -> list[int] | None:
        """The objects a subject (a list of definite noun phrases, "it", "they", ...) refers to."""
        targets: list[int] = []
        for s in [p for p in re.split(r" *, *(?:and )?| and ", text) if p]:
            if s == "it" or s in ("they", "both", "both of them", "the two", "they both", "which", "that"):
                if s in ("which", "that"):
                    ids = list(self.last_subjects)
                else:
                    ids = list(self.focus)
                    if len(ids) != (1 if s == "it" else 2):
                        raise _Unparsed(f"'{s}' refers to no {'single object' if s == 'it' else 'pair'} "
                                        "of the question")
                if not ids:
                    raise _Unparsed(f"'{s}' refers to nothing before it")
                for i in ids:
                    self.give(i, {})
                targets += ids
                continue
            d = self.parse_np(s)
            if not (d.definite or d.universal):
                raise _Unparsed(f"'{s}' is not a definite description")
            found = self.resolve(d, s)
            if found is None:
                return None
            targets += found
        if not targets:
            raise _Unparsed("no subject")
        return targets

    # -- predicates -----------------------------------------------------------------
    def predicate(self, targets: list[int], pred: str) -> None:
        """'<targets> is/are <pred>': attributes, a place, a noun phrase, "the same colour (as X)",
        "not ...", "too"; conjunctions of these."""
        pred = pred.strip()
        if pred in ("too", "also", "as well", "also too"):
            if self.last_pred is None:
                raise _Unparsed("'too' follows no predicate")
            pred = self.last_pred
        else:
            self.last_pred = pred
        m = re.match(r"^(?:both |all |each )?(?:of )?(?:the )?(same|different) (colou?r|shape|size)s?(?: as (.+))?$", pred)
        if m:
            self.compare(targets, _ATTR_NAMES[m.group(2)], m.group(1) == "same", m.group(3))
            return
        parts = [p for p in re.split(r" *, *(?:and )?| and ", pred) if p]
        values: dict[str, list[str]] = {}
        for part in parts:
            part = re.sub(r"^(?:both|all|each|also|too) ", "", part)
            negated = part.startswith("not ")
            if negated:
                part = part[4:]
            if _PLACE_RE.match(part):
                row, col = _PLACES[_PLACE_RE.match(part).group(1)]
                want = {k: v for k, v in (("row", row), ("col", col)) if v is not None}
                self.attribute_claims(targets, want, negated, part)
                continue
            words = part.split()
            if words and words[0] in ("a", "an"):
                d = self.parse_np(part)
                if d.negated or d.count is not None or d.definite:
                    raise _Unparsed(f"cannot read '{part}'")
                self.attribute_claims(targets, d.attrs(), negated, part)
                continue
            for w in words:
                for key, table in (("color", _COLOR_WORDS), ("size", _SIZE_WORDS), ("shape", _SHAPE_WORDS)):
                    if w in table:
                        if negated:
                            self.attribute_claims(targets, {key: table[w]}, True, w)
                        else:
                            values.setdefault(key, []).append(table[w])
                        break
                else:
                    if w not in ("too", "also"):
                        raise _Unparsed(f"cannot read '{part}'")
        for key, vals in values.items():
            if len(set(vals)) == 1:
                self.attribute_claims(targets, {key: vals[0]}, False, vals[0])
            elif len(targets) == len(vals):  # "the triangles are red and green": one each
                have = sorted(self.objects[t][key] for t in targets)
                self.claim(have == sorted(vals), f"they are {' and '.join(have)}, not {' and '.join(vals)}")
                for t in targets:  # which is which is not said: each is one of them
                    self.options[(t, key)] = set(vals)
            else:
                self.claim(False, f"one object cannot be {' and '.join(vals)}")

    def attribute_claims(self, targets: list[int], want: dict, negated: bool, text: str) -> None:
        for t in targets:
            has = _implies(self.objects[t], want)
            obj = self.objects[t]
            self.claim(has != negated, f"the {obj.get('color', '')} {obj.get('shape', 'object')} is "
                                       f"{'' if negated else 'not '}{text}".replace("  ", " "))
            if negated:
                if set(want) == {"size"}:  # two sizes only: not large is small
                    self.give(t, {"size": next(s for s in SIZES if s != want["size"])})
            else:
                self.give(t, want)

    def compare(self, targets: list[int], key: str, same: bool, other: str | None) -> None:
        if other:
            found = self.subjects(other)
            if found is None:
                return
            targets = targets + found
        if len(targets) < 2:
            raise _Unparsed("a comparison needs two objects")
        values = {self.objects[t].get(key) for t in targets}
        self.claim((len(values) == 1) == same, f"they are not {'the same' if same else 'different'} in {key}")
        for a in targets:
            for b in targets:
                if a != b:
                    self.same.add((a, b, key, same))

    def relation(self, a_text: str, strict: bool, rel: str, b_text: str) -> None:
        a, b = self.subjects(a_text), self.subjects(b_text)
        if a is None or b is None:
            return
        kind = _RELATIONS[rel]
        for i in a:
            for j in b:
                oi, oj = self.objects[i], self.objects[j]
                if kind == "larger" or kind == "smaller":
                    big, small = (i, j) if kind == "larger" else (j, i)
                    self.claim(self.objects[big].get("size") == "large" and self.objects[small].get("size") == "small",
                               f"{a_text} is not {rel} {b_text}")
                    self.give(big, {"size": "large"})
                    self.give(small, {"size": "small"})
                    continue
                if "row" not in oi or "row" not in oj:
                    raise _Unparsed("this scene has no places")
                dr, dc = oi["row"] - oj["row"], oi["col"] - oj["col"]
                holds = {"left": dc < 0, "right": dc > 0, "above": dr < 0, "below": dr > 0,
                         "next": abs(dr) + abs(dc) == 1}[kind]
                if strict and kind in ("left", "right"):
                    holds = holds and dr == 0
                elif strict and kind in ("above", "below"):
                    holds = holds and dc == 0
                self.claim(holds, f"{a_text} is not {rel} {b_text}")
                if kind != "next":
                    self.rels.add((i, j, kind))
        self.last_subjects = b

    # -- existential lists ----------------------------------------------------------
    def items(self, items: list[str], exhaustive: bool, within: set[int] | None = None) -> None:
        """A list of what there is. ``within``: the items elaborate objects already counted
        ("two blue shapes: a circle and a triangle"), so they name those, not others."""
        used: set[int] = set()
        shape, counted = None, set()
        for text in items:
            d = self.parse_np(text)
            attrs = d.attrs()
            if d.definite or d.universal:
                raise _Unparsed(f"'{text}' in a list of what there is")
            one = text.split()[-1] in ("one", "ones") and len(text.split()) > 1
            if one and shape and not d.negated:  # "two circles, a blue one and a yellow one"
                attrs = {"shape": shape} | attrs
                found = [i for i in self.matching(attrs) if i in counted] or self.matching(attrs)
                self.claim(bool(found), f"there is no {self.name(attrs)}")
                self.exists.append(attrs)
                if len(found) == 1:
                    self.give(found[0], attrs)
                continue
            if one and shape:
                attrs = {"shape": shape} | attrs
            if within is not None:
                found = [i for i in self.matching(attrs) if i in within]
                self.claim(len(found) == d.count if d.count is not None else bool(found),
                           f"the {len(within)} named are not {text}")
                if len(found) == 1 or d.count is not None:
                    for i in found:
                        self.give(i, attrs)
                continue
            shape = attrs.get("shape", shape)
            if d.negated:
                found = self.matching(attrs, used if d.other else set())
                self.claim(not found, f"there is a {self.name(attrs)}")
                if not d.other:
                    self.nones.append(attrs)
                continue
            found = self.matching(attrs, used if d.other else set())
            if d.count is not None:
                self.claim(len(found) == d.count, f"there are {len(found)}, not {d.count}, {self.name(attrs)}")
                self.counts.append((attrs, d.count))
                if len(found) == d.count:
                    self.closed.append((attrs, set(found)))
                for i in found:
                    self.give(i, attrs)
                used.update(found)
                counted = self.last_found = set(found)
                continue
            free = [i for i in found if i not in used]
            self.claim(bool(free), f"there is no {self.name(attrs)}" if not found else f"there is no other {self.name(attrs)}")
            self.exists.append(attrs)
            if free:
                if len(found) == 1 or exhaustive:
                    self.give(free[0], attrs)
                else:
                    self.mentioned.add(free[0])
                used.add(free[0])
        if exhaustive:
            self.claim(len(used) == len(self.objects), f"the scene has {len(self.objects)} objects, not {len(used)}")
            self.closed.append(({}, set(range(len(self.objects)))))
            self.counts.append(({}, len(self.objects)))

    # -- clauses ------------------------------------------------------------------
    def clause(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        m = _CELL_SUBJECT_RE.match(text)
        if m:
            self.cell(m.group(1), m.group(2).strip())
            return
        m = re.match(r"^there (?:is|are) (.+)$", text)
        if m:
            rest = re.sub(r"^not (?:a |an |any )?", "no ", m.group(1))
            head, colon, tail = rest.partition(": ")  # "two blue shapes: a circle and a triangle"
            self.items(_list(head), exhaustive=False)
            if colon:
                self.items(_list(tail), exhaustive=False, within=self.last_found)
            return
        m = re.match(r"^(\w+) (?:objects?|shapes?|things?): (.+)$", text)  # the captions' form
        if m and _number(m.group(1)) is not None:
            n = _number(m.group(1))
            self.claim(len(self.objects) == n, f"the scene has {len(self.objects)} objects, not {n}")
            self.items(_list(m.group(2)), exhaustive=True)
            return
        m = re.match(r"^(?:the (?:only )?(?:objects|shapes|things) (?:are|in the (?:image|picture|scene) are)"
                     r"|the (?:image|picture|scene) (?:shows|contains|has) only"
                     r"|(?:it|the image|the picture|the scene) only (?:shows|contains|has)) (.+)$", text)
        if m:
            self.items(_list(m.group(1)), exhaustive=True)
            return
        m = re.match(r"^(?:the (?:image|picture|scene) (?:shows|contains|has)|i see|we see|i can see|you can see) (.+)$",
                     text)
        if m:
            self.items(_list(m.group(1)), exhaustive=False)
            return
        m = re.match(r"^the only (.+?) (?:is|are) (.+)$", text)
        if m:
            d = self.parse_np("the " + m.group(1))
            found = self.resolve(d, "the only " + m.group(1))
            if found is not None:
                self.last_subjects = found
                self.predicate(found, m.group(2))
            return
        m = re.match(r"^(nothing|no (.+?)) (?:is|are) (.+)$", text)
        if m:
            self.none_is(m.group(2), m.group(3))
            return
        m = _REL_RE.match(text)
        if m:
            self.relation(m.group(1), bool(m.group(2)), m.group(3), m.group(4))
            return
        m = re.match(r"^(.+?) (?:is|are) (.+)$", text)
        if m:
            subj, pred = m.group(1), m.group(2)
            if subj.split()[0] in ("a", "an"):  # "a red circle is in the top left": there is one that is
                self.indefinite_subject(subj, pred)
                return
            targets = self.subjects(subj)
            if targets is None:
                return
            self.last_subjects = targets
            self.predicate(targets, pred)
            return
        m = re.match(r"^(.+?) (?:has|have) (?:the )?(same|different) (colou?r|shape|size)s?(?: as (.+))?$", text)
        if m:
            targets = self.subjects(m.group(1))
            if targets is not None:
                self.compare(targets, _ATTR_NAMES[m.group(3)], m.group(2) == "same", m.group(4))
            return
        if not _VERB_RE.search(text):  # a bare list of noun phrases: "three triangles and a circle"
            self.items(_list(text), exhaustive=False)
            return
        raise _Unparsed(f"cannot read '{text}'")

    def none_is(self, np_text: str | None, pred: str) -> None:
        """'nothing is red', 'no circle is blue', 'no object is in the top left'."""
        attrs = self.parse_np("a " + np_text).attrs() if np_text else {}
        want = self.pred_attrs(pred)
        both = attrs | want
        if any(attrs.get(k, v) != v for k, v in want.items()):
            both = None  # "no circle is a square": nothing could be
        found = self.matching(both) if both is not None else []
        self.claim(not found, f"there is a {self.name(both or {})}")
        if both is not None:
            self.nones.append(both)

    def indefinite_subject(self, subj: str, pred: str) -> None:
        d = self.parse_np(subj)
        want = d.attrs()
        extra = self.pred_attrs(pred)
        if any(want.get(k, v) != v for k, v in extra.items()):
            self.claim(False, f"a {subj} cannot be {pred}")
            return
        both = want | extra
        found = self.matching(both)
        self.claim(bool(found), f"there is no {self.name(both)}")
        self.exists.append(both)
        if len(found) == 1:
            self.give(found[0], both)

    def pred_attrs(self, pred: str) -> dict:
        """The attributes a simple predicate gives (a place, attribute words, a noun phrase)."""
        pred = pred.strip()
        if _PLACE_RE.match(pred):
            row, col = _PLACES[_PLACE_RE.match(pred).group(1)]
            return {k: v for k, v in (("row", row), ("col", col)) if v is not None}
        if pred.split()[0] in ("a", "an"):
            d = self.parse_np(pred)
            if d.negated or d.count is not None:
                raise _Unparsed(f"cannot read '{pred}'")
            return d.attrs()
        out: dict = {}
        for w in re.split(r" and | ", pred):
            for key, table in (("color", _COLOR_WORDS), ("size", _SIZE_WORDS), ("shape", _SHAPE_WORDS)):
                if w in table:
                    if out.get(key, table[w]) != table[w]:
                        raise _Unparsed(f"two {key}s in '{pred}'")
                    out[key] = table[w]
                    break
            else:
                raise _Unparsed(f"cannot read '{pred}'")
        return out

    def cell(self, place: str, pred: str) -> None:
        """'the <cell> is/has <noun phrase | nothing>': what is in one grid cell."""
        row, col = _CELLS[place]
        here = self.matching({"row": row, "col": col})
        if pred in ("nothing", "empty", "no object", "no objects", "no shape"):
            self.claim(not here, f"the {place} is not empty")
            self.nones.append({"row": row, "col": col})
            return
        d = self.parse_np(pred if pred.split()[0] in ("a", "an") else "a " + pred)
        if d.negated or d.count is not None or d.row is not None:
            raise _Unparsed(f"cannot read 'the {place} ... {pred}'")
        self.claim(bool(here) and d.matches(self.objects[here[0]]), f"the {place} does not hold {pred}")
        if here:
            self.give(here[0], d.attrs() | {"row": row, "col": col})

    # -- does it support the answer? --------------------------------------------------
    def known(self, i: int, key: str):
        return self.attrs.get(i, {}).get(key)

    def identified(self, attrs: dict) -> set[int]:
        return {i for i, a in self.attrs.items() if _implies(a, attrs)}

    def supports(self, question: str, family: str | None, answer: str | None) -> bool | None:
        """Whether the facts pin down ``answer`` (any answer, when None) to this question;
        None when the question is of no family read here."""
        ans = _answer_words(answer) if answer is not None else None
        fam = (family or "").split("-")[0]
        q = question.lower()
        if fam == "query":
            key = ("shape" if "shape" in family else "color") if "-" in (family or "") else _asked_attribute(q)
            if key is None or len(self.focus) != 1:
                return None
            have = self.known(self.focus[0], key)
            return have is not None and (ans is None or _value(key, ans) == have)
        if fam == "exist":
            want, negated_q = _question_attrs(q), bool(re.search(r"\b(?:not|no)\b|n't\b", q))
            present = self._present(want)
            absent = self._absent(want)
            if ans is None:
                return present or absent
            if ans not in ("yes", "no"):
                return False
            return present if (ans == "yes") != negated_q else absent
        if fam == "count":
            want = _question_attrs(q)
            truth = len(self.matching(want))
            if ans is None:
                n = truth
            else:
                n = _number(ans.split()[0]) if ans else None
                if n is None:
                    return False
            if any(a == want and c == n for a, c in self.counts):
                return True
            return n == truth and len(self.identified(want)) == n
        if fam in ("compare", "spatial"):
            if len(self.focus) != 2:
                return None
            i, j = self.focus
            decided = self._compare(q, i, j) if fam == "compare" else self._spatial(q, i, j)
            if decided is None:
                return False
            return ans is None or ans == ("yes" if decided else "no")
        return None

    def _present(self, want: dict) -> bool:
        return (any(_implies(d, want) for d in self.exists)
                or any(_implies(d, want) and n > 0 for d, n in self.counts)
                or bool(self.identified(want)))

    def _absent(self, want: dict) -> bool:
        if any(_implies(want, d) for d in self.nones) or any(_implies(want, d) and n == 0 for d, n in self.counts):
            return True
        for d, objs in self.closed:  # every d is one of objs, and each of them is said to differ from want
            if _implies(want, d) and all(any(self.known(i, k) not in (None, v) or v not in self.options.get((i, k), {v})
                                             for k, v in want.items()) for i in objs):
                return True
        return False

    def _compare(self, q: str, i: int, j: int) -> bool | None:
        key = next((_ATTR_NAMES[w] for w in re.findall(r"[a-z]+", q) if w in _ATTR_NAMES), None)
        if key is None:
            return None
        for a, b, k, same in self.same:
            if k == key and {a, b} == {i, j}:
                return same
        a, b = self.known(i, key), self.known(j, key)
        return None if a is None or b is None else a == b

    def _spatial(self, q: str, i: int, j: int) -> bool | None:
        m = re.search("|".join(sorted(map(re.escape, _RELATIONS), key=len, reverse=True)), q)
        kind = _RELATIONS.get(m.group(0)) if m else None
        if kind not in ("left", "right", "above", "below"):
            return None
        opposite = {"left": "right", "right": "left", "above": "below", "below": "above"}
        axes = {"left": "col", "right": "col", "above": "row", "below": "row"}
        axis = axes[kind]
        for a, b, k in self.rels:
            if axes[k] != axis:
                continue
            if (a, b) == (i, j):
                return k == kind
            if (a, b) == (j, i):
                return k == opposite[kind]
        pa, pb = self.known(i, axis), self.known(j, axis)
        if pa is None or pb is None or pa == pb:
            return None if pa is None or pb is None else False
        return (pa < pb) == (kind in ("left", "above"))


def _list(text: str) -> list[str]:
    return [i for i in re.split(r" *, *(?:and )?| and | but ", text) if i]


def _answer_words(answer: str) -> str:
    a = re.sub(r"[^a-z0-9 ]", " ", answer.lower(), flags=re.ASCII)
    return " ".join(w for w in a.split() if w not in ("a", "an", "the"))


def _value(key: str, answer: str) -> str | None:
    table = {"color": _COLOR_WORDS, "size": _SIZE_WORDS, "shape": _SHAPE_WORDS}[key]
    return table.get(answer.split()[-1]) if answer else None


def _asked_attribute(q: str) -> str | None:
    m = re.search(r"\bwhat (colou?r|shape|size)\b", q)
    return _ATTR_NAMES[m.group(1)] if m else None


def _question_attrs(q: str) -> dict:
    """The colour, size and shape a yes/no or how-many question asks about."""
    out: dict = {}
    for w in re.findall(r"[a-z]+", q):
        for key, table in (("color", _COLOR_WORDS), ("size", _SIZE_WORDS), ("shape", _SHAPE_WORDS)):
            if w in table:
                out[key] = table[w]
    return out


def normalise(text: str) -> str:
    """Lower case, plain spaces, contractions spelled out, "looks" read as "is", a leading
    "because"/"yes,"/"no," and final punctuation dropped; odd or overlong text refused."""
    if len(text) > MAX_CHARS:
        raise _Unparsed(f"longer than {MAX_CHARS} characters")
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = " ".join(t.split())
    if not _ALLOWED_RE.fullmatch(t):
        bad = next(ch for ch in t if not _ALLOWED_RE.fullmatch(ch))
        raise _Unparsed(f"cannot read the character {bad!r}")
    if _HEDGE_RE.search(t):
        raise _Unparsed("a guess is not a reason")
    t = t.replace("-", " ")
    t = re.sub(r"\b(it|there|that|here|what)'s\b", r"\1 is", t)
    t = re.sub(r"\b(is|are|was|were|does|do)n't\b", r"\1 not", t)
    t = re.sub(r"\b(?:looks|appears|seems)(?: to be| like)?\b", "is", t)
    t = re.sub(r"\b(?:look|appear|seem)(?: to be| like)?\b", "are", t)
    t = re.sub(r"\bboth (\w+) (?:is|are)\b", r"both \1 are", t)
    t = re.sub(r"^(?:yes|no) ?, ?", "", t)
    t = re.sub(r"^(?:yes |no )?(?:because|since|as|seeing that|given that) ", "", t)
    t = re.sub(r"[ .!?;,:]+$", "", t)
    return " ".join(t.split())


def split_clauses(text: str) -> list[str]:
    """Split a (normalised) rationale into clauses, keeping noun-phrase lists ("a red circle and a
    blue square") and subject lists ("the square and the circle are ...") whole."""
    chunks = [c.strip() for c in re.split(r" ?(?:;|\. |\? |! |,? (?:while|whereas) ) ?", text) if c.strip()]
    clauses: list[str] = []
    for chunk in chunks:
        parts = [p.strip() for p in re.split(r" ?, ?(?:and |but )?| and | but ", chunk) if p.strip()]
        current: list[str] = []
        for p in parts:
            starts_clause = bool(_VERB_RE.search(p)) and (p.startswith(_SUBJECT_STARTS) or not current)
            if starts_clause and current and _VERB_RE.search(" and ".join(current)):
                clauses.append(" and ".join(current))
                current = [p]
            else:
                current.append(p)
        if current:
            clauses.append(" and ".join(current))
    return clauses


def _read(scene: dict, text: str, focus: list[int] | None) -> tuple[_Checker, str | None]:
    checker = _Checker(scene, focus)
    try:
        for clause in split_clauses(normalise(text)):
            checker.clause(clause)
    except _Unparsed as exc:
        return checker, f"unparsed: {exc}"
    except RecursionError:  # pragma: no cover - no recursion is deep here; belt and braces
        return checker, "unparsed: too deeply nested"
    return checker, None


def check_rationale(scene: dict, text: str, focus: list[int] | None = None) -> Verdict:
    """Check every claim of a rationale against a scene graph.

    Acceptable only when the text parses into at least one claim and every
    claim is true. Words outside the shapes world are unparsed, and unparsed
    text is not acceptable; "it" is the question's object when ``focus`` (the
    indices of the objects the question is about) names exactly one.
    """
    checker, unparsed = _read(scene, text, focus)
    if unparsed:
        return Verdict(False, checker.claims, checker.problems + [unparsed], sorted(checker.mentioned))
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


def judge(meta: dict, question: str, rationale: str, answer: str | None = None) -> Verdict:
    """The oracle's verdict with its reasons: every claim true of ``meta["scene"]``, nothing left
    unread, and what the rationale says supports ``answer`` to the question of family
    ``meta["family"]`` (with ``answer`` None: pins down the question's answer, whatever it is).
    For a family read nowhere here the rationale must speak of the question's objects
    (``meta["focus"]``) or of a colour, shape or size the question names."""
    focus = meta.get("focus")
    rationale = _count_ellipsis(question, meta.get("family"), rationale)
    checker, unparsed = _read(meta["scene"], rationale, focus)
    mentioned = sorted(checker.mentioned)
    if unparsed:
        return Verdict(False, checker.claims, checker.problems + [unparsed], mentioned)
    if not checker.claims or checker.problems:
        return Verdict(False, checker.claims, checker.problems or ["no claim made"], mentioned)
    support = checker.supports(question, meta.get("family"), answer)
    if support is None:
        support = bool(set(focus or []) & checker.mentioned) or bool(
            tokens_of_interest(question) & tokens_of_interest(rationale))
    if not support:
        said = f"the answer '{answer}'" if answer is not None else "an answer"
        return Verdict(False, checker.claims, [f"true, but does not support {said} to '{question}'"], mentioned)
    return Verdict(True, checker.claims, [], mentioned)


_ELLIPTIC_COUNT = re.compile(r"^(?:there (?:are|is) )?(?:only |exactly |just )?([a-z]+|[0-9]{1,2})[.!]?$")
_HOW_MANY = re.compile(r"^how many (.+?) are there\?$")


def _count_ellipsis(question: str, family: str | None, rationale: str) -> str:
    """A count whose noun is left to a count question, as people answer "How many ...?": "there are
    five", "five" (to "How many red objects are there?": "there are five red objects"); any other
    rationale, or any other question, as it is."""
    if not (family or "").startswith("count"):
        return rationale
    m, q = _ELLIPTIC_COUNT.match(rationale.strip().lower()), _HOW_MANY.match(question.strip().lower())
    if not m or not q or _number(m.group(1)) is None:
        return rationale
    n, noun = _number(m.group(1)), q.group(1)
    if n == 1 and noun.endswith("s"):
        noun = noun[:-1]
    return f"there {'is' if n == 1 else 'are'} {m.group(1)} {noun}"


def is_grounded(meta: dict, question: str, rationale: str, answer: str | None = None) -> bool:
    """What the oracle and the grounded rate ask (see :func:`judge`)."""
    return judge(meta, question, rationale, answer).ok
