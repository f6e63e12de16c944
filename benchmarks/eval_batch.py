"""Evaluation and sampling in larger batches against the batches before, in one run, same model and
questions, each pair back to back and, with --rounds N, alternating N times (the median of each side):

1. warm-up answers (`VLM.answer`, 6 new tokens) on the val split: batches of 32 against 128;
2. the warm-up's accuracy and swapped-image control: two passes (own images, then each question on
   another scene's image) against one pass with each image's own and swapped-in questions together
   (`train.warmup.evaluate_with_swapped`: each image read once for both);
3. grounding questions (`evaluate.controls.grounding_accuracy`, 100 images): batches of 32 against 128;
4. the loop's evaluation (`sampling.explain`: answer, then rationale) on 150 val questions:
   `sampling.eval_batch_size` 16 (the sampling batch it used before) against 128;
5. rationale sampling (`sampling.sample_candidates`, 160 train questions x 4 samples): one 16-question
   batch a decoding call against several together (`SAMPLED_ROWS_PER_CALL` rows), each batch from its
   own seed.

    .venv/bin/python benchmarks/eval_batch.py --checkpoint WARMUP [--recipe recipes/shapes-critic.yaml] [--rounds 1]

Each row says whether both sides gave the same results (answers, rationales, candidates; greedy and
seeded, so they should, up to float rounding of the logits).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

import illume_rm.sampling as sampling
from illume_rm.checkpoints import base_vlm
from illume_rm.config import load_recipe
from illume_rm.data import load_examples
from illume_rm.evaluate.accuracy import accuracy_by_family
from illume_rm.evaluate.controls import grounding_accuracy, swap_images
from illume_rm.train.warmup import evaluate_with_swapped


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True, help="a warm-up checkpoint folder")
    ap.add_argument("--recipe", default="recipes/shapes-critic.yaml")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    recipe = load_recipe(args.recipe)
    vlm = base_vlm(recipe, args.checkpoint)
    val, train = load_examples(recipe.data, "val"), load_examples(recipe.data, "train")
    vlm.features.get([e.image for e in val + train])
    few = val[:recipe.sampling.eval_examples or len(val)]
    to_sample = train[:recipe.sampling.train_examples or len(train)]

    def two_passes():
        return (accuracy_by_family(val, vlm.answer(val, batch_size=32)),
                accuracy_by_family(val, vlm.answer(swap_images(val), batch_size=32)))

    def sample(rows):
        return lambda: [(c.id, c.rationale) for c in sampling.sample_candidates(
            vlm, to_sample, recipe.sampling, seed=recipe.seed, progress=False, rows_per_call=rows)]

    def explain(n):
        cfg = dataclasses.replace(recipe.sampling, eval_batch_size=n)
        return lambda: [(c.answer, c.rationale) for c in sampling.explain(vlm, few, cfg, progress=False)]

    pairs = [
        (f"answers, {len(val)} val questions: batches of 32 vs 128",
         lambda: vlm.answer(val, batch_size=32), lambda: vlm.answer(val, batch_size=128)),
        (f"accuracy + swapped control, {len(val)} questions each: two passes (batches of 32) vs one, each image once",
         two_passes, lambda: evaluate_with_swapped(vlm, val)),
        ("grounding questions, 100 images: batches of 32 vs 128",
         lambda: grounding_accuracy(vlm, val, batch_size=32), lambda: grounding_accuracy(vlm, val, batch_size=128)),
        (f"loop evaluation (answer, then rationale), {len(few)} questions: eval batches of 16 vs 128",
         explain(16), explain(128)),
        (f"sampling, {len(to_sample)} questions x 4: one batch of {recipe.sampling.batch_size} a call vs "
         f"{sampling.SAMPLED_ROWS_PER_CALL} rows a call", sample(1), sample(sampling.SAMPLED_ROWS_PER_CALL)),
    ]
    print(f"checkpoint {args.checkpoint}; torch threads {torch.get_num_threads()}; {args.rounds} round(s)")
    print("| what | before (s) | after (s) | speed-up | same results |\n|---|---|---|---|---|")
    for name, before, after in pairs:
        tb, ta, same = [], [], True
        for _ in range(args.rounds):
            t, ref = timed(before)
            tb.append(t)
            t, got = timed(after)
            ta.append(t)
            same &= got == ref
        b, a = statistics.median(tb), statistics.median(ta)
        print(f"| {name} | {b:.1f} | {a:.1f} | {b / a:.2f}x | {'yes' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
