"""Candidates scored per second by the reward model: batched against one at a time, in one run.

    .venv/bin/python benchmarks/reward_speed.py [--candidates 256]

Uses an untrained cross-encoder on all-MiniLM-L6-v2 (speed does not depend on training) over
shapes questions with their reference explanations as candidates.
"""
from __future__ import annotations

import argparse
import time

import torch

from illume_rm.data.shapes import ShapesConfig, generate
from illume_rm.records import Candidate
from illume_rm.reward.models import CrossEncoderReward, RewardConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    examples = generate(ShapesConfig(train=args.candidates // 9 + 1), "train", None)
    by_id = {ex.id: ex for ex in examples}
    cands = [Candidate(id=f"{ex.id}#{k}", example_id=ex.id, answer=ex.answer, rationale=r)
             for ex in examples for k, r in enumerate(ex.explanations)][: args.candidates]
    model = CrossEncoderReward.new(RewardConfig())
    model.predict(by_id, cands[:8])  # one-time costs count for neither side
    t0 = time.perf_counter()
    batched = model.predict(by_id, cands, batch_size=args.batch_size)
    t_b = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [model.predict(by_id, [c], batch_size=1)[0] for c in cands]
    t_s = time.perf_counter() - t0
    assert max(abs(a - b) for a, b in zip(batched, single)) < 1e-4  # same scores either way
    print(f"{len(cands)} candidates, torch threads {torch.get_num_threads()}")
    print("| scoring | seconds | candidates/s |\n|---|---|---|")
    print(f"| one at a time | {t_s:.2f} | {len(cands) / t_s:.1f} |")
    print(f"| batched ({args.batch_size}) | {t_b:.2f} | {len(cands) / t_b:.1f} |")
    print(f"speed-up: {t_s / t_b:.1f}x")


if __name__ == "__main__":
    main()
