"""Which threshold rule lets a reward model trained on a small seed keep the most true rationales at
the precision asked? Offline, on a gold loop's iteration 0 (every candidate judged).

For each gold run folder (a sweep's ``oracle-sN``), each budget and each draw of the seed (draw 0 is
the one the sweep's reward cell makes; draws 1.. use other stratification seeds), this does what the
reward loop does at iteration 0 -- the seed stratified as `RewardLoopJudge`, the reward model's
out-of-fold scores (``threshold_folds``) and the model trained on the whole seed -- and then applies
each threshold rule to the candidates the model did not see, scored against the gold judge's
verdicts on them: how many it accepts, its precision and recall. Only the rule differs between
rows of one draw (the same seed, folds, model and scores). The rules:

- ``precision`` (the reward loop's, ``threshold_for_precision``): the lowest threshold whose precision
  on the seed's out-of-fold scores reaches the target; none: accept nothing;
- ``calibrated``: the out-of-fold scores Platt-scaled with Platt's prior targets (a seed of a few
  accepted judgements cannot claim certainty), then the lowest threshold at which the unseen
  candidates above it are expected, by their calibrated chances, to be accepted at the target
  precision (a lower bound of sorts: it shrinks the estimate towards the seed's size);
- ``calibrated-hard``: the same without the prior (the plain logistic fit).

Measured 2026-12-02 (README "Budget sweep", "How many true rationales the threshold keeps"):
the calibrated rule met the target precision the precision rule misses (0.88-0.90 against 0.85-0.86)
but kept half as many true rationales, and the reward loop fine-tuned on its choices ended no more
grounded; it was not kept in the package.

    .venv/bin/python diagnostics/reward_threshold.py runs/shapes-sweep/oracle-s{0,1,2} \
        [--budgets 0.05 0.1 0.2] [--draws 5] [--target 0.9]
"""
from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path
from typing import Sequence

import numpy as np

from illume_rm.errors import UserError, run_script
from illume_rm.reward.evaluation import ABSTAIN

RULES = ("precision", "calibrated", "calibrated-hard")


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def calibration(labels: Sequence[bool], probs: Sequence[float], prior: bool = True) -> tuple[float, float]:
    """Platt scaling of a reward model's out-of-fold scores: (a, b) such that sigmoid(a * logit(p) + b)
    is the chance that a candidate scored p is accepted. ``prior``: Platt's targets, (N+ + 1) / (N+ + 2)
    for an accepted one and 1 / (N- + 2) for a rejected one, so that a seed of a few judgements cannot
    claim certainty (with 5 accepted, no calibrated chance much above 6/7)."""
    from scipy.optimize import minimize

    y = np.asarray(labels, dtype=float)
    x = _logit(probs)
    pos, neg = y.sum(), len(y) - y.sum()
    t = np.where(y > 0, (pos + 1) / (pos + 2), 1 / (neg + 2)) if prior else y

    def loss(w):
        z = w[0] * x + w[1]
        return float(np.sum(np.logaddexp(0, z) - t * z)) + 1e-6 * float(w @ w)

    w = minimize(loss, np.array([1.0, 0.0]), method="BFGS").x
    return float(w[0]), float(w[1])


def calibrated(probs: Sequence[float], cal: tuple[float, float]) -> np.ndarray:
    return 1 / (1 + np.exp(-(cal[0] * _logit(probs) + cal[1])))


def pool_threshold(scores: Sequence[float], cal: tuple[float, float], target: float) -> float:
    """The lowest threshold at which the candidates to be judged (``scores``, the reward model's on
    the pool it selects from) are expected, by the calibration ``cal``, to be accepted at ``target``
    precision or better: their calibrated chances averaged over those at or above it. ``ABSTAIN``
    when not even the best-scored one reaches it."""
    s = np.asarray(scores, dtype=float)
    if not len(s):
        return ABSTAIN
    order = np.argsort(-s, kind="stable")
    q = calibrated(s[order], cal)
    expected = np.cumsum(q) / np.arange(1, len(q) + 1)
    ok = np.nonzero(expected >= target)[0]
    if not len(ok):
        return ABSTAIN
    k = int(ok.max())
    # ties at the cut: accepted together, so the set's expectation must hold with all of them
    while k >= 0 and np.mean(q[s[order] >= s[order][k]]) < target:
        k = int(ok[ok < k].max()) if (ok < k).any() else -1
    return float(s[order][k]) if k >= 0 else ABSTAIN


def main(argv: list[str] | None = None) -> None:
    from illume_rm.checkpoints import reward_vlm
    from illume_rm.config import load_recipe
    from illume_rm.data import load_examples
    from illume_rm.records import Candidate, Judgement, read_jsonl
    from illume_rm.reward.evaluation import threshold_for_precision
    from illume_rm.reward.models import CLASSES, remembered_features
    from illume_rm.reward.training import labelled_rows, out_of_fold
    from illume_rm.selectors.reward import stratified
    from illume_rm.sweep import human_spent

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gold", nargs="+", help="gold loop run folders (every iteration-0 candidate judged)")
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    ap.add_argument("--draws", type=int, default=5, help="seeds drawn per (gold run, budget); the first is the sweep's")
    ap.add_argument("--target", type=float, default=None, help="default: the recipe's selector.reward.target_precision")
    a = ap.parse_args(argv)
    vlm, results = None, []
    for folder in map(Path, a.gold):
        d = folder / "iter-000"
        for f in (folder / "recipe.yaml", d / "candidates.jsonl", d / "judgements.jsonl"):
            if not f.is_file():
                raise UserError(f"{f} does not exist: give gold loop run folders")
        r = load_recipe(str(folder / "recipe.yaml"), ["selector.reward.kind=vlm-likelihood"])
        cfg = r.selector.reward
        if cfg.threshold_folds < 2:
            cfg.threshold_folds = 5
        target = a.target or cfg.target_precision
        examples = {ex.id: ex for split in ("train", "val", "test") for ex in load_examples(r.data, split)}
        cands = read_jsonl(d / "candidates.jsonl", Candidate)
        verdict = {j.candidate_id: bool(j.accepted) for j in read_jsonl(d / "judgements.jsonl", Judgement)}
        cands = [c for c in cands if c.id in verdict]
        spent = human_spent(folder)
        vlm = vlm or reward_vlm(r, "vlm-likelihood")
        print(f"{folder}: {len(cands)} judged candidates, {sum(verdict.values())} accepted; seed {r.seed}")
        with remembered_features():
            for b in a.budgets:
                n = max(2, round(b * spent))
                for draw in range(a.draws):
                    picked = stratified(cands, examples, n, r.seed + 1000 * draw)
                    rows = labelled_rows(examples, picked, [Judgement(c.id, verdict[c.id], float(verdict[c.id]), "gold")
                                                            for c in picked])
                    ys = [y for _, _, y in rows]
                    if not any(ys) or all(ys):
                        print(f"  budget {b} draw {draw}: one class in the seed, skipped")
                        continue
                    try:
                        oof = out_of_fold(rows, cfg, vlm, log=lambda m: None)
                    except UserError as e:
                        print(f"  budget {b} draw {draw}: {e}")
                        continue
                    model = CLASSES[cfg.kind].new(cfg)
                    model.fit(rows, cfg, vlm)
                    seen = {c.id for c in picked}
                    rest = [c for c in cands if c.id not in seen]
                    scores = np.asarray(model.predict(examples, rest, vlm))
                    gold = np.asarray([verdict[c.id] for c in rest])
                    cals = {"calibrated": calibration(ys, oof), "calibrated-hard": calibration(ys, oof, prior=False)}
                    for rule in RULES:
                        t = (threshold_for_precision(ys, oof, target) if rule == "precision"
                             else pool_threshold(scores.tolist(), cals[rule], target))
                        take = scores >= t
                        k, tp = int(take.sum()), int((take & gold).sum())
                        results.append({"gold": folder.name, "budget": b, "draw": draw, "rule": rule, "seed": n,
                                        "accepted": k, "true": tp, "precision": tp / k if k else math.nan,
                                        "recall": tp / max(1, int(gold.sum())), "positives": int(gold.sum())})
                    print(f"  budget {b}, draw {draw} ({n} seed judgements, {sum(ys)} accepted): " + "; ".join(
                        f"{x['rule']} {x['true']}/{x['accepted']}" for x in results[-len(RULES):]) + " true/accepted")
    report(results, target)


def report(results: list[dict], target: float) -> None:
    print(f"\ntarget precision {target}; unseen candidates, against the gold judge; mean ± standard error over "
          "(gold run, draw) cells; 'precision' pools every accepted rationale of the budget's cells")
    print("| budget | rule | cells | abstained | accepted | true accepted | recall | precision (pooled) | "
          "cells below the target | true accepted, − the precision rule's |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def mse(xs):
        return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs) / math.sqrt(len(xs)):.1f}" if len(xs) > 1 else \
            f"{xs[0]:.1f}"

    for b in sorted({x["budget"] for x in results}):
        base = {(x["gold"], x["draw"]): x for x in results if x["budget"] == b and x["rule"] == "precision"}
        for rule in RULES:
            rows = [x for x in results if x["budget"] == b and x["rule"] == rule]
            k = sum(x["accepted"] for x in rows)
            tp = sum(x["true"] for x in rows)
            below = sum(1 for x in rows if x["accepted"] and x["precision"] < target)
            diff = [x["true"] - base[(x["gold"], x["draw"])]["true"] for x in rows]
            print(f"| {b} | {rule} | {len(rows)} | {sum(1 for x in rows if not x['accepted'])} | "
                  f"{mse([x['accepted'] for x in rows])} | {mse([x['true'] for x in rows])} | "
                  f"{statistics.mean(x['recall'] for x in rows):.3f} | {tp / k if k else math.nan:.3f} ({tp}/{k}) | "
                  f"{below} | {'' if rule == 'precision' else mse(diff)} |")


if __name__ == "__main__":
    run_script(main)
