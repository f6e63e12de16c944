"""Warm-up step time under bf16 autocast against fp32, in one run, for each kind of step.

    .venv/bin/python benchmarks/warmup_precision.py [--steps 4] [--batch-size 16]

The real built-in VLM (shipped weights) with LoRA as warm-up adds it, on the demo's shapes data
(features cached first). The first step of each kind and precision is a warm-up and not timed.
"""
from __future__ import annotations

import argparse
import random
import time

import torch

from illume_rm.checkpoints import base_vlm
from illume_rm.config import load_recipe
from illume_rm.data import load_examples
from illume_rm.train.lora import add_lora
from illume_rm.train.steps import autocast
from illume_rm.train.warmup import warmup_items


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    recipe = load_recipe("recipes/shapes-warmup.yaml")
    train = load_examples(recipe.data, "train")
    vlm = base_vlm(recipe)
    vlm.features.get([e.image for e in train if e.image])
    kinds = dict(zip(("question", "caption", "grounding"), warmup_items(train)))
    model = add_lora(vlm, recipe.warmup.lora)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    rng = random.Random(0)
    seconds: dict[tuple[str, str], float] = {}
    for kind, pool in kinds.items():
        for precision in ("fp32", "bf16"):
            times = []
            for _ in range(args.steps + 1):
                batch = rng.sample(pool, args.batch_size)
                t0 = time.perf_counter()
                with autocast(vlm, precision):
                    loss = vlm.loss(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                times.append(time.perf_counter() - t0)
            seconds[kind, precision] = sum(times[1:]) / args.steps
    print(f"batch {args.batch_size}, {args.steps} timed steps each, torch threads {torch.get_num_threads()}")
    print("| step | fp32 s | bf16 s | speed-up |\n|---|---|---|---|")
    for kind in kinds:
        a, b = seconds[kind, "fp32"], seconds[kind, "bf16"]
        print(f"| {kind} | {a:.2f} | {b:.2f} | **{a / b:.2f}x** |")


if __name__ == "__main__":
    main()
