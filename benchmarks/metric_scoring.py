"""Scoring a set of rationales with pycocoevalcap (BLEU, METEOR, ROUGE-L, CIDEr): METEOR's process
started for every scoring (as before) against one process kept for the life of the Python process
(`illume_rm.evaluate.nlg`, the default), interleaved in one run, on the same sets.

    .venv/bin/python benchmarks/metric_scoring.py [--sets 6] [--size 150]

The demo scores six sets of 150 (the base model's, each iteration's; unfiltered and filtered). The
scores of both ways are compared too (they must be equal). Needs Java.
"""
from __future__ import annotations

import argparse
import statistics
import time

import illume_rm.evaluate.nlg as nlg
from illume_rm.data.shapes import ShapesConfig, generate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=int, default=6)
    ap.add_argument("--size", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if not nlg.java_available():
        raise SystemExit("needs Java (pycocoevalcap's METEOR and tokenizer)")
    examples = generate(ShapesConfig(train=a.sets * a.size), "train", None)
    sets = []
    for i in range(a.sets):  # a hypothesis scored against the other references of its question
        chunk = examples[i * a.size:(i + 1) * a.size]
        sets.append(({e.id: e.explanations[i % len(e.explanations)] for e in chunk},
                     {e.id: [x for j, x in enumerate(e.explanations) if j != i % len(e.explanations)] for e in chunk}))

    def forget_meteor():  # the next scoring starts its own METEOR process
        if nlg._METEOR is not None:
            nlg._close_meteor(nlg._METEOR)
            nlg._METEOR = None

    def fresh():
        out = []
        for hyps, refs in sets:
            forget_meteor()
            out.append(nlg.nlg_scores(hyps, refs, use_coco=True))
        return out

    def shared():
        return [nlg.nlg_scores(hyps, refs, use_coco=True) for hyps, refs in sets]

    times: dict[str, list[float]] = {"fresh": [], "shared": []}
    results = {}
    for _ in range(a.rounds):
        for name, fn in (("fresh", fresh), ("shared", shared)):
            if name == "shared":  # the shared process starts within the timing
                forget_meteor()
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    same = all(x == y for x, y in zip(results["fresh"], results["shared"]))
    f, s = statistics.mean(times["fresh"]), statistics.mean(times["shared"])
    print(f"{a.sets} sets of {a.size}: a METEOR process per scoring {f:.1f} s, one shared {s:.1f} s: "
          f"{f / s:.2f}x ({a.rounds} rounds); identical scores: {same}")


if __name__ == "__main__":
    main()
