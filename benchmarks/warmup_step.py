"""Warm-up step time on this machine for the settings that decide it, as ratios against the old
default in the same run: LoRA dropout 0.05 and SDPA attention (the baseline), dropout 0, and
dropout 0 with eager attention (the default on a CPU now). bf16 autocast, the demo's batch size.

    .venv/bin/python benchmarks/warmup_step.py [--steps 6] [--batch-size 16]

The real built-in VLM (shipped weights, word-anchored image tokens) with LoRA as warm-up adds it,
on the demo's shapes data (features cached first); question and grounding steps alternate. The
first step of each setting is not timed.
"""
from __future__ import annotations

import argparse
import random
import statistics
from dataclasses import replace

import torch

from illume_rm.train.lora import add_lora
from warmup_common import demo_vlm, standard_error, timed_step

SETTINGS = [("dropout 0.05, SDPA (the old default)", 0.05, "sdpa"),
            ("dropout 0, SDPA", 0.0, "sdpa"),
            ("dropout 0, eager (the default on a CPU)", 0.0, "eager")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="each setting is timed this many times, interleaved")
    args = ap.parse_args()
    recipe, vlm, (questions, _, grounding) = demo_vlm(600, balance=True)
    lm = vlm.model.language_model
    seconds: dict[str, list[float]] = {name: [] for name, _, _ in SETTINGS}
    for _ in range(args.rounds):
        for name, dropout, attn in SETTINGS:
            lm.set_attn_implementation(attn)
            model = add_lora(vlm, replace(recipe.warmup.lora, dropout=dropout))
            model.train()
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
            rng = random.Random(0)
            for step in range(args.steps + 1):
                took = timed_step(vlm, opt, rng.sample(questions if step % 2 else grounding, args.batch_size), "bf16")
                if step:
                    seconds[name].append(took)
            vlm.model.language_model = vlm.model.language_model.unload()
            lm = vlm.model.language_model
    base = statistics.mean(seconds[SETTINGS[0][0]])
    print(f"batch {args.batch_size}, {args.steps} timed steps x {args.rounds} rounds per setting, "
          f"torch threads {torch.get_num_threads()}")
    print("| setting | s / step | speed-up |\n|---|---|---|")
    for name, _, _ in SETTINGS:
        m = statistics.mean(seconds[name])
        se = standard_error(seconds[name])
        print(f"| {name} | {m:.2f} ± {se:.2f} | **{base / m:.2f}x** |")


if __name__ == "__main__":
    main()
