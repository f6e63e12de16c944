"""Training steps under FSDP (the language model's layers sharded, ``train.fsdp``) and DeepSpeed ZeRO-2
(optimiser state and gradients partitioned, ``train.zero``) against DDP (every process the whole
model), two processes each, in one run: seconds a step, each process's memory, and how far the
losses part.

    .venv/bin/python benchmarks/fsdp_steps.py [--train lora full] [--steps 4] [--rounds 1]

A launch is two processes on this machine (gloo, one thread each, as ``accelerate launch --config_file
recipes/accelerate/cpus.yaml`` / ``fsdp.yaml`` / ``deepspeed-zero2.yaml --num_processes 2`` start them) running
``train.steps.train_steps`` on the real built-in VLM (shipped weights) over the demo's answer-only
questions, fp32, batches of 16 drawn from the same seed in both settings. ``lora``: the warm-up's
LoRA adapters train (what illume-rm trains); ``full``: every language-model weight trains (AdamW keeps
two more copies of each, which FSDP and ZeRO-2 partition). One untimed step, then ``--steps`` timed ones (the time
between the draws of consecutive batches). Memory, the larger of the two processes': the weights,
gradients and optimiser state it holds between steps (a sharded tensor counts its slice: what FSDP
and ZeRO divide; ZeRO's fp32 partitions of the weights count as optimiser state), and its peak resident set, which also counts activations, the whole model each process
loads before the layers are sharded and gathers back after, the all-gathers' buffers, and freed
memory the process keeps for reuse (``memory.keep_freed_memory``, as every illume-rm command does).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import time
from unittest import mock

SETTINGS = ("ddp", "fsdp", "zero2")


def child(train: str, steps: int) -> None:
    import torch

    from illume_rm.distributed import processes
    from illume_rm.memory import keep_freed_memory
    from illume_rm.train.lora import add_lora
    from illume_rm.train.steps import train_steps
    from warmup_common import demo_vlm

    keep_freed_memory()  # as every illume-rm command does
    procs = processes()
    recipe, vlm, (answers, _, _) = demo_vlm()
    torch.manual_seed(0)
    if train == "lora":
        model = add_lora(vlm, recipe.warmup.lora)
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        params = list(vlm.model.language_model.parameters())
        for p in params:
            p.requires_grad_(True)
    rng = random.Random(0)
    stamps: list[float] = []
    held: dict[str, float] = {}
    optimisers: list[torch.optim.Optimizer] = []

    class AdamW(torch.optim.AdamW):  # train_steps's optimiser, seen here for its state's size
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            optimisers.append(self)

    def draw(step: int):
        stamps.append(time.perf_counter())
        if step == steps:  # after steps-1 optimiser steps, the last step's gradients still held
            held.update(_state_mb(vlm.model, optimisers[-1]))
        return rng.sample(answers, 16), None

    with mock.patch.object(torch.optim, "AdamW", AdamW):
        losses = train_steps(vlm, [{"params": params, "lr": 1e-5}], steps + 1, draw, schedule="constant",
                             warmup_steps=1, precision="fp32", desc=f"{train}")
    stamps.append(time.perf_counter())
    seconds = [b - a for a, b in zip(stamps[1:], stamps[2:])]
    peak = procs.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    state = procs.gather(held)
    if procs.is_main:
        print("RESULT " + json.dumps({"seconds": seconds, "losses": losses, "peak_rss_mb": max(peak),
                                      "state_mb": max(s["total"] for s in state), "parts_mb": state[0]}), flush=True)
    procs.close()


def _state_mb(model, opt) -> dict[str, float]:
    """MB this process holds between two steps of the model's weights, gradients and the optimiser's
    state (a sharded tensor counts its local slice; under ZeRO the optimiser's groups hold its flat
    fp32 partitions, counted with its state, and their gradients with the gradients)."""
    from torch.distributed.tensor import DTensor

    def mb(ts) -> float:
        return sum((t.to_local() if isinstance(t, DTensor) else t).nbytes for t in ts) / 2 ** 20

    params = list(model.parameters())
    own = {id(p) for p in params}
    copies = [p for g in opt.param_groups for p in g["params"] if id(p) not in own]
    parts = {"weights": mb(params), "gradients": mb(p.grad for p in params + copies if p.grad is not None),
             "optimiser": mb(copies) + mb(v for st in opt.state.values() for v in st.values() if v.dim() > 0)}
    return {**parts, "total": sum(parts.values())}


def launch(setting: str, train: str, steps: int) -> dict:
    """Two processes, as accelerate launch starts them."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_USE_", "FSDP_"))}
    env["PYTHONPATH"] = os.path.dirname(os.path.abspath(__file__)) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    if setting == "fsdp":
        env.update(ACCELERATE_USE_FSDP="true", FSDP_VERSION="2")
    if setting == "zero2":
        env.update(ACCELERATE_USE_DEEPSPEED="true", ACCELERATE_DEEPSPEED_ZERO_STAGE="2")
    procs = [subprocess.Popen([sys.executable, __file__, "--child", train, "--steps", str(steps)],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate() for p in procs]
    if any(p.returncode for p in procs):
        sys.exit(f"{setting} ({train}) failed:\n" + "".join(e[-3000:] for _, e in outs))
    line = [x for x in outs[0][0].splitlines() if x.startswith("RESULT ")][-1]
    held = [x for x in outs[0][0].splitlines() + outs[0][1].splitlines() if "FSDP shards" in x]
    return {**json.loads(line[len("RESULT "):]), "held": held[-1].split(": ", 1)[1] if held else ""}


def main() -> None:
    from warmup_common import standard_error

    ap = argparse.ArgumentParser()
    ap.add_argument("--train", nargs="+", choices=("lora", "full"), default=["lora", "full"])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--child", choices=("lora", "full"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.steps)
    results: dict[tuple[str, str], list[dict]] = {(t, s): [] for t in args.train for s in SETTINGS}
    for r in range(args.rounds):
        for train in args.train:
            for setting in (SETTINGS if r % 2 == 0 else SETTINGS[::-1]):
                results[train, setting].append(launch(setting, train, args.steps))
                print(f"round {r + 1}: {train}, {setting} done", file=sys.stderr, flush=True)
    print(f"{args.rounds} round(s) x {args.steps} timed steps of 16 questions (fp32), two processes; against DDP")
    print("| trains | setting | s a step | speed vs DDP | weights + gradients + optimiser a process, MB | vs DDP | "
          "peak resident memory a process, MB | vs DDP | largest loss difference |\n|---|---|---|---|---|---|---|---|---|")
    for train in args.train:
        ref = results[train, "ddp"]
        ref_t = statistics.mean(t for res in ref for t in res["seconds"])
        ref_m = max(res["peak_rss_mb"] for res in ref)
        for setting in SETTINGS:
            xs = [t for res in results[train, setting] for t in res["seconds"]]
            mem = max(res["peak_rss_mb"] for res in results[train, setting])
            state = max(res["state_mb"] for res in results[train, setting])
            ref_s = max(res["state_mb"] for res in ref)
            diff = max(abs(a - b) / abs(b) for res in results[train, setting] for a, b in zip(res["losses"], ref[0]["losses"]))
            print(f"| {train} | {setting} | {statistics.mean(xs):.2f} ± {standard_error(xs):.2f} | "
                  f"{ref_t / statistics.mean(xs):.2f}x | {state:.0f} | {state / ref_s:.2f} | {mem:.0f} | {mem / ref_m:.2f} | "
                  f"{diff:.1e} |")
    for train in args.train:
        for setting in SETTINGS:
            res = results[train, setting][0]
            print(f"{train}, {setting}: {res['held'] + '; ' if res['held'] else ''}MB held by process 0: " + ", ".join(
                f"{k} {v:.0f}" for k, v in res["parts_mb"].items() if k != "total"))


if __name__ == "__main__":
    main()
