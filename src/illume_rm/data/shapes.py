"""`shapes`: a CLEVR-X-like world, generated, deterministic for a seed.

Scenes of 1 to 6 objects (shape, colour, size) on a 3x3 grid, drawn with
Pillow. Five question families (exist, count, query, compare, spatial), the
answer, three reference explanations written from the scene graph in varied
wording (as CLEVR-X builds its explanations from CLEVR's scene graphs), and
a caption per image. The scene graph travels in ``Example.meta["scene"]`` so
judges can check a rationale's claims against it (``scene.check_rationale``).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from ..errors import UserError
from ..records import Example
from .scene import COLORS, SHAPES, SIZES, number_word, place_phrase

FAMILIES = ("exist", "count", "query", "compare", "spatial")
# Bumped whenever the same config generates different questions or references, so that what was
# cached from the old ones (warm-up checkpoints) is not reused. 2: compare questions no longer name
# the compared attribute.
GENERATOR_VERSION = 2
SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}
_RGB = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (235, 205, 30), "purple": (150, 60, 190), "gray": (128, 128, 128),
}


@dataclass(frozen=True)
class ShapesConfig:
    train: int = 2000          # images per split; each image gets `questions_per_image` questions
    val: int = 200
    test: int = 200
    questions_per_image: int = 3
    image_size: int = 96       # 3x3 grid; 96 px gives one EfficientNet token per cell
    min_objects: int = 1
    max_objects: int = 6
    seed: int = 0

    def __post_init__(self):
        for name in ("train", "val", "test"):
            if getattr(self, name) < 0:
                raise UserError(f"data.shapes.{name}: images per split must be 0 or more, got {getattr(self, name)}")
        if self.questions_per_image < 1:
            raise UserError(f"data.shapes.questions_per_image must be at least 1, got {self.questions_per_image}")
        if self.image_size < 24:
            raise UserError(f"data.shapes.image_size must be at least 24 pixels (a 3x3 grid of shapes), "
                            f"got {self.image_size}")
        if not 1 <= self.min_objects <= self.max_objects <= 9:
            raise UserError(f"data.shapes: objects per image must satisfy 1 <= min_objects <= max_objects <= 9 "
                            f"(the grid has 9 cells), got {self.min_objects} and {self.max_objects}")

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def make_scene(rng: random.Random, cfg: ShapesConfig) -> dict:
    n = rng.randint(cfg.min_objects, cfg.max_objects)
    cells = rng.sample([(r, c) for r in range(3) for c in range(3)], n)
    kinds = rng.sample([(s, c) for s in SHAPES for c in COLORS], n)  # (colour, shape) unique per scene
    objects = []
    for (row, col), (shape, color) in zip(cells, kinds):
        size = rng.choice(SIZES)
        objects.append({
            "shape": shape, "color": color, "size": size, "row": row, "col": col,
            "dx": round(rng.uniform(-1, 1), 3), "dy": round(rng.uniform(-1, 1), 3),
        })
    objects.sort(key=lambda o: (o["row"], o["col"]))
    return {"grid": 3, "objects": objects}


def draw_scene(scene: dict, size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), (235, 235, 230))
    draw = ImageDraw.Draw(img)
    cell = size / 3
    for o in scene["objects"]:
        radius = cell * (0.24 if o["size"] == "small" else 0.40)
        slack = cell / 2 - radius - 1
        cx = (o["col"] + 0.5) * cell + o["dx"] * slack * 0.8
        cy = (o["row"] + 0.5) * cell + o["dy"] * slack * 0.8
        fill = _RGB[o["color"]]
        if o["shape"] == "circle":
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
        elif o["shape"] == "square":
            r = radius * 0.88
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon([(cx, cy - radius), (cx - radius, cy + radius * 0.8), (cx + radius, cy + radius * 0.8)], fill=fill)
    return img


def _name(o: dict) -> str:
    return f"{o['color']} {o['shape']}"


def _refer(o: dict, objs: list[dict], hide: str) -> str:
    """The shortest description that picks out ``o`` alone among ``objs`` without naming its ``hide``
    attribute (as CLEVR's compare templates leave the compared attribute unsaid): 'circle',
    'large circle', 'red object', or else its place ('object in the top left')."""
    options = {"color": [("shape",), ("size", "shape")],  # fewest words first
               "shape": [("color",), ("size", "color")],
               "size": [("shape",), ("color",), ("color", "shape")]}[hide]
    for keys in options:
        if sum(all(x[k] == o[k] for k in keys) for x in objs) == 1:
            words = [o[k] for k in keys]
            return " ".join(words) + ("" if "shape" in keys else " object")
    return "object " + place_phrase(o["row"], o["col"])


def _a(o: dict, size: bool = False, place: bool = False) -> str:
    words = ([o["size"]] if size else []) + [o["color"], o["shape"]]
    text = " ".join(words)
    text = ("an " if text[0] in "aeiou" else "a ") + text
    return text + (" " + place_phrase(o["row"], o["col"]) if place else "")


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def caption(scene: dict) -> str:
    objs = scene["objects"]
    parts = [_a(o, size=True, place=True) for o in objs]
    lead = "one object" if len(objs) == 1 else f"{number_word(len(objs))} objects"
    return f"{lead}: {_list(parts)}"


def scene_cells(scene: dict) -> tuple[list[str], list[str]]:
    """Every cell of the grid, row by row: its place ("top left") and what is there ("small green
    circle", or "nothing")."""
    cells = {(o["row"], o["col"]): o for o in scene["objects"]}
    places, words = [], []
    for row in range(3):
        for col in range(3):
            o = cells.get((row, col))
            places.append(place_phrase(row, col).removeprefix("in the "))
            words.append(f"{o['size']} {o['color']} {o['shape']}" if o else "nothing")
    return places, words


def scene_text(scene: dict, cell_places: str = "before", count: bool = False) -> str:
    """Every cell of the grid, row by row, its place then what is there: the words the built-in VLM's
    word-anchored image tokens stand for ("top left: nothing, top middle: small green circle, ...", or
    with ``cell_places="around"`` the place after the words too, as the processor lays them out); with
    ``count``, then how many objects there are, as the count token says it (" objects: three.")."""
    from ..vlm.processor import cell_text

    return cell_text(*scene_cells(scene), cell_places, number_word(len(scene["objects"])) if count else None)


def grounding(scene: dict) -> list[list[str]]:
    """Answer-only grounding questions about one image, for warm-up (as VLM pretraining uses region
    descriptions and referring expressions): what is in each cell, where each object is."""
    cells = {(o["row"], o["col"]): o for o in scene["objects"]}
    out = []
    for row in range(3):
        for col in range(3):
            o = cells.get((row, col))
            out.append([f"What is {place_phrase(row, col)}?", _a(o, size=True) if o else "nothing"])
    for o in scene["objects"]:
        out.append([f"Where is the {_name(o)}?", place_phrase(o["row"], o["col"])])
    return out


def _question(scene: dict, family: str, rng: random.Random) -> tuple[str, str, list[str], list[int]] | None:
    """(question, answer, three references, focus object indices), or None if the family does not fit."""
    objs = scene["objects"]
    idx = list(range(len(objs)))
    if family == "exist":
        if rng.random() < 0.5:  # yes: ask for an object that is there
            i = rng.choice(idx)
            o = objs[i]
            if rng.random() < 0.5:
                q = f"Is there a {_name(o)}?"
            else:
                q = f"Is there a {o['color']} object?" if rng.random() < 0.5 else f"Is there a {o['shape']}?"
            refs = [
                f"there is {_a(o, place=True)}",
                f"the {_name(o)} is {place_phrase(o['row'], o['col'])}",
                f"the image shows {_a(o, size=True)}",
            ]
            return q, "yes", refs, [i]
        present = {(o["shape"], o["color"]) for o in objs}
        absent = [(s, c) for s in SHAPES for c in COLORS if (s, c) not in present]
        s, c = rng.choice(absent)
        if not any(o["color"] == c for o in objs) and rng.random() < 0.5:
            q, missing = f"Is there a {c} object?", f"{c} object"
        elif not any(o["shape"] == s for o in objs) and rng.random() < 0.5:
            q, missing = f"Is there a {s}?", s
        else:
            q, missing = f"Is there a {c} {s}?", f"{c} {s}"
        listed = _list([_a(o) for o in objs])
        refs = [
            f"there is no {missing}",
            f"the only objects are {listed}",
            f"the image shows {listed} and there is no {missing}",
        ]
        return q, "no", refs, idx
    if family == "count":
        mode = rng.choice(["all", "all", "all", "color", "shape"])
        if mode == "all":
            sel, noun, q = idx, "objects", "How many objects are there?"
        elif mode == "color":
            c = rng.choice([o["color"] for o in objs] + list(COLORS[:2]))
            sel = [i for i in idx if objs[i]["color"] == c]
            noun, q = f"{c} objects", f"How many {c} objects are there?"
        else:
            s = rng.choice([o["shape"] for o in objs])
            sel = [i for i in idx if objs[i]["shape"] == s]
            noun, q = f"{s}s", f"How many {s}s are there?"
        n = len(sel)
        if n == 0:
            return None
        if n == 1:
            noun = noun.replace("objects", "object").rstrip("s") if mode != "color" else noun.replace("objects", "object")
            verb = "is"
        else:
            verb = "are"
        listed = _list([_a(objs[i]) for i in sel])
        word = number_word(n)
        refs = [
            f"there {verb} {word} {noun}",
            f"there {verb} {listed}" if mode != "all" else f"the objects are {listed}",
            f"the image shows {listed}",
        ]
        return q, word, refs, sel
    if family == "query":
        i = rng.choice(idx)
        o = objs[i]
        attr = rng.choice(["color", "shape", "size"])
        place = place_phrase(o["row"], o["col"])
        if attr == "color":
            by_shape = [x for x in objs if x["shape"] == o["shape"]]
            ref_np = f"the {o['shape']}" if len(by_shape) == 1 else f"the {o['shape']} {place}"
            q = f"What color is {ref_np}?"
            refs = [f"{ref_np} is {o['color']}", f"there is {_a(o, place=True)}", f"{ref_np} is a {o['size']} {o['color']} {o['shape']}"]
        elif attr == "shape":
            by_color = [x for x in objs if x["color"] == o["color"]]
            ref_np = f"the {o['color']} object" if len(by_color) == 1 else f"the {o['color']} object {place}"
            q = f"What shape is {ref_np}?"
            refs = [f"{ref_np} is a {o['shape']}", f"there is {_a(o, place=True)}", f"the {_name(o)} is {place}"]
        else:
            ref_np = f"the {_name(o)}"
            q = f"What size is {ref_np}?"
            refs = [f"{ref_np} is {o['size']}", f"there is {_a(o, size=True, place=True)}", f"{ref_np} {place} is {o['size']}"]
        return q, o[attr], refs, [i]
    if family == "compare":
        if len(objs) < 2:
            return None
        attr = rng.choice(["color", "shape", "size"])
        pairs = [(i, j) for i in idx for j in idx if i != j]
        want_same = rng.random() < 0.5  # balance yes and no where the scene allows
        fitting = [(i, j) for i, j in pairs if (objs[i][attr] == objs[j][attr]) == want_same]
        i, j = rng.choice(fitting or pairs)
        a, b = objs[i], objs[j]
        # name each object without the compared attribute, or the question gives its answer away
        ra, rb = _refer(a, objs, attr), _refer(b, objs, attr)
        if attr == "color":
            q = f"Is the {ra} the same color as the {rb}?"
        elif attr == "shape":
            q = f"Are the {ra} and the {rb} the same shape?"
        else:
            q = f"Is the {ra} the same size as the {rb}?"
        same = a[attr] == b[attr]
        word = {"color": "color", "shape": "shape", "size": "size"}[attr]
        value = lambda o: o[attr] if attr != "shape" else "a " + o["shape"]
        refs = [
            f"the {ra} and the {rb} are " + (f"the same {word}" if same else f"different {word}s"),
            f"the {ra} is {value(a)} and the {rb} is {value(b)}",
            f"the {_name(a)} has the same {word} as the {_name(b)}" if same
            else f"the {_name(a)} and the {_name(b)} have different {word}s",
        ]
        return q, "yes" if same else "no", refs, [i, j]
    if family == "spatial":
        if len(objs) < 2:
            return None
        pairs = [(i, j) for i in idx for j in idx if i != j]
        i, j = rng.choice(pairs)
        a, b = objs[i], objs[j]
        axes = [ax for ax in ("col", "row") if a[ax] != b[ax]]
        ax = rng.choice(axes)
        if ax == "col":
            rel = rng.choice(["to the left of", "to the right of"])
            truth = (a["col"] < b["col"]) == (rel == "to the left of")
            actual = "to the left of" if a["col"] < b["col"] else "to the right of"
        else:
            rel = rng.choice(["above", "below"])
            truth = (a["row"] < b["row"]) == (rel == "above")
            actual = "above" if a["row"] < b["row"] else "below"
        q = f"Is the {_name(a)} {rel} the {_name(b)}?"
        refs = [
            f"the {_name(a)} is {actual} the {_name(b)}",
            f"the {_name(a)} is {place_phrase(a['row'], a['col'])} and the {_name(b)} is {place_phrase(b['row'], b['col'])}",
            f"the {_name(b)} is {_opposite(actual)} the {_name(a)}",
        ]
        return q, "yes" if truth else "no", refs, [i, j]
    raise ValueError(family)


def _opposite(rel: str) -> str:
    return {"to the left of": "to the right of", "to the right of": "to the left of",
            "above": "below", "below": "above"}[rel]


def generate(cfg: ShapesConfig, split: str, image_dir: Path | None) -> list[Example]:
    """All examples of one split; draws the images into `image_dir` when given."""
    n_images = getattr(cfg, split)
    rng = random.Random(f"shapes/{cfg.seed}/{split}")
    examples: list[Example] = []
    for k in range(n_images):
        scene = make_scene(rng, cfg)
        image_id = f"{split}-{k:05d}"
        path = None
        if image_dir is not None:
            # the file name carries a hash of what is drawn, so a cached image always matches its scene
            digest = hashlib.sha1(json.dumps([scene, cfg.image_size], sort_keys=True).encode()).hexdigest()[:8]
            path = image_dir / f"{image_id}-{digest}.png"
            if not path.exists():
                tmp = path.with_name(f".{path.name}.tmp")
                draw_scene(scene, cfg.image_size).save(tmp, format="PNG")
                os.replace(tmp, path)
            path = str(path)
        cap = caption(scene)
        ground = grounding(scene)
        families = list(FAMILIES)
        rng.shuffle(families)
        made = 0
        for family in families * 2:
            if made == cfg.questions_per_image:
                break
            out = _question(scene, family, rng)
            if out is None:
                continue
            q, answer, refs, focus = out
            examples.append(Example(
                id=f"shapes-{image_id}-q{made}", image=path, question=q, answers=[answer],
                explanations=refs,
                meta={"family": family, "scene": scene, "caption": cap, "grounding": ground, "focus": focus,
                      "image_id": image_id},
            ))
            made += 1
    return examples


def more_questions(examples: list[Example], per_image: int, seed: int = 0) -> list[Example]:
    """``per_image`` further questions about each image of ``examples`` (those with a scene graph),
    written from its scene as ``generate`` writes a split's (families in a shuffled order, each drawn
    again once all have been), none the same as one the image already has: more training questions from
    the same images and annotations, as CLEVR asks about ten of each image. Deterministic for ``seed``."""
    seen: dict[str, set[str]] = {}
    first: dict[str, Example] = {}
    for ex in examples:
        image_id = ex.meta.get("image_id")
        if image_id is None or "scene" not in ex.meta:
            continue
        seen.setdefault(image_id, set()).add(ex.question)
        first.setdefault(image_id, ex)
    out: list[Example] = []
    for image_id, ex in first.items():
        scene, rng = ex.meta["scene"], random.Random(f"more/{seed}/{image_id}")
        made, tries = 0, 0
        while made < per_image and tries < 20 * per_image:
            families = list(FAMILIES)
            rng.shuffle(families)
            for family in families:
                tries += 1
                q = _question(scene, family, rng)
                if made == per_image or q is None or q[0] in seen[image_id]:
                    continue
                seen[image_id].add(q[0])
                question, answer, refs, focus = q
                out.append(Example(
                    id=f"shapes-{image_id}-m{made}", image=ex.image, question=question, answers=[answer],
                    explanations=refs, meta={**ex.meta, "family": family, "focus": focus}))
                made += 1
    return out


def load(split: str, cfg: ShapesConfig, cache_dir: Path) -> list[Example]:
    """Generate (once, cached by config) and return one split."""
    if split not in SPLIT_OFFSETS:
        from ..errors import UserError
        raise UserError(f"shapes: unknown split '{split}' (choose train, val or test)")
    image_dir = cache_dir / "data" / f"shapes-{cfg.key()}" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    return generate(cfg, split, image_dir)
