"""Training steps with freed memory kept in the process (``memory.keep_freed_memory``, what every
``illume-rm`` command does) vs glibc's defaults, in one run.

    .venv/bin/python benchmarks/malloc.py [--steps 6] [--rounds 2]

Each setting runs in its own process (the setting is process-wide), the two alternating for
``--rounds`` rounds; each process trains the real built-in VLM with LoRA as the demo warm-up does, on
the demo's shapes data, ``--steps`` timed steps of each kind after one untimed step: caption,
answer-only and grounding steps under the warm-up recipe's precision (``auto``: bf16 where native),
then each kind in fp32 (as a CPU without native bfloat16 trains the warm-up; the loop's fine-tuning
takes answer-only questions in fp32). Every process draws
the same batches from the same seed, so the two settings' losses must be identical; the table gives
each kind's seconds a step (mean ± standard error over its steps and rounds), the ratio, and each
setting's peak resident memory.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys

KINDS = ("caption", "question", "grounding", "caption-fp32", "question-fp32", "grounding-fp32")


def child(steps: int) -> None:
    import torch

    from illume_rm.memory import keep_freed_memory
    from illume_rm.train.lora import add_lora
    from illume_rm.vlm.base import resolve_precision
    from warmup_common import demo_vlm, timed_step

    kept = keep_freed_memory()
    recipe, vlm, (answers, captions, grounded) = demo_vlm()
    pools = {"caption": captions, "question": answers, "grounding": grounded}
    model = add_lora(vlm, recipe.warmup.lora)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    warm = resolve_precision(recipe.warmup.precision, vlm.device)
    rng = random.Random(0)
    torch.manual_seed(0)
    out = {"kept": kept, "seconds": {}, "losses": {}}
    for kind in KINDS:
        precision = "fp32" if kind.endswith("fp32") else warm
        times, losses = [], []
        for _ in range(steps + 1):
            batch = rng.sample(pools[kind.removesuffix("-fp32")], 16)
            times.append(timed_step(vlm, opt, batch, precision))
            losses.append(float(vlm.loss(batch).detach()))  # after the step: the same weights in both settings
        out["seconds"][kind], out["losses"][kind] = times[1:], losses
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def run(setting: str, steps: int) -> dict:
    env = dict(os.environ, ILLUME_RM_MALLOC="system" if setting == "system" else "")
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, __file__, "--child", "--steps", str(steps)], env=env,
                          capture_output=True, text=True, check=True)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main() -> None:
    from warmup_common import standard_error

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.steps)
    results: dict[str, list[dict]] = {"system": [], "kept": []}
    for r in range(args.rounds):
        for setting in ("system", "kept") if r % 2 == 0 else ("kept", "system"):
            results[setting].append(run(setting, args.steps))
            print(f"round {r + 1}: {setting} done", file=sys.stderr, flush=True)
    assert all(x["kept"] for x in results["kept"]) and not any(x["kept"] for x in results["system"])
    same = all(a["losses"] == b["losses"] for a in results["kept"] for b in results["system"])

    def stats(setting: str, kind: str) -> tuple[float, float]:
        xs = [t for res in results[setting] for t in res["seconds"][kind]]
        return statistics.mean(xs), standard_error(xs)

    print(f"{args.rounds} rounds x {args.steps} timed steps of 16 per kind and setting; identical losses: {same}")
    print("| step | glibc defaults, s | kept, s | speed-up |\n|---|---|---|---|")
    for kind in KINDS:
        (a, sa), (b, sb) = stats("system", kind), stats("kept", kind)
        print(f"| {kind} | {a:.2f} ± {sa:.2f} | {b:.2f} ± {sb:.2f} | **{a / b:.2f}x** |")
    rss = {s: max(x["peak_rss_mb"] for x in results[s]) for s in results}
    print(f"peak resident memory: {rss['system']:.0f} MB (defaults) vs {rss['kept']:.0f} MB (kept)")


if __name__ == "__main__":
    main()
