"""An RL step (TRL's GRPO, issue 15) against an SFT step, on the demo model, in one run.

    .venv/bin/python benchmarks/rl_step.py --checkpoint WARMUP_DIR --adapter SFT_ADAPTER --reward REWARD_DIR

Both train the same adapter on 16 sequences a step: SFT on 16 (image, prompt, target) items, as
fine-tuning does (explained and answer-only mixed); GRPO on 4 questions x 4 sampled rationales
(sampling, the reward model's scoring, the policy's and the reference's log-probabilities, the
backward pass). Steps are timed after one untimed step of each (GRPO: TRL's own step_time); prints
steps/s, sequences/s and the ratio. SFT reads the cached image features; GRPO runs the image encoder
in each forward (TRL passes pixels), which is part of what it costs.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from illume_rm.data import DataConfig, load_examples
from illume_rm.data.shapes import ShapesConfig
from illume_rm.reward import NEEDS_VLM, load_reward, reward_kind
from illume_rm.sampling import SamplingConfig
from illume_rm.train.finetune import FinetuneConfig, finetune
from illume_rm.train.rl import RLConfig, make_trainer, reward_functions, top_level_policy
from illume_rm.vlm import load_vlm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--reward", required=True)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    torch.manual_seed(0)
    # the demo's data (recipes/shapes-warmup.yaml)
    data = DataConfig(shapes=ShapesConfig(train=2000, val=200, test=200, questions_per_image=3, image_size=96))
    train = load_examples(data, "train")[:400]

    # SFT: the fine-tuning loop itself (LoRA, 16 items a step), 1 + steps steps, the first untimed
    vlm = load_vlm(args.checkpoint)
    vlm.features.get([e.image for e in train])
    t0 = time.perf_counter()
    finetune(vlm, train, [], FinetuneConfig(mode="gt-sft", steps=1, batch_size=16, gt_fraction=0.1),
             log=lambda *_: None)
    first = time.perf_counter() - t0
    vlm = load_vlm(args.checkpoint)
    t0 = time.perf_counter()
    finetune(vlm, train, [], FinetuneConfig(mode="gt-sft", steps=1 + args.steps, batch_size=16, gt_fraction=0.1),
             log=lambda *_: None)
    sft_s = (time.perf_counter() - t0 - first) / args.steps  # the setup and first step cancel out

    # GRPO: 4 questions x 4 rationales a step, the reward model scoring each
    vlm = load_vlm(args.checkpoint)
    reader = load_vlm(args.checkpoint) if reward_kind(args.reward) in NEEDS_VLM else None
    scorer = load_reward(args.reward, vlm=reader)
    cfg = RLConfig(algorithm="grpo", steps=1 + args.steps, prompts_per_step=4, num_generations=4)
    funcs, weights = reward_functions(cfg, scorer, {e.id: e for e in train})
    policy = top_level_policy(vlm, Path(args.adapter))
    out = Path("benchmarks") / ".rl_step"
    trainer = make_trainer(vlm, policy, train, funcs, weights, cfg, SamplingConfig(), out, seed=0)
    trainer.args.save_strategy = "no"
    trainer.train()
    times = [h["step_time"] for h in trainer.state.log_history if "step_time" in h]
    grpo_s = sum(times[1:]) / len(times[1:])
    shutil.rmtree(out, ignore_errors=True)
    print(f"SFT step (16 items):            {sft_s:6.2f} s  = {1 / sft_s:.3f} steps/s, {16 / sft_s:.1f} sequences/s")
    print(f"GRPO step (4 x 4 rationales):  {grpo_s:6.2f} s  = {1 / grpo_s:.3f} steps/s, {16 / grpo_s:.1f} rationales/s")
    print(f"GRPO / SFT step time: {grpo_s / sft_s:.1f}x ({args.steps} timed steps each, after one untimed)")


if __name__ == "__main__":
    main()
