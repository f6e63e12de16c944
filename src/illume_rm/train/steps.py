"""The one training loop, for warm-up and fine-tuning alike.

A step draws a batch (items with per-item weights), computes the VLM's loss under the recipe's
precision (plus any extra term, e.g. the warm-up's per-cell loss), clips the gradient and steps
AdamW; the learning rate follows ``scheduler``. A loop of our own rather than the
Trainer: items carry per-item weights and cached image features, and batches mix pools (captions,
grounding questions, answers, rationales) step by step.
"""
from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch
from tqdm.auto import tqdm

from ..vlm.base import VLM, Item, bf16_native, resolve_precision

# a step's batch: items, and their loss weights (None: all 1)
Draw = Callable[[int], tuple[Sequence[Item], Sequence[float] | None]]


def autocast(vlm: VLM, precision: str):
    """bfloat16 autocast on the VLM's device for ``precision == "bf16"``; a no-op for "fp32"."""
    return torch.autocast(vlm.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def scheduler(opt: torch.optim.Optimizer, kind: Literal["cosine", "constant"], steps: int, warmup_steps: int,
              min_lr_rate: float = 0.05) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate at each step, as a share of each group's: a linear ramp over ``warmup_steps``
    that reaches 1/warmup_steps on the first step (not 0: no step is wasted), times a cosine over all
    the steps (``cosine``) or 1 (``constant``), never below ``min_lr_rate``.

    Not transformers' ``get_cosine_with_min_lr_schedule_with_warmup``: in a matched run (demo warm-up
    recipe, seed 0) it gave "What is in <cell>?" on occupied cells 0.617 against 0.871 with this one,
    and "Where is <object>?" 0.638 against 0.683 (exist rose, 0.724 against 0.604); one seed each, so
    it may be the seed's luck, but the checkpoints the README reports were trained with this one."""
    import math

    if kind not in ("cosine", "constant"):
        raise ValueError(f"unknown schedule {kind!r}")

    def share(step: int) -> float:
        scale = min(1.0, (step + 1) / max(1, warmup_steps))
        if kind == "cosine":
            scale *= 0.5 * (1 + math.cos(math.pi * step / steps))
            return max(scale, min_lr_rate)
        return scale

    return torch.optim.lr_scheduler.LambdaLR(opt, share)


def train_steps(vlm: VLM, groups: list[dict], steps: int, draw: Draw, *, schedule: Literal["cosine", "constant"],
                warmup_steps: int, precision: str = "fp32", desc: str = "training",
                extra_loss: Callable[[Sequence[Item]], tuple[torch.Tensor, int] | None] | None = None,
                on_eval: Callable[[int], None] | None = None, eval_every: int | None = None,
                max_grad_norm: float = 1.0, micro_batch: int = 0) -> list[float]:
    """Train the parameters in ``groups`` (AdamW param groups, each with its ``lr``) for ``steps`` steps;
    returns the loss curve. ``on_eval(step)`` runs every ``eval_every`` steps (model in eval mode).
    ``extra_loss(items)`` gives a term added to the loss: (its mean, over how many units), or None.

    With several processes (``distributed.processes``) every process draws the same batch and takes
    its share; each share's loss is scaled by its part of the batch's weight, so the averaged
    gradients are the whole batch's (as one process computes them, up to rounding), and every
    process steps to the same weights. Under accelerate's FSDP config the language model's layers
    are sharded while they train (``train.fsdp``); under its DeepSpeed config (ZeRO 1 or 2) the
    optimiser is DeepSpeed's engine (``train.zero``); either way every process runs the same graph.

    ``micro_batch`` > 0 runs a process's items that many at a time, each part's forward and backward
    before the next (gradient accumulation), its loss scaled by its part of the batch's weight, and
    the extra term once over all of them: the same gradient up to rounding, with the activations of
    ``micro_batch`` rows held at once instead of the whole batch's. 0: the whole batch in one pass."""
    from ..distributed import processes

    if micro_batch < 0:
        raise ValueError(f"micro_batch must be 0 (the whole batch) or more, got {micro_batch}")
    procs = processes()
    precision = resolve_precision(precision, vlm.device)
    if precision == "bf16" and not bf16_native(vlm.device) and procs.is_main:
        tqdm.write(f"{desc}: bf16 asked for, but this {vlm.device.type} has no native bfloat16 (a CPU needs "
                   "AVX512-BF16 or AMX): emulated, it is many times slower than fp32; precision: auto picks "
                   "fp32 here")
    zero = procs.deepspeed
    if zero is not None and micro_batch:
        from ..errors import UserError

        raise UserError(f"{desc}: micro_batch {micro_batch} under DeepSpeed ZeRO: set warmup.micro_batch / "
                        "finetune.micro_batch to 0 (its engine takes one backward a step)")
    model = vlm.trainable_model()
    settings = procs.fsdp
    sharded = None
    if settings is not None:  # the layers sharded while they train (train.fsdp)
        from .fsdp import ShardedLayers

        sharded = ShardedLayers(model, settings)
        groups = sharded.groups(groups)
        if procs.is_main:
            tqdm.write(f"{desc}: {sharded.describe()}")
    # FSDP's all-gathers and ZeRO's gradient buckets need every process to run the same graph: the
    # same layers as often, the same parameters reached
    lockstep = sharded is not None or zero is not None
    share_images = getattr(vlm, "share_images", None)
    if lockstep and share_images:
        vlm.share_images = False  # the shared-image prefill depends on a process's own share: rows read whole
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    sched = scheduler(opt, schedule, steps, warmup_steps)
    params = [p for g in opt.param_groups for p in g["params"]]
    whole = [p for p in params if not _is_sharded(p)]
    engine = None
    if zero is not None:  # DeepSpeed ZeRO keeps, reduces, clips and steps (train.zero)
        from .zero import engine as zero_engine

        engine = zero_engine(model, opt, zero, max_grad_norm)  # the schedule keeps acting on opt's groups
        if procs.is_main:
            tqdm.write(f"{desc}: DeepSpeed ZeRO stage {zero.stage} over {procs.world} processes")
    losses: list[float] = []
    model.train()
    bar = tqdm(range(steps), desc=desc)
    try:
        for step in bar:
            items, weights = draw(step)
            if engine is None:
                opt.zero_grad(set_to_none=True)
            if micro_batch and procs.most_per_process(len(items)) > micro_batch:
                loss = _accumulate(vlm, procs, items, weights, extra_loss, micro_batch, precision, lockstep)
            else:
                with autocast(vlm, precision):
                    if procs.distributed:
                        loss = _shard_loss(vlm, procs, items, weights, extra_loss, whole, lockstep)
                    else:
                        loss = vlm.loss(items, weights)
                        extra = extra_loss(items) if extra_loss else None
                        if extra is not None:
                            loss = loss + extra[0]
                if engine is None:
                    loss.backward()
            if engine is not None:
                engine.backward(loss)  # reduced (the mean over the processes) into each one's partition
                engine.step()  # clipped, stepped, the weights all-gathered
            elif sharded is not None:
                from .fsdp import clip_grad_norm_

                procs.average_gradients(whole)  # the sharded layers' were reduce-scattered in backward
                clip_grad_norm_(params, max_grad_norm)
            else:
                procs.average_gradients(params)
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            if engine is None:
                opt.step()
            sched.step()
            losses.append(procs.sum(loss.item()) / procs.world)
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
            if on_eval and eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
                model.eval()
                if sharded is not None:
                    with sharded.gathered():
                        on_eval(step + 1)
                else:
                    on_eval(step + 1)
                model.train()
    finally:
        if share_images is not None:
            vlm.share_images = share_images
    if sharded is not None:
        sharded.close()  # every process: the whole trained model again
    if engine is not None:
        engine.destroy()  # its gradient hooks off the model's parameters
    model.eval()
    return losses


def _is_sharded(p: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(p, DTensor)


def _shard_loss(vlm: VLM, procs, items, weights, extra_loss, whole, lockstep: bool = False) -> torch.Tensor:
    """This process's part of the batch loss: its share's loss, scaled so that the mean over the
    processes is the whole batch's loss (per-item weights and the extra term's units counted).
    ``lockstep`` (FSDP, ZeRO): a process with an empty share still runs the model once (the batch's
    first item, at weight 0), since every process must run each sharded layer as often and reach
    the same parameters."""
    w_all = list(weights) if weights is not None else [1.0] * len(items)
    shard, w_shard = procs.shard(items), procs.shard(w_all)
    # a zero that keeps the graph when the share is empty (``whole``: the parameters FSDP does not shard)
    loss = sum(p.sum() * 0.0 for p in whole[:1])
    if shard:
        loss = loss + vlm.loss(shard, w_shard) * (sum(w_shard) * procs.world / sum(w_all))
    elif lockstep and items:
        loss = loss + vlm.loss(list(items[:1])) * 0.0
    if extra_loss:
        extra = extra_loss(shard) if shard else None
        n = extra[1] if extra is not None else 0
        total = procs.sum(n)
        if extra is not None and n:
            loss = loss + extra[0] * (n * procs.world / total)
    return loss


def _accumulate(vlm: VLM, procs, items, weights, extra_loss, micro_batch: int, precision: str,
                lockstep: bool = False) -> torch.Tensor:
    """``_shard_loss``'s loss (or the whole batch's, in one process), its gradient accumulated part by
    part: each ``micro_batch`` items' loss scaled by their part of the batch's weight, backward before
    the next part's forward; then the extra term over the process's items, once. Returns the loss
    (detached). ``lockstep`` (FSDP): every process runs as many parts as the process with the most
    (a missing part: the batch's first item, at weight 0)."""
    w_all = list(weights) if weights is not None else [1.0] * len(items)
    shard, w_shard = procs.shard(items), procs.shard(w_all)
    total = torch.zeros((), device=vlm.device)
    parts = -(-procs.most_per_process(len(items)) // micro_batch) if lockstep else -(-len(shard) // micro_batch)
    for k in range(parts):
        part, w_part = shard[k * micro_batch:(k + 1) * micro_batch], w_shard[k * micro_batch:(k + 1) * micro_batch]
        with autocast(vlm, precision):
            if part:
                loss = vlm.loss(part, w_part) * (sum(w_part) * procs.world / sum(w_all))
            else:
                loss = vlm.loss(list(items[:1])) * 0.0
        loss.backward()
        total += loss.detach()
    if extra_loss:
        with autocast(vlm, precision):
            extra = extra_loss(shard) if shard else None
        n = extra[1] if extra is not None else 0
        units = procs.sum(n)
        if extra is not None and n:
            term = extra[0] * (n * procs.world / units)
            term.backward()
            total += term.detach()
    return total
