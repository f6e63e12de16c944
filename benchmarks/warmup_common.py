"""What the warm-up benchmarks share: the demo's built-in VLM on its shapes data, and one timed step."""
from __future__ import annotations

import statistics
import time
from typing import Sequence

import torch

from illume_rm.checkpoints import base_vlm
from illume_rm.config import load_recipe
from illume_rm.data import load_examples
from illume_rm.train.steps import autocast
from illume_rm.train.warmup import warmup_items


def demo_vlm(n_train: int | None = None, balance: bool = False):
    """(recipe, VLM, (answer-only, caption, grounding) items) of the demo warm-up recipe: the real
    built-in VLM (shipped weights) on the first ``n_train`` training questions, features cached first."""
    recipe = load_recipe("recipes/shapes-warmup.yaml")
    train = load_examples(recipe.data, "train")[:n_train]
    vlm = base_vlm(recipe)
    vlm.features.get([e.image for e in train if e.image])
    return recipe, vlm, warmup_items(train, balance)


def timed_step(vlm, opt: torch.optim.Optimizer, batch: Sequence, precision: str, micro_batch: int = 0) -> float:
    """Seconds of one training step (loss under the precision, backward, optimizer step) on ``batch``;
    with ``micro_batch``, its rows that many at a time (``train.steps._accumulate``, as training does)."""
    from illume_rm.distributed import processes
    from illume_rm.train.steps import _accumulate

    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    if micro_batch:
        _accumulate(vlm, processes(), batch, None, None, micro_batch, precision)
    else:
        with autocast(vlm, precision):
            loss = vlm.loss(batch)
        loss.backward()
    opt.step()
    return time.perf_counter() - t0


def standard_error(values: Sequence[float]) -> float:
    """The standard error of the mean (nan from fewer than two values)."""
    return statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
