"""Warm-up step time with each image's items drawn together and its tokens read once
(``warmup.items_per_image``), as ratios against one item an image (the default) in the same run.

    .venv/bin/python benchmarks/shared_images.py [--steps 4] [--rounds 2] [--batch-size 16] [--precision fp32]

The real built-in VLM (shipped weights, word-anchored image tokens, the demo recipe's layout) with
LoRA as the warm-up adds it, fp32 (what ``precision: auto`` picks on a CPU without native bfloat16;
``--precision auto`` or ``bf16`` for bf16 autocast),
on the demo's shapes data (features cached first). For each kind of step (answer-only questions,
grounding questions, captions: one a image, so nothing to share), each setting is timed on its own
draws; settings alternate within each round. The first step of each setting is not timed. Also
checks that the loss of one shared batch is the whole rows' loss.
"""
from __future__ import annotations

import argparse
import random
import statistics

import torch

from illume_rm.train.lora import add_lora
from illume_rm.train.warmup import sample_by_image
from illume_rm.vlm.base import resolve_precision
from warmup_common import demo_vlm, standard_error, timed_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--k", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32")
    args = ap.parse_args()
    recipe, vlm, (questions, _, grounding) = demo_vlm(900, balance=True)
    precision = resolve_precision(args.precision, vlm.device)
    model = add_lora(vlm, recipe.warmup.lora)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    settings = [1] + args.k
    pools = {"answer-only questions": questions, "grounding questions": grounding}
    seconds = {(kind, k): [] for kind in pools for k in settings}
    rng = random.Random(0)
    check = sample_by_image(rng, grounding, 4, args.batch_size)
    with torch.no_grad():
        whole = vlm.loss(check).item()
        vlm.share_images = True
        shared = vlm.loss(check).item()
        vlm.share_images = False
    for _ in range(args.rounds):
        for kind, pool in pools.items():
            for k in settings:
                vlm.share_images = k > 1
                for step in range(args.steps + 1):
                    batch = sample_by_image(rng, pool, k, args.batch_size) if k > 1 else rng.sample(pool, args.batch_size)
                    took = timed_step(vlm, opt, batch, precision)
                    if step:
                        seconds[(kind, k)].append(took)
                vlm.share_images = False
    print(f"batch {args.batch_size}, {args.steps} timed steps x {args.rounds} rounds per setting, {precision}, "
          f"torch threads {torch.get_num_threads()}; one shared batch's loss {shared:.6f}, its whole rows' {whole:.6f}")
    print("| step | items an image | s / step | speed-up |\n|---|---|---|---|")
    for kind in pools:
        base = statistics.mean(seconds[(kind, 1)])
        for k in settings:
            s = seconds[(kind, k)]
            se = standard_error(s)
            print(f"| {kind} | {k} | {statistics.mean(s):.2f} ± {se:.2f} | **{base / statistics.mean(s):.2f}x** |")


if __name__ == "__main__":
    main()
