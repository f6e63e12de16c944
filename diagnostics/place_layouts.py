"""Where should each cell's place be written? A text-only test of the image layout, in minutes.

The built-in VLM's image is a row of cells, each its place in words and its content as word tokens.
"Where is the red circle?" is answered by finding the content and reading its place; "What is in
the top left?" by finding the place and reading its content. This trains the same language model
(SmolLM2-135M, LoRA as the warm-up's) on the warm-up's grounding questions only, with each scene
given as text in one layout, for as many steps as the demo warm-up's grounding share (48 of 16),
and asks the grounding questions of 100 val images:

- ``before``: "top left: small red circle, top middle: nothing, ..." (``model.cell_places: before``)
- ``after``:  "small red circle in the top left, nothing in the top middle, ..."
- ``around``: "top left: small red circle (top left), ..." (``model.cell_places: around``)
- ``bare``:   "top left small red circle top left, ..." (``model.cell_places: bare``, fewer tokens)

    .venv/bin/python diagnostics/place_layouts.py                        # all four, seed 0
    .venv/bin/python diagnostics/place_layouts.py --layouts before around --seeds 0 1

Nothing is saved; a table is printed (and the commonest wrong places for "Where is").
"""
from __future__ import annotations

import argparse
import random
import time
from collections import Counter

from illume_rm.checkpoints import base_vlm
from illume_rm.config import load_recipe
from illume_rm.data import load_examples
from illume_rm.data.shapes import scene_cells
from illume_rm.errors import UserError, run_script
from illume_rm.evaluate.accuracy import normalize
from illume_rm.evaluate.controls import grounding_items
from illume_rm.train.lora import add_lora, merge_lora
from illume_rm.train.steps import train_steps
from illume_rm.train.warmup import warmup_items
from illume_rm.vlm.base import ANSWER_TEMPLATE, parse_answer
from illume_rm.vlm.processor import cell_text

LAYOUTS = ("before", "after", "around", "bare")


def render(scene: dict, layout: str) -> str:
    places, words = scene_cells(scene)
    if layout == "after":
        return ", ".join(f"{w} in the {p}" for p, w in zip(places, words)) + "."
    return cell_text(places, words, layout)


def one_run(recipe, train, val, layout: str, seed: int, steps: int) -> dict:
    import torch

    scenes = {ex.image: ex.meta["scene"] for ex in list(train) + list(val)}
    _, _, grounded = warmup_items(train, balance=recipe.warmup.balance_grounding, seed=seed)
    items = [(None, f"{render(scenes[img], layout)} {prompt}", target) for img, prompt, target in grounded]
    torch.manual_seed(seed)
    vlm = base_vlm(recipe)
    model = add_lora(vlm, recipe.warmup.lora)
    params = [p for p in model.parameters() if p.requires_grad]
    rng = random.Random(seed)
    cfg = recipe.warmup
    t = time.time()
    train_steps(vlm, [{"params": params, "lr": cfg.lr}], steps, lambda _: (rng.sample(items, cfg.batch_size), None),
                schedule=cfg.schedule, warmup_steps=cfg.warmup_steps, precision="fp32", desc=f"{layout}, seed {seed}")
    seconds = time.time() - t
    merge_lora(vlm)
    vlm.model.eval()
    asked = grounding_items(val)
    hits: dict[str, list[int]] = {}
    wrong: Counter = Counter()
    for start in range(0, len(asked), 32):
        chunk = asked[start:start + 32]
        gens = vlm.generate([(None, f"{render(scenes[img], layout)} {ANSWER_TEMPLATE.format(question=q)}", None)
                             for img, q, _, _ in chunk], max_new_tokens=8)
        for (_, _, answer, kind), g in zip(chunk, gens):
            ok = normalize(parse_answer(g[0])) == normalize(answer)
            hits.setdefault(kind, []).append(int(ok))
            if kind == "where" and not ok:
                wrong[f"{answer} -> {parse_answer(g[0])}"] += 1
    return {"acc": {k: sum(v) / len(v) for k, v in hits.items()}, "n": {k: len(v) for k, v in hits.items()},
            "seconds": seconds, "wrong": wrong.most_common(3)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", nargs="?", default="recipes/shapes-warmup.yaml")
    ap.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--steps", type=int, default=None, help="default: the recipe's grounding share of its steps")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    recipe = load_recipe(a.recipe, a.set)
    if recipe.data.name != "shapes":
        raise UserError(f"place_layouts: {a.recipe} uses data '{recipe.data.name}'; it needs shapes (scene graphs)")
    steps = a.steps or max(1, round(recipe.warmup.steps * recipe.warmup.grounding_fraction))
    train, val = load_examples(recipe.data, "train"), load_examples(recipe.data, "val")
    rows = []
    for layout in a.layouts:
        for seed in a.seeds:
            r = one_run(recipe, train, val, layout, seed, steps)
            rows.append((layout, seed, r))
            print(f"{layout}, seed {seed}: " + "  ".join(f"{k} {v:.3f}" for k, v in sorted(r["acc"].items()))
                  + f"  ({r['seconds'] / 60:.1f} min; commonest wrong places: {r['wrong']})", flush=True)
    print(f"\n{steps} grounding steps of {recipe.warmup.batch_size}, the scene as text; grounding questions of "
          f"100 val images ({', '.join(f'{k} {v}' for k, v in sorted(rows[0][2]['n'].items()))})")
    print("| layout | seed | what is in (occupied) | what is in (empty) | where is | training (min) |")
    print("|---|---|---|---|---|---|")
    for layout, seed, r in rows:
        acc = r["acc"]
        print(f"| {layout} | {seed} | {acc.get('what_occupied', 0):.3f} | {acc.get('what_empty', 0):.3f} | "
              f"{acc.get('where', 0):.3f} | {r['seconds'] / 60:.1f} |")


if __name__ == "__main__":
    run_script(main)
