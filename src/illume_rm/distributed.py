"""Several processes on one engine (accelerate, or torchrun), or one process.

``accelerate launch -m illume_rm.cli ...`` (or ``torchrun``) starts N copies of a command; each
finds its place here (rank, world size) through accelerate's ``PartialState`` (gloo on CPUs, NCCL on
GPUs). Every process runs the same command on the same data; the heavy parts share out work:

- ``map``: sampling and evaluation batches, round-robin over processes, the results gathered back in
  the order of the batches (so the records are the ones one process writes);
- ``average_gradients``: data-parallel training (each process takes its share of every batch; the
  gradients are averaged before the optimiser steps, as DDP does), so every process holds the
  same weights after each step; under an FSDP config the language model's layers are sharded while
  they train (``train.fsdp``), under a DeepSpeed one the optimiser is ZeRO's (``train.zero``);
- ``run`` / ``serve``: the main process runs the command and hands these stages to every process
  (``illume_rm.tasks``); the others only serve them, so only the main process writes files.

With one process (no ``WORLD_SIZE`` > 1 in the environment) every method is the plain,
single-process thing and torch.distributed is never touched.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Processes:
    def __init__(self, rank: int = 0, world: int = 1, device: str | None = None):
        self.rank, self.world, self.device = rank, world, device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def map(self, fn: Callable[[T], R], keys: Sequence[T]) -> list[R]:
        """``[fn(k) for k in keys]``, each process computing every ``world``-th key; every process
        gets the whole list back, in the order of ``keys``."""
        if not self.distributed:
            return [fn(k) for k in keys]
        import torch.distributed as dist

        mine = {i: fn(keys[i]) for i in range(self.rank, len(keys), self.world)}
        parts: list[dict | None] = [None] * self.world
        dist.all_gather_object(parts, mine)
        merged: dict[int, R] = {}
        for part in parts:
            merged.update(part)
        return [merged[i] for i in range(len(keys))]

    @property
    def fsdp(self):
        """The FSDP settings of accelerate's config (``train.fsdp``), or None: with one process, or
        without FSDP. Refuses (``UserError``) options that are not honoured."""
        if not self.distributed:
            return None
        from .train.fsdp import fsdp_settings

        return fsdp_settings()

    @property
    def deepspeed(self):
        """The DeepSpeed ZeRO settings of accelerate's config (``train.zero``), or None. Refuses
        (``UserError``) options that are not honoured."""
        if not self.distributed:
            return None
        from .train.zero import zero_settings

        return zero_settings()

    def most_per_process(self, n: int) -> int:
        """The largest share of ``n`` items any process takes (``shard``)."""
        return -(-n // self.world)

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's share of a batch: every ``world``-th item."""
        return list(items[self.rank::self.world]) if self.distributed else list(items)

    def advance(self, bar, n: int) -> None:
        """Move the main process's progress bar by ``n`` (this process's batch) times the number of
        processes (theirs, about as large), never past its total."""
        bar.update(min(n * self.world, bar.total - bar.n))

    def sum(self, value: float) -> float:
        if not self.distributed:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())

    def average_gradients(self, params: Sequence) -> None:
        """The mean of every process's gradients, in place (one flat all-reduce; a missing gradient
        counts as zeros)."""
        if not self.distributed or not params:
            return
        import torch
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
            offset += n

    # -- the main process hands out work; the others serve it ----------------------------
    def run(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` on every process (the main one calls this; the others are in ``serve``).
        ``fn`` is a module-level function and its arguments picklable."""
        if self.distributed:
            if not self.is_main:
                raise RuntimeError("Processes.run is the main process's; the others serve()")
            self._broadcast(("run", fn, args))
        return fn(*args)

    def serve(self) -> None:
        """A process other than the main one: run what the main process hands out until it stops.
        A refusal (``UserError``) inside a stage is raised by every process at the same point (they
        run the same code on the same data): the main one reports it and stops the others, which wait
        for that here rather than leave it alone in a collective."""
        from .errors import UserError

        while True:
            message = self._broadcast(None)
            if message[0] == "stop":
                return
            _, fn, args = message
            try:
                fn(*args)
            except UserError:
                continue

    def stop(self) -> None:
        """The main process is done: the others return from ``serve``."""
        if self.distributed and self.is_main:
            self._broadcast(("stop",))

    def close(self, orderly: bool = True) -> None:
        """Tear the process group down before the interpreter exits: every process, after the last
        message (``orderly``: a barrier first, so none leaves while another is still in a
        collective). Left to interpreter finalisation, gloo's worker threads can outlive Python and
        abort the process (SIGABRT, "terminate called without an active exception") after all its
        work was written (pytorch/pytorch#190489)."""
        if not self.distributed:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            return
        if orderly:
            dist.barrier()
        dist.destroy_process_group()

    def _broadcast(self, message: Any) -> Any:
        import torch.distributed as dist

        box = [message]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, value)
        return parts


_PROCESSES: Processes | None = None


def processes() -> Processes:
    """This process's place (set up on first use, from the launcher's environment)."""
    global _PROCESSES
    if _PROCESSES is None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState

            import torch

            state = PartialState(cpu=not torch.cuda.is_available())
            _PROCESSES = Processes(state.process_index, state.num_processes, str(state.device))
        else:
            _PROCESSES = Processes()
    return _PROCESSES
