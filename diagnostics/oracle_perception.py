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

``--layout tokens`` keeps the image and gives the LM perfect image tokens instead:
each slot's token exactly its true word's embedding (one-hot over the slot's
words) or, where the cell has no such word, the zero vector the model uses for
"no word" (an empty cell reads ``top left: <0> <0> nothing (top left)``, two
positions more than the text ``top left: nothing (top left)``). Against
``--layout grid`` at the same steps and seed it measures what the image tokens'
layout costs the LM. Two things differ there: the zero slots, and where the scene
stands (``grid`` writes it inside the question, ``Q: top left: ... How many ...?
A:``; the image comes before ``Q:``). ``--layout block`` separates them: the
scene as text where the image's tokens stand, ``top left: nothing (top left), ...
(bottom right).Q: How many ...? A:``, which is ``tokens`` without its zero slots.

    .venv/bin/python diagnostics/oracle_perception.py --layout tokens
    .venv/bin/python diagnostics/oracle_perception.py --layout block
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import tempfile
from pathlib import Path

from illume_rm.checkpoints import base_vlm
from illume_rm.config import load_recipe
from illume_rm.data import load_examples
from illume_rm.data.scene import place_phrase
from illume_rm.data.shapes import scene_text
from illume_rm.errors import UserError, run_script
from illume_rm.evaluate.controls import as_text as controls_as_text
from illume_rm.records import Example
from illume_rm.train.warmup import format_table, run_warmup, text_questions_config
from illume_rm.vlm.base import ANSWER_TEMPLATE


def cell_name(row: int, col: int) -> str:
    return place_phrase(row, col).removeprefix("in the ")


def describe_objects(scene: dict) -> str:
    """Only the objects, row by row: 'small green circle top middle, large gray triangle centre.'"""
    objs = sorted(scene["objects"], key=lambda o: (o["row"], o["col"]))
    return ", ".join(f"{o['size']} {o['color']} {o['shape']} {cell_name(o['row'], o['col'])}" for o in objs) + "."


def as_text(ex: Example, layout: str, cell_places: str, count: bool = False) -> Example:
    """grid: laid out as the image tokens are (model.cell_places, model.count_token); objects:
    describe_objects; block: the grid's text before ``Q:`` (the question then carries its own ``Q:``,
    see ``BLOCK_TEMPLATE``)."""
    if layout == "grid":
        return controls_as_text(ex, cell_places, count)  # the warm-up's own text bound
    if layout == "block":
        return dataclasses.replace(ex, image=None,
                                   question=f"{scene_text(ex.meta['scene'], cell_places, count)}Q: {ex.question}")
    return dataclasses.replace(ex, image=None, question=f"{describe_objects(ex.meta['scene'])} {ex.question}")


BLOCK_TEMPLATE = "{question} A:"  # the block layout's question begins with the scene, then "Q: "


@contextlib.contextmanager
def answer_template(template: str):
    """Every answer prompt (the warm-up's items, the evaluation's questions) made with ``template``
    instead of ``Q: {question} A:``: the block layout's scene must come before ``Q:``."""
    from illume_rm.vlm import base

    saved = base.answer_prompt.__defaults__, base.VLM.answer.__defaults__
    base.answer_prompt.__defaults__ = (template,)
    base.VLM.answer.__defaults__ = (saved[1][0], template)
    try:
        yield
    finally:
        base.answer_prompt.__defaults__, base.VLM.answer.__defaults__ = saved


def perfect_tokens(vlm, examples: list[Example]) -> None:
    """Make ``vlm``'s word-anchored image tokens exactly the scene graph's words: the feature cache
    hands out each image's true slot indices and the slot logits are one-hot on them (0 there,
    -inf elsewhere), so each token is its word's embedding, or the zero vector for no word."""
    import torch

    from illume_rm.train.align import cell_targets

    targets = cell_targets(vlm, examples)
    missing = sorted({ex.image for ex in examples if ex.image not in targets})
    if missing:
        raise UserError(f"oracle_perception --layout tokens: no scene graph words for {len(missing)} image(s), "
                        f"e.g. {missing[0]} (needs the built-in VLM with word tokens on shapes data)")
    model, device = vlm.model, vlm.device
    sizes = [len(w) + 1 for w in model.config.visual_words]
    vlm.features.get = lambda paths, *args, **kwargs: torch.stack([targets[p] for p in paths]).to(device)

    def slot_logits(gold: torch.Tensor) -> list[torch.Tensor]:
        gold = gold.long()
        return [torch.full((*gold.shape[:2], n), float("-inf"), device=gold.device)
                .scatter(-1, gold[..., s:s + 1], 0.0) for s, n in enumerate(sizes)]

    model.slot_logits = slot_logits


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", nargs="?", default="recipes/shapes-warmup.yaml")
    ap.add_argument("--steps", type=int, default=None,
                    help="question steps (default: the recipe's question share of its steps, as the demo has)")
    ap.add_argument("--eval-every", type=int, default=None)
    ap.add_argument("--families", default=None,
                    help="train and measure only these question families (comma-separated, e.g. compare)")
    ap.add_argument("--layout", choices=["grid", "objects", "tokens", "block"], default="grid",
                    help="grid: every cell, 'nothing' where empty (the image tokens' order); objects: only the "
                         "objects, each followed by its place (shorter, so faster); tokens: the image kept, its "
                         "tokens exactly the true words (zero vectors for no word); block: the grid's text "
                         "before 'Q:', where the image stands")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    recipe = load_recipe(a.recipe, a.set)
    if recipe.data.name != "shapes":
        raise UserError(f"oracle_perception: {a.recipe} uses data '{recipe.data.name}'; it needs shapes "
                        "(it describes each scene graph)")
    cfg = recipe.warmup
    steps = a.steps or round(cfg.steps * (1 - cfg.caption_fraction - cfg.grounding_fraction))
    cfg = text_questions_config(cfg, steps, a.eval_every)
    families = set(a.families.split(",")) if a.families else None
    keep = (lambda e: e) if a.layout == "tokens" else (lambda e: as_text(e, a.layout, recipe.model.cell_places,
                                                                         recipe.model.count_token))
    train, val = ([keep(e) for e in load_examples(recipe.data, split)
                   if families is None or e.meta.get("family") in families] for split in ("train", "val"))
    if not train:
        raise UserError(f"oracle_perception: --families {a.families}: no training question is of these families")
    vlm = base_vlm(recipe)
    template = BLOCK_TEMPLATE if a.layout == "block" else ANSWER_TEMPLATE
    shown = template.format(question=val[0].question)
    if a.layout == "tokens":
        perfect_tokens(vlm, train + val)
        shown = f"<image: {vlm.describe([val[0].image])[0]}> {shown}"
    print(f"oracle perception: {steps} question steps of {cfg.batch_size}; e.g. {shown!r}")
    with tempfile.TemporaryDirectory() as tmp, answer_template(template):
        report = run_warmup(vlm, train, val, cfg, Path(tmp) / "ckpt", seed=recipe.seed)
    print("\nval accuracy with the scene given as " + ("perfect image tokens" if a.layout == "tokens" else "text")
          + " (an upper bound for perception):")
    print(format_table(report["before"], report["after"], report["chance"]))


if __name__ == "__main__":
    run_script(main)
