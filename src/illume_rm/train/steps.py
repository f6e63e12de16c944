"""The one training loop, for warm-up and fine-tuning alike.

A step draws a batch (items with per-item weights), computes the VLM's loss under the recipe's
precision (plus any extra term, e.g. the warm-up's per-cell loss), clips the gradient and steps
AdamW; the learning rate follows one of transformers' schedules. A loop of our own rather than the
Trainer: items carry per-item weights and cached image features, and batches mix pools (captions,
grounding questions, answers, rationales) step by step.
"""
from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch
from tqdm.auto import tqdm

from ..vlm.base import VLM, Item

# a step's batch: items, and their loss weights (None: all 1)
Draw = Callable[[int], tuple[Sequence[Item], Sequence[float] | None]]


def autocast(vlm: VLM, precision: str):
    """bfloat16 autocast on the VLM's device for ``precision == "bf16"``; a no-op for "fp32"."""
    return torch.autocast(vlm.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def scheduler(opt: torch.optim.Optimizer, kind: Literal["cosine", "constant"], steps: int, warmup_steps: int,
              min_lr_rate: float = 0.05):
    """transformers' schedules: linear warm-up, then cosine down to ``min_lr_rate`` of the peak, or constant."""
    from transformers import get_constant_schedule_with_warmup, get_cosine_with_min_lr_schedule_with_warmup

    if kind == "cosine":
        return get_cosine_with_min_lr_schedule_with_warmup(opt, warmup_steps, steps, min_lr_rate=min_lr_rate)
    if kind == "constant":
        return get_constant_schedule_with_warmup(opt, warmup_steps)
    raise ValueError(f"unknown schedule {kind!r}")


def train_steps(vlm: VLM, groups: list[dict], steps: int, draw: Draw, *, schedule: Literal["cosine", "constant"],
                warmup_steps: int, precision: str = "fp32", desc: str = "training",
                extra_loss: Callable[[Sequence[Item]], torch.Tensor | None] | None = None,
                on_eval: Callable[[int], None] | None = None, eval_every: int | None = None,
                max_grad_norm: float = 1.0) -> list[float]:
    """Train the parameters in ``groups`` (AdamW param groups, each with its ``lr``) for ``steps`` steps;
    returns the loss curve. ``on_eval(step)`` runs every ``eval_every`` steps (model in eval mode)."""
    model = vlm.trainable_model()
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    sched = scheduler(opt, schedule, steps, warmup_steps)
    params = [p for g in opt.param_groups for p in g["params"]]
    losses: list[float] = []
    model.train()
    bar = tqdm(range(steps), desc=desc)
    for step in bar:
        items, weights = draw(step)
        with autocast(vlm, precision):
            loss = vlm.loss(items, weights)
            extra = extra_loss(items) if extra_loss else None
            if extra is not None:
                loss = loss + extra
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
        if on_eval and eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            model.eval()
            on_eval(step + 1)
            model.train()
    model.eval()
    return losses
