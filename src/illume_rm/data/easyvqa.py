"""`easy-vqa`: 64x64 images of one shape, from the `easy-vqa` package (MIT).

The package has no explanations. Each image's shape and colour follow from
its own questions ("what is the blue shape?" -> rectangle), so a one-object
scene graph is built per image and the references and caption are written
from it, in the language ``scene.check_rationale`` reads.
"""
from __future__ import annotations

import random
import re
from collections import defaultdict

from ..errors import MissingDependency, UserError
from ..records import Example

_SHAPES = ("circle", "rectangle", "triangle")
_COLORS = ("red", "green", "blue", "yellow", "gray", "teal", "black", "brown")


def _scenes(questions, answers, image_ids) -> dict[int, dict]:
    found: dict[int, dict] = defaultdict(dict)
    for q, a, i in zip(questions, answers, image_ids):
        if a in _SHAPES:
            found[i]["shape"] = a
        elif a in _COLORS:
            found[i]["color"] = a
        m = re.search(r"\b(" + "|".join(_COLORS) + r")\b", q)
        if m and a in _SHAPES:
            found[i]["color"] = m.group(1)
        m = re.search(r"\b(" + "|".join(_SHAPES) + r")\b", q)
        if m and a in _COLORS:
            found[i]["shape"] = m.group(1)
        if a in ("yes", "no") and _present(q, a):
            for word in re.findall(r"\w+", q):
                if word in _SHAPES:
                    found[i]["shape"] = word
                elif word in _COLORS:
                    found[i]["color"] = word
    return found


def _present(question: str, answer: str) -> bool:
    """Whether a yes/no question's answer says the asked-for thing is there
    ("does the image not contain a circle?" -> "no" means there is one)."""
    negated = re.search(r"\b(?:not|no)\b|n't\b", question) is not None
    return (answer == "yes") != negated


def _refs(question: str, answer: str, obj: dict) -> list[str]:
    c, s = obj["color"], obj["shape"]
    art = "an" if c[0] in "aeiou" else "a"
    if answer in ("yes", "no") and not _present(question, answer):
        asked = [w for w in re.findall(r"\w+", question) if w in _SHAPES + _COLORS]
        missing = " ".join(asked) if asked else "such shape"
        noun = missing if any(w in _SHAPES for w in asked) else f"{missing} shape"
        return [f"there is no {noun}", f"the only shape is {art} {c} {s}", f"the image shows only {art} {c} {s}"]
    return [f"the shape is {art} {c} {s}", f"there is {art} {c} {s}", f"the image shows {art} {c} {s}"]


def load(split: str, limit: int | None = None, seed: int = 0) -> list[Example]:
    try:
        import easy_vqa
    except ImportError:  # pragma: no cover - installed by the project
        raise MissingDependency("easy-vqa is not installed: pip install easy-vqa==1.0") from None
    if split == "train":
        qs, ans, ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    elif split in ("val", "test"):
        # easy-VQA has train and test only: its test set is split in half for val and test.
        qs, ans, ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    else:
        raise UserError(f"easy-vqa: unknown split '{split}' (choose train, val or test)")
    scenes = _scenes(qs, ans, ids)
    examples = []
    for k, (q, a, i) in enumerate(zip(qs, ans, ids)):
        if split != "train" and (i % 2 == 0) != (split == "val"):
            continue
        obj = scenes.get(i, {})
        if "shape" not in obj or "color" not in obj:
            continue  # the image's questions do not pin down its shape and colour
        scene = {"grid": 1, "objects": [{"shape": obj["shape"], "color": obj["color"]}]}
        family = "exist" if a in ("yes", "no") else ("query-shape" if a in _SHAPES else "query-color")
        art = "an" if obj["color"][0] in "aeiou" else "a"
        examples.append(Example(
            id=f"easyvqa-{split}-{k}", image=paths[i], question=q, answers=[a],
            explanations=_refs(q, a, obj),
            meta={"family": family, "scene": scene, "caption": f"{art} {obj['color']} {obj['shape']}",
                  "focus": [0], "image_id": str(i)},
        ))
    if limit is not None and limit < len(examples):
        examples = random.Random(seed).sample(examples, limit)
    return examples
