"""Warm-up step time under bf16 autocast against fp32, in one run, for each kind of step.

    .venv/bin/python benchmarks/warmup_precision.py [--steps 4] [--batch-size 16]

The real built-in VLM (shipped weights) with LoRA as warm-up adds it, on the demo's shapes data
(features cached first). The first step of each kind and precision is a warm-up and not timed.
"""
from __future__ import annotations

import argparse
import random

import torch

from illume_rm.train.lora import add_lora
from warmup_common import demo_vlm, timed_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    recipe, vlm, items = demo_vlm()
    kinds = dict(zip(("question", "caption", "grounding"), items))
    model = add_lora(vlm, recipe.warmup.lora)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    rng = random.Random(0)
    seconds: dict[tuple[str, str], float] = {}
    for kind, pool in kinds.items():
        for precision in ("fp32", "bf16"):
            times = [timed_step(vlm, opt, rng.sample(pool, args.batch_size), precision)
                     for _ in range(args.steps + 1)]
            seconds[kind, precision] = sum(times[1:]) / args.steps
    print(f"batch {args.batch_size}, {args.steps} timed steps each, torch threads {torch.get_num_threads()}")
    print("| step | fp32 s | bf16 s | speed-up |\n|---|---|---|---|")
    for kind in kinds:
        a, b = seconds[kind, "fp32"], seconds[kind, "bf16"]
        print(f"| {kind} | {a:.2f} | {b:.2f} | **{a / b:.2f}x** |")


if __name__ == "__main__":
    main()
