"""Training-step time with each row's image block read without a gradient (``finetune.image_grad:
false``: a frozen prefix its text attends to) against through it (the default), in the same run.

    .venv/bin/python benchmarks/frozen_image.py [--steps 3] [--rounds 2] [--batch-size 16] [--precision fp32]

The real built-in VLM (shipped weights, word-anchored image tokens, the demo recipe's layout) with
the loop's LoRA (the projector frozen), fp32 by default, on the demo's shapes data (features cached
first). Kinds of step: the loop's fine-tuning batch (answer-only questions with one rationale
example in ten, as ``finetune`` draws them), and the warm-up's caption steps (longer text after the
image). Both settings are timed on the same batches, alternating; the first step of each is not
timed. Also checks that the two settings give the same loss.
"""
from __future__ import annotations

import argparse
import random
import statistics

import torch

from illume_rm.data import load_examples
from illume_rm.train.finetune import FinetuneConfig, explained_item
from illume_rm.train.lora import add_lora
from illume_rm.vlm.base import resolve_precision
from warmup_common import demo_vlm, loss_with, standard_error, timed_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32")
    args = ap.parse_args()
    recipe, vlm, (questions, captions, _) = demo_vlm(900)
    precision = resolve_precision(args.precision, vlm.device)
    train = load_examples(recipe.data, "train")[:900]
    explained = [explained_item(e, "there is a large red circle in the top left", False) for e in train]
    model = add_lora(vlm, FinetuneConfig().lora)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    rng = random.Random(0)

    def finetune_batch():
        n_exp = sum(rng.random() < 1 / 11 for _ in range(args.batch_size))
        return rng.sample(explained, n_exp) + rng.sample(questions, args.batch_size - n_exp)

    kinds = {"fine-tuning (answer-only + rationales)": finetune_batch,
             "captions": lambda: rng.sample(captions, args.batch_size)}
    seconds = {(kind, g): [] for kind in kinds for g in (True, False)}
    check = finetune_batch()
    through, frozen = loss_with(vlm, check), loss_with(vlm, check, image_grad=False)
    for _ in range(args.rounds):
        for kind, draw in kinds.items():
            batches = [draw() for _ in range(args.steps + 1)]
            for image_grad in (True, False):
                vlm.image_grad = image_grad
                for step, batch in enumerate(batches):
                    took = timed_step(vlm, opt, batch, precision)
                    if step:
                        seconds[(kind, image_grad)].append(took)
                vlm.image_grad = True
    print(f"batch {args.batch_size}, {args.steps} timed steps x {args.rounds} rounds per setting, {precision}, "
          f"torch threads {torch.get_num_threads()}; one batch's loss read through the image {through:.6f}, "
          f"without its gradient {frozen:.6f}")
    print("| step | image block | s / step | speed-up |\n|---|---|---|---|")
    for kind in kinds:
        base = statistics.mean(seconds[(kind, True)])
        for image_grad in (True, False):
            s = seconds[(kind, image_grad)]
            print(f"| {kind} | {'trained through' if image_grad else 'frozen prefix'} | "
                  f"{statistics.mean(s):.2f} ± {standard_error(s):.2f} | **{base / statistics.mean(s):.2f}x** |")


if __name__ == "__main__":
    main()
