"""Generation under bfloat16 autocast against float32, on the same model, prompts and seed, in one run.

    .venv/bin/python benchmarks/generation_precision.py [--checkpoint DIR] [--examples 64]

Times greedy answers (6 new tokens, as evaluation asks them) and sampled rationales (24 new tokens,
4 per question, as the loop samples them) both ways, and says how often the greedy answers and
rationales agree exactly (bf16 rounds differently, so some differ). On a CPU with AMX (Sapphire
Rapids and later) bf16 matmuls run on the tile unit; elsewhere bf16 may be slower.
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch

from illume_rm.data import DataConfig, load_examples
from illume_rm.data.shapes import ShapesConfig
from illume_rm.sampling import rationale_prompt
from illume_rm.vlm import load_vlm
from illume_rm.vlm.base import answer_prompt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="builtin")
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    vlm = load_vlm(args.checkpoint)
    # the demo's data (recipes/shapes-critic.yaml)
    data = DataConfig(shapes=ShapesConfig(train=2000, val=200, test=200, questions_per_image=3, image_size=96))
    examples = load_examples(data, "val")[: args.examples]
    vlm.features.get([e.image for e in examples])
    answers = [(e.image, answer_prompt(e), None) for e in examples]
    rationales = [(e.image, rationale_prompt(e, e.answer), None) for e in examples]

    def run(precision: str) -> dict:
        out = {}
        vlm.set_precision(precision)  # what model.precision sets: generation under bf16 autocast, or fp32
        with contextlib.nullcontext():
            vlm.generate(answers[:4], max_new_tokens=6)  # one-time costs (kernels) outside the timing
            t = time.perf_counter()
            for _ in range(args.repeats):
                out["answers"] = [r[0] for r in vlm.generate(answers, max_new_tokens=6)]
            out["answer_s"] = (time.perf_counter() - t) / args.repeats
            t = time.perf_counter()
            for _ in range(args.repeats):
                out["greedy"] = [r[0] for r in vlm.generate(rationales, max_new_tokens=24)]
            out["greedy_s"] = (time.perf_counter() - t) / args.repeats
            torch.manual_seed(0)
            t = time.perf_counter()
            for b in range(0, len(rationales), 16):
                vlm.generate(rationales[b:b + 16], max_new_tokens=24, do_sample=True, temperature=0.9, top_k=50,
                             num_return_sequences=4)
            out["sample_s"] = time.perf_counter() - t
            t = time.perf_counter()
            for b in range(0, len(rationales), 16):  # the loop's sampler: one prompt read, 2 temperatures x 2
                vlm.sample_groups(rationales[b:b + 16], [0.3, 0.9], 2, max_new_tokens=24, top_k=50, seed=b)
            out["groups_s"] = time.perf_counter() - t
        return out

    fp32, bf16 = run("fp32"), run("bf16")
    n = len(examples)
    print(f"model {args.checkpoint}; {n} val questions; torch threads {torch.get_num_threads()}")
    print("| work | fp32 | bf16 autocast | speed-up |\n|---|---|---|---|")
    for key, what, count in (("answer_s", "greedy answers (6 tokens), questions/s", n),
                             ("greedy_s", "greedy rationales (24 tokens), rationales/s", n),
                             ("sample_s", "sampled rationales (24 tokens, 4 each), rationales/s", 4 * n),
                             ("groups_s", "the loop's sampler (sample_groups: 2 temperatures x 2), rationales/s", 4 * n)):
        a, b = count / fp32[key], count / bf16[key]
        print(f"| {what} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
    same_a = sum(x == y for x, y in zip(fp32["answers"], bf16["answers"])) / n
    same_r = sum(x == y for x, y in zip(fp32["greedy"], bf16["greedy"])) / n
    print(f"identical greedy answers {same_a:.3f}, identical greedy rationales {same_r:.3f}")


if __name__ == "__main__":
    main()
