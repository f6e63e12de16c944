"""Rationales per second, three ways on the same model, prompts, temperatures, top-k and length, in
one run: the sampler (`VLM.sample_groups`: the built-in VLM reads each prompt once and decodes every
temperature's samples together from its KV cache), one `generate` call per temperature (the
sampler before: the prompt read once per sample), and a naive loop of one `generate` call per sequence.

    .venv/bin/python benchmarks/sampling_speed.py [--checkpoint DIR] [--examples 16]

Prints both rates and their ratio. The model is the built-in VLM (shipped weights) unless
--checkpoint names another; the numbers are about the sampler, not about answer quality.
"""
from __future__ import annotations

import argparse
import time

import torch

from illume_rm.data import DataConfig, load_examples
from illume_rm.data.shapes import ShapesConfig
from illume_rm.sampling import SamplingConfig, rationale_prompt, sample_candidates
from illume_rm.vlm import load_vlm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="builtin")
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--k", type=int, default=2, help="samples per temperature")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    args = ap.parse_args()
    torch.manual_seed(0)
    vlm = load_vlm(args.checkpoint)
    examples = load_examples(DataConfig(shapes=ShapesConfig(train=max(1, args.examples // 3 + 1), val=1, test=1)),
                             "train")[: args.examples]
    vlm.features.get([e.image for e in examples]) if hasattr(vlm, "features") else None
    cfg = SamplingConfig(samples_per_temperature=args.k, max_new_tokens=args.max_new_tokens,
                         batch_size=len(examples))
    # warm-up call so one-time costs count for neither side
    sample_candidates(vlm, examples[:2], cfg, progress=False)

    items = [(e.image, rationale_prompt(e, e.answer), None) for e in examples]
    t0 = time.perf_counter()
    groups = vlm.sample_groups(items, cfg.temperatures, cfg.samples_per_temperature,
                               max_new_tokens=cfg.max_new_tokens, top_k=cfg.top_k, seed=0)
    shared = sum(len(row) for g in groups for row in g)
    t_shared = time.perf_counter() - t0

    t0 = time.perf_counter()
    batched = 0
    for temp in cfg.temperatures:  # same work as sample_candidates, counted before de-duplication
        rows = vlm.generate([(e.image, rationale_prompt(e, e.answer), None) for e in examples],
                            max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=temp,
                            top_k=cfg.top_k, num_return_sequences=cfg.samples_per_temperature)
        batched += sum(len(r) for r in rows)
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    naive = 0
    for e in examples:
        for temp in cfg.temperatures:
            for _ in range(cfg.samples_per_temperature):
                vlm.generate([(e.image, rationale_prompt(e, e.answer), None)], max_new_tokens=cfg.max_new_tokens,
                             do_sample=True, temperature=temp, top_k=cfg.top_k)
                naive += 1
    t_naive = time.perf_counter() - t0

    rs, rb, rn = shared / t_shared, batched / t_batched, naive / t_naive
    print(f"model: {args.checkpoint}; {len(examples)} examples x {len(cfg.temperatures)} temperatures x "
          f"{cfg.samples_per_temperature} samples, up to {cfg.max_new_tokens} new tokens, torch threads "
          f"{torch.get_num_threads()}")
    print("| sampler | rationales | seconds | rationales/s |\n|---|---|---|---|")
    print(f"| naive (one generate call per sequence) | {naive} | {t_naive:.1f} | {rn:.2f} |")
    print(f"| one generate call per temperature | {batched} | {t_batched:.1f} | {rb:.2f} |")
    print(f"| the sampler (illume-rm sample: one prompt read, all samples decoded together) | {shared} | "
          f"{t_shared:.1f} | {rs:.2f} |")
    print(f"speed-up: {rs / rb:.2f}x over one call per temperature, {rs / rn:.1f}x over the naive loop")


if __name__ == "__main__":
    main()
