"""How far the warm-up could get if the VLM saw perfectly: the scene as text.

Each shapes question is given to the same language model (SmolLM2-135M, the
built-in VLM's) with the image replaced by an exact description of every
grid cell, in the words and order the VLM's image tokens stand for ("top
left: nothing, top middle: small green circle, ..."), and the warm-up trains
its LoRA on answer-only questions as ``illume-rm warmup`` does. The val
accuracy per family is then an upper bound on what perception can buy at that
many question steps: a family that stays near chance here is not held back by
the image features, but by how fast the LM learns the reasoning itself.

    .venv/bin/python diagnostics/oracle_perception.py                 # the demo recipe
    .venv/bin/python diagnostics/oracle_perception.py --steps 300 --eval-every 60
    .venv/bin/python diagnostics/oracle_perception.py --families compare --layout objects \
        --steps 300 --eval-every 75 --set warmup.lr=0.002           # one family alone

(Text and image tokens reach the LM the same way, as input embeddings: image
tokens equal to the word embeddings of these words, after text place labels,
would give it exactly this input.) Nothing is saved; the report is printed.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from illume_rm.checkpoints import base_vlm
from illume_rm.config import load_recipe
from illume_rm.data import load_examples
from illume_rm.data.scene import place_phrase
from illume_rm.data.shapes import scene_text
from illume_rm.errors import UserError, run_script
from illume_rm.records import Example
from illume_rm.train.warmup import format_table, run_warmup


def cell_name(row: int, col: int) -> str:
    return place_phrase(row, col).removeprefix("in the ")


def describe_objects(scene: dict) -> str:
    """Only the objects, row by row: 'small green circle top middle, large gray triangle centre.'"""
    objs = sorted(scene["objects"], key=lambda o: (o["row"], o["col"]))
    return ", ".join(f"{o['size']} {o['color']} {o['shape']} {cell_name(o['row'], o['col'])}" for o in objs) + "."


def as_text(ex: Example, layout: str, cell_places: str) -> Example:
    """grid: laid out as the image tokens are (model.cell_places); objects: describe_objects."""
    text = scene_text(ex.meta["scene"], cell_places) if layout == "grid" else describe_objects(ex.meta["scene"])
    return dataclasses.replace(ex, image=None, question=f"{text} {ex.question}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", nargs="?", default="recipes/shapes-warmup.yaml")
    ap.add_argument("--steps", type=int, default=None,
                    help="question steps (default: the recipe's question share of its steps, as the demo has)")
    ap.add_argument("--eval-every", type=int, default=None)
    ap.add_argument("--families", default=None,
                    help="train and measure only these question families (comma-separated, e.g. compare)")
    ap.add_argument("--layout", choices=["grid", "objects"], default="grid",
                    help="grid: every cell, 'nothing' where empty (the image tokens' order); objects: only the "
                         "objects, each followed by its place (shorter, so faster)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    recipe = load_recipe(a.recipe, a.set)
    if recipe.data.name != "shapes":
        raise UserError(f"oracle_perception: {a.recipe} uses data '{recipe.data.name}'; it needs shapes "
                        "(it describes each scene graph)")
    cfg = recipe.warmup
    steps = a.steps or round(cfg.steps * (1 - cfg.caption_fraction - cfg.grounding_fraction))
    cfg = dataclasses.replace(cfg, steps=steps, caption_fraction=0.0, grounding_fraction=0.0, eval_every=a.eval_every)
    families = set(a.families.split(",")) if a.families else None
    train, val = ([as_text(e, a.layout, recipe.model.cell_places) for e in load_examples(recipe.data, split)
                   if families is None or e.meta.get("family") in families] for split in ("train", "val"))
    if not train:
        raise UserError(f"oracle_perception: --families {a.families}: no training question is of these families")
    print(f"oracle perception: {steps} question steps of {cfg.batch_size}; e.g. {val[0].question!r}")
    vlm = base_vlm(recipe)
    with tempfile.TemporaryDirectory() as tmp:
        report = run_warmup(vlm, train, val, cfg, Path(tmp) / "ckpt", seed=recipe.seed)
    print("\nval accuracy with the scene given as text (an upper bound for perception):")
    print(format_table(report["before"], report["after"], report["chance"]))


if __name__ == "__main__":
    run_script(main)
