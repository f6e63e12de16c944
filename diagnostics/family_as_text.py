"""Can the language model learn one question family at all? Perfect perception, one family alone.

The longer warm-up leaves compare near chance, and so does its text upper bound (the same language
model given each scene as exact text, trained on all the families' question steps). This asks the
narrower question: the same language model (SmolLM2-135M, LoRA as the warm-up's), each scene given
as exact text laid out as the image tokens are, trained on the named family's training questions
alone, then asked that family's val questions every ``--every`` steps. A family that stays near
chance here is held back by the language model and the data's size, not by the image.

    .venv/bin/python diagnostics/family_as_text.py                       # compare, 120 steps, seed 0
    .venv/bin/python diagnostics/family_as_text.py --family spatial --steps 80 --every 40

Nothing is saved; a table is printed (accuracy, chance, standard errors above chance).
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

from illume_rm.checkpoints import base_vlm
from illume_rm.config import load_recipe
from illume_rm.data import load_examples
from illume_rm.data.shapes import FAMILIES
from illume_rm.errors import UserError, run_script
from illume_rm.evaluate.accuracy import chance_by_family
from illume_rm.evaluate.controls import as_text
from illume_rm.train.warmup import evaluate_answers, text_questions_config, train_warmup


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe", nargs="?", default="recipes/shapes-warmup-long.yaml")
    ap.add_argument("--family", choices=FAMILIES, default="compare")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--every", type=int, default=40, help="evaluate every this many steps (and at the end)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    if a.steps < 1 or a.every < 1:
        raise UserError(f"family_as_text: --steps and --every must be at least 1 (got {a.steps}, {a.every})")
    recipe = load_recipe(a.recipe, a.set)
    if recipe.data.name != "shapes":
        raise UserError(f"family_as_text: {a.recipe} uses data '{recipe.data.name}'; it needs shapes (scene graphs)")
    train = [e for e in load_examples(recipe.data, "train") if e.meta.get("family") == a.family]
    val = [e for e in load_examples(recipe.data, "val") if e.meta.get("family") == a.family]
    if not train or not val:
        raise UserError(f"family_as_text: no {a.family} questions in {a.recipe}'s data (train {len(train)}, "
                        f"val {len(val)})")
    chance = chance_by_family(train, val)[a.family]
    se = math.sqrt(chance * (1 - chance) / len(val))
    vlm = base_vlm(recipe)
    places = vlm.processor.cell_places
    text_train, text_val = [as_text(e, places) for e in train], [as_text(e, places) for e in val]
    # the warm-up's own loop and optimiser, on question steps only (as the text upper bound), one family
    cfg = replace(text_questions_config(recipe.warmup, a.steps, a.every), family_weights=None)
    rows: list[tuple[int, float]] = []

    def on_eval(step: int) -> None:
        rows.append((step, evaluate_answers(vlm, text_val)[a.family]))
        print(f"step {step}: {a.family} {rows[-1][1]:.3f}", flush=True)

    print(f"{a.family}: {len(train)} training questions, {len(val)} val; {a.steps} steps of {cfg.batch_size} "
          f"({a.steps * cfg.batch_size / len(train):.1f} epochs), the scene as text laid out {places}", flush=True)
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
