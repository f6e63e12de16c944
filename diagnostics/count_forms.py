"""What a VLM answers to the shapes count questions, by their form, and whether its captions count.

Count is the family the warm-up reads least from the image. This splits the val count questions by
form ("How many objects are there?", "How many <colour> objects ...?", "How many <shape>s ...?"):
per form, the accuracy, the answers given and the true ones (a model that always says one number
has answers that do not follow the truth), and for "How many objects" how many of each true number
it gets right; and for the "How many objects" questions, the number
the model's own caption of the image begins with ("three objects: ..."), which the warm-up's
caption steps train, against the truth and against its answer.

    .venv/bin/python diagnostics/count_forms.py ~/.cache/illume-rm/warmup/<key>
    .venv/bin/python diagnostics/count_forms.py CKPT1 CKPT2 --recipe recipes/shapes-warmup.yaml

Greedy, as the warm-up's evaluation answers; nothing is saved.
"""
from __future__ import annotations

import argparse
import collections
import re

from illume_rm.config import load_recipe
from illume_rm.data import load_examples
from illume_rm.errors import UserError, run_script
from illume_rm.evaluate.accuracy import answer_score
from illume_rm.train.warmup import CAPTION_PROMPT
from illume_rm.vlm import load_vlm

FORMS = ("objects", "colour", "shape")


def form(question: str) -> str:
    """objects: "How many objects are there?"; colour: "How many red objects ...?"; shape: "How many circles ...?"."""
    if question == "How many objects are there?":
        return "objects"
    return "colour" if re.fullmatch(r"How many \w+ objects are there\?", question) else "shape"


def caption_number(caption: str) -> str:
    """The number word a caption begins with ("three objects: ..." -> "three"; "one object" -> "one")."""
    return caption.strip().split(" ", 1)[0].lower() if caption.strip() else ""


def measure(vlm, questions) -> dict:
    """Per form: n, right, the answers given and the true ones (Counters); for "objects", the captions'
    numbers: right, and agreeing with the answer."""
    answers = vlm.answer(questions)  # parsed, as the warm-up's evaluation asks them
    right = lambda said, ex: answer_score(said, ex.answers) > 0  # noqa: E731  (the warm-up's scoring)
    out = {f: {"n": 0, "right": 0, "given": collections.Counter(), "truth": collections.Counter(),
               "right_by_truth": collections.Counter()} for f in FORMS}
    for ex, a in zip(questions, answers):
        row = out[form(ex.question)]
        row["n"] += 1
        row["right"] += right(a, ex)
        row["right_by_truth"][ex.answer] += right(a, ex)
        row["given"][a] += 1
        row["truth"][ex.answer] += 1
    whole = [(ex, a) for ex, a in zip(questions, answers) if form(ex.question) == "objects"]
    if whole:
        caps = vlm.generate([(ex.image, CAPTION_PROMPT, None) for ex, _ in whole], max_new_tokens=8)
        nums = [caption_number(c[0]) for c in caps]  # each prompt's one greedy text
        out["objects"]["caption_right"] = sum(right(n, ex) for n, (ex, _) in zip(nums, whole))
        out["objects"]["caption_agrees"] = sum(n == a for n, (_, a) in zip(nums, whole))
        out["objects"]["captions"] = collections.Counter(nums)
    return out


def report(name: str, res: dict) -> str:
    top = lambda c: ", ".join(f"{k or '(none)'} {v}" for k, v in c.most_common(4))  # noqa: E731
    lines = [name, f"{'form':8s} {'n':>4s} {'right':>6s}  answers given (most often)       true answers"]
    for f in FORMS:
        r = res[f]
        if r["n"]:
            lines.append(f"{f:8s} {r['n']:4d} {r['right'] / r['n']:6.3f}  {top(r['given']):32s} {top(r['truth'])}")
    r = res["objects"]
    if r["n"]:
        lines.append("'How many objects' right by true answer: " + ", ".join(
            f"{k} {r['right_by_truth'][k]}/{v}" for k, v in r["truth"].most_common()))
    if "captions" in r:
        lines.append(f"captions of the {r['n']} 'How many objects' images: their number right {r['caption_right']}, "
                     f"the same as the answer {r['caption_agrees']}; numbers {top(r['captions'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", help="model folders (a warm-up checkpoint, an iteration's)")
    ap.add_argument("--recipe", default="recipes/shapes-warmup.yaml", help="whose data's val split to ask")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    recipe = load_recipe(a.recipe, a.set)
    if recipe.data.name != "shapes":
        raise UserError(f"count_forms: {a.recipe} uses data '{recipe.data.name}'; it needs shapes (its count questions)")
    questions = [e for e in load_examples(recipe.data, "val") if e.meta.get("family") == "count"]
    for path in a.checkpoints:
        vlm = load_vlm(path, device=recipe.model.device, precision=recipe.model.precision)
        print(report(str(path), measure(vlm, questions)) + "\n")


if __name__ == "__main__":
    run_script(main)
