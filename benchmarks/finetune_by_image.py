"""The loop's fine-tuning with its answer-only examples drawn k about each image and each image's
tokens read once (``finetune.items_per_image``), as ratios against one an image (the default) in the
same run: whole ``finetune`` calls of the demo loop's settings, fp32 (its precision), from one
warm-up checkpoint, the weights put back before each call; settings alternate within each round.

    .venv/bin/python benchmarks/finetune_by_image.py --checkpoint WARMUP [--steps 8] [--rounds 2] [--k 3]

The accepted rationales are the reference explanations of 200 training questions (of the length the
loop's accepted ones have). The first step of each call is timed too (each call adds its adapters);
each call trains on its own draws (seed = round). Also checks that one shared batch's loss is its
whole rows' loss.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import replace

import torch

from illume_rm.checkpoints import base_vlm
from illume_rm.config import load_recipe
from illume_rm.data import load_examples
from illume_rm.records import Candidate
from illume_rm.train.finetune import finetune
from illume_rm.train.steps import sample_by_image
from illume_rm.vlm.base import answer_prompt
from warmup_common import standard_error


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True, help="a warm-up checkpoint folder")
    ap.add_argument("--recipe", default="recipes/shapes-critic.yaml")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--k", type=int, nargs="+", default=[3])
    args = ap.parse_args()
    recipe = load_recipe(args.recipe)
    vlm = base_vlm(recipe, args.checkpoint)
    train = load_examples(recipe.data, "train")
    vlm.features.get([e.image for e in train if e.image])
    accepted = [Candidate(id=f"{e.id}#ref", example_id=e.id, answer=e.answer, rationale=e.explanations[0])
                for e in train if e.explanations][:200]
    weights = {n: p.detach().clone() for n, p in vlm.model.state_dict().items()}
    items = [(e.image, answer_prompt(e), " " + e.answer) for e in train]
    check = sample_by_image(random.Random(0), items, 3, recipe.finetune.batch_size)
    with torch.no_grad():
        whole = vlm.loss(check).item()
        vlm.share_images = True
        shared = vlm.loss(check).item()
        vlm.share_images = False
    settings = [1] + args.k
    seconds: dict[int, list[float]] = {k: [] for k in settings}
    for rnd in range(args.rounds):
        for k in settings:
            cfg = replace(recipe.finetune, steps=args.steps, items_per_image=k)
            t = time.perf_counter()
            finetune(vlm, train, accepted, cfg, seed=rnd, log=lambda s: None)
            seconds[k].append((time.perf_counter() - t) / args.steps)
            vlm.model.language_model = vlm.model.language_model.unload()
            vlm.model.load_state_dict(weights)
    print(f"{args.steps} steps of {recipe.finetune.batch_size} a call x {args.rounds} rounds per setting, "
          f"{recipe.finetune.precision}, torch threads {torch.get_num_threads()}; one shared batch's loss "
          f"{shared:.6f}, its whole rows' {whole:.6f}")
    print("| answer-only examples an image | s / step | speed-up |\n|---|---|---|")
    base = statistics.mean(seconds[1])
    for k in settings:
        s = seconds[k]
        print(f"| {k} | {statistics.mean(s):.2f} ± {standard_error(s):.2f} | **{base / statistics.mean(s):.2f}x** |")


if __name__ == "__main__":
    main()
