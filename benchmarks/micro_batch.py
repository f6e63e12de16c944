"""Training steps in micro-batches (``warmup.micro_batch`` / ``finetune.micro_batch``) against the
whole batch at once, in one run: peak memory and seconds a step.

    .venv/bin/python benchmarks/micro_batch.py [--micro 0 8 4] [--steps 4] [--rounds 2]

Each (setting, kind of step) runs in its own process, so its peak resident memory is its own; the
settings alternate in order from round to round. A process trains the real built-in VLM with LoRA on
the demo's shapes data, batches of 16: ``question-fp32`` is the loop's fine-tuning step (answer-only
questions, fp32: the demo's largest memory), ``caption`` the warm-up's longest rows under the warm-up
recipe's precision (``auto``: bf16 where native). One untimed step, then ``--steps`` timed ones, each
drawing the same batches from the same seed in every setting; after each step the loss on its batch
is recorded, and the table gives the largest relative difference from the whole batch's (rounding
only: the gradient is the same sum, in parts).
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import os

KINDS = ("question-fp32", "caption")


def child(kind: str, micro: int, steps: int) -> None:
    import torch

    from illume_rm.memory import keep_freed_memory
    from illume_rm.train.lora import add_lora
    from illume_rm.vlm.base import resolve_precision
    from warmup_common import demo_vlm, timed_step

    keep_freed_memory()  # as every illume-rm command does
    recipe, vlm, (answers, captions, _) = demo_vlm()
    pool = captions if kind == "caption" else answers
    precision = "fp32" if kind.endswith("fp32") else resolve_precision(recipe.warmup.precision, vlm.device)
    torch.manual_seed(0)
    model = add_lora(vlm, recipe.warmup.lora)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    rng = random.Random(0)
    times, losses = [], []
    model.train()
    for _ in range(steps + 1):
        batch = rng.sample(pool, 16)
        times.append(timed_step(vlm, opt, batch, precision, micro))
        with torch.no_grad():
            losses.append(float(vlm.loss(batch)))
    out = {"seconds": times[1:], "losses": losses,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print("RESULT " + json.dumps(out))


def run(kind: str, micro: int, steps: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.abspath(__file__)) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--micro", str(micro), "--steps", str(steps)],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{kind} at micro_batch {micro} failed:\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main() -> None:
    from warmup_common import standard_error

    ap = argparse.ArgumentParser()
    ap.add_argument("--micro", type=int, nargs="+", default=[0, 8, 4])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.micro[0], args.steps)
    base = args.micro[0]
    results: dict[tuple[str, int], list[dict]] = {(k, m): [] for k in KINDS for m in args.micro}
    for r in range(args.rounds):
        order = args.micro if r % 2 == 0 else args.micro[::-1]
        for kind in KINDS:
            for micro in order:
                results[kind, micro].append(run(kind, micro, args.steps))
                print(f"round {r + 1}: {kind}, micro_batch {micro} done", file=sys.stderr, flush=True)
    print(f"{args.rounds} rounds x {args.steps} timed steps of 16 rows per kind and setting (each in its own "
          f"process); against micro_batch {base}")
    print("| step | micro_batch | s a step | speed vs whole | peak memory, MB | memory vs whole | "
          "largest loss difference |\n|---|---|---|---|---|---|---|")
    for kind in KINDS:
        ref_t = statistics.mean(t for res in results[kind, base] for t in res["seconds"])
        ref_m = max(res["peak_rss_mb"] for res in results[kind, base])
        ref_l = results[kind, base][0]["losses"]
        for micro in args.micro:
            xs = [t for res in results[kind, micro] for t in res["seconds"]]
            mem = max(res["peak_rss_mb"] for res in results[kind, micro])
            diff = max(abs(a - b) / abs(b) for res in results[kind, micro] for a, b in zip(res["losses"], ref_l))
            print(f"| {kind} | {micro or 'whole'} | {statistics.mean(xs):.2f} ± {standard_error(xs):.2f} | "
                  f"{ref_t / statistics.mean(xs):.2f}x | {mem:.0f} | {mem / ref_m:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
