"""Can the language model learn one question family at all? Perfect perception, one family alone.

The longer warm-up leaves compare near chance, and so does its text upper bound (the same language
model given each scene as exact text, trained on all the families' question steps). This asks the
narrower question: the same language model (SmolLM2-135M, LoRA as the warm-up's), each scene given
as exact text laid out as the image tokens are, trained on the named family's training questions
alone, then asked that family's val questions every ``--every`` steps. A family that stays near
chance here is held back by the language model and the data's size, not by the image.

    .venv/bin/python diagnostics/family_as_text.py                       # compare, 120 steps, seed 0
    .venv/bin/python diagnostics/family_as_text.py --family spatial --steps 80 --every 40
    .venv/bin/python diagnostics/family_as_text.py --more-questions 10 --pair-questions 2   # more data, two look-ups
    .venv/bin/python diagnostics/family_as_text.py --question-first     # the question before the scene too

Nothing is saved; a table is printed (accuracy, chance, standard errors above chance).
"""
from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import replace

from illume_rm.checkpoints import base_vlm
from illume_rm.config import load_recipe
from illume_rm.data import load_examples
from illume_rm.data.shapes import FAMILIES, _refer, more_questions
from illume_rm.errors import UserError, run_script
from illume_rm.evaluate.accuracy import chance_by_family
from illume_rm.evaluate.controls import as_text
from illume_rm.records import Example
from illume_rm.train.warmup import evaluate_answers, text_questions_config, train_warmup


def pair_questions(train: list[Example], per_image: int, seed: int = 0) -> list[Example]:
    """``per_image`` questions about each training image of two objects or more: one attribute of two
    objects, each named without that attribute as compare questions name them (``_refer``)."""
    rng, firsts, out = random.Random(seed), {}, []
    for ex in train:
        firsts.setdefault(ex.meta["image_id"], ex)
    for image_id, ex in firsts.items():
        objs = ex.meta["scene"]["objects"]
        for k in range(per_image if len(objs) > 1 else 0):
            i, j = rng.sample(range(len(objs)), 2)
            attr = rng.choice(["color", "shape", "size"])
            q = f"What {attr} are the {_refer(objs[i], objs, attr)} and the {_refer(objs[j], objs, attr)}?"
            out.append(Example(id=f"pair-{image_id}-{k}", image=ex.image, question=q,
                               answers=[f"{objs[i][attr]} and {objs[j][attr]}"], meta={**ex.meta, "family": "pair"}))
    return out


def text_examples(examples: list[Example], places: str, question_first: bool = False) -> list[Example]:
    """Each example with its scene as exact text before its question (``as_text``); with
    ``question_first``, its question also before the scene, so that the scene is read knowing what is
    asked (the prompt still ends with the question, as without it)."""
    out = [as_text(e, places) for e in examples]
    return [replace(t, question=f"{e.question} {t.question}") for t, e in zip(out, examples)] if question_first else out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe", nargs="?", default="recipes/shapes-warmup-long.yaml")
    ap.add_argument("--family", choices=FAMILIES, default="compare")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--every", type=int, default=40, help="evaluate every this many steps (and at the end)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--more-questions", type=int, default=0, metavar="N",
                    help="also train on the family's share of N more questions an image, written from each "
                         "training image's scene as the data's own are (data/shapes.py: more_questions)")
    ap.add_argument("--pair-questions", type=int, default=0, metavar="K",
                    help="also train on K questions an image (of two objects or more) asking one attribute of two "
                         "objects named as compare names them ('What color are the circle and the square?' 'red "
                         "and blue'): the two look-ups compare needs, each answered in words")
    ap.add_argument("--question-first", action="store_true",
                    help="write the question before the scene as well as after it, so that the scene is read knowing "
                         "what is asked")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    if a.steps < 1 or a.every < 1:
        raise UserError(f"family_as_text: --steps and --every must be at least 1 (got {a.steps}, {a.every})")
    if a.more_questions < 0 or a.pair_questions < 0:
        raise UserError(f"family_as_text: --more-questions and --pair-questions must be 0 or more "
                        f"(got {a.more_questions}, {a.pair_questions})")
    recipe = load_recipe(a.recipe, a.set)
    if recipe.data.name != "shapes":
        raise UserError(f"family_as_text: {a.recipe} uses data '{recipe.data.name}'; it needs shapes (scene graphs)")
    data_train = load_examples(recipe.data, "train")
    train = [e for e in data_train if e.meta.get("family") == a.family]
    val = [e for e in load_examples(recipe.data, "val") if e.meta.get("family") == a.family]
    if not train or not val:
        raise UserError(f"family_as_text: no {a.family} questions in {a.recipe}'s data (train {len(train)}, "
                        f"val {len(val)})")
    chance = chance_by_family(train, val)[a.family]
    se = math.sqrt(chance * (1 - chance) / len(val))
    vlm = base_vlm(recipe)
    places = vlm.processor.cell_places
    # the family's further questions about the same training images, written from their scenes
    more = [e for e in more_questions(data_train, a.more_questions, a.seed) if e.meta.get("family") == a.family]
    pairs = pair_questions(data_train, a.pair_questions, a.seed)
    text_train = text_examples(train + more + pairs, places, a.question_first)
    text_val = text_examples(val, places, a.question_first)
    # the warm-up's own loop and optimiser, on question steps only (as the text upper bound), one family
    cfg = replace(text_questions_config(recipe.warmup, a.steps, a.every), family_weights=None)
    rows: list[tuple[int, float]] = []

    def on_eval(step: int) -> None:
        rows.append((step, evaluate_answers(vlm, text_val)[a.family]))
        print(f"step {step}: {a.family} {rows[-1][1]:.3f}", flush=True)

    epochs = a.steps * cfg.batch_size / len(text_train)
    print(f"{a.family}: {len(text_train)} training questions ({len(more)} of them from --more-questions, "
          f"{len(pairs)} two-object questions), {len(val)} val; {a.steps} steps of {cfg.batch_size} "
          f"({epochs:.1f} epochs), the scene as text laid out {places}"
          f"{', the question before it too' if a.question_first else ''}", flush=True)
    t = time.time()
    train_warmup(vlm, text_train, cfg, a.seed, print, on_eval=on_eval)
    on_eval(a.steps)
    print(f"\n{(time.time() - t) / 60:.1f} min; chance {chance:.3f} (the training split's commonest answer), "
          f"its standard error over {len(val)} questions {se:.3f}")
    print("| family | step | items seen | accuracy | above chance, in standard errors |")
    print("|---|---|---|---|---|")
    for step, acc in rows:
        print(f"| {a.family} | {step} | {step * cfg.batch_size} | {acc:.3f} | {(acc - chance) / se:.1f} |")


if __name__ == "__main__":
    run_script(main)
