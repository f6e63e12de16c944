"""How well does the sampling VLM's own likelihood of a rationale rank it, against a judge's verdicts?

Each sampled candidate carries ``logprob``: the log-probability of its rationale under the model that
sampled it (given the image, the question and the gold answer). Now that the built-in VLM reads its
image, a true rationale should be more likely than a false one. This prints the ROC-AUC of that
number against the judgements (no training at all), and of a logistic regression on [log-probability,
per-word log-probability, words] fitted on a seed of ``--seed-size`` judgements and scored on the rest
(mean and standard error over ``--splits`` random seeds), beside the same split's AUC of the raw
log-probability. This is the likelihood alone: the vlm-likelihood reward model also reads whether
the rationale uses its question's and answer's words (``illume_rm.reward.relevance``), which needs
the examples; ``illume-rm train-reward ... --kind vlm-likelihood --limit N`` measures the whole model.

    .venv/bin/python diagnostics/likelihood_judge.py runs/shapes-critic/iter-000/candidates.jsonl oracle.jsonl \
        [--recipe recipes/shapes-critic.yaml [--set seed=1]]
"""
from __future__ import annotations

import argparse
import random
import statistics

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from illume_rm.errors import UserError, run_script
from illume_rm.records import Candidate, Judgement, read_jsonl


def within_question(judged: list[Judgement], cands: dict[str, Candidate]) -> tuple[float, int, int]:
    """Over every (accepted, rejected) pair of candidates of the same question: how many times the
    accepted one has the higher log-probability (ties count half), the number of pairs, and of
    questions with both verdicts. The global ROC-AUC also rewards telling questions (or families)
    that yield true rationales from those that do not; this is the ranking within one."""
    by_question: dict[str, list[tuple[float, bool]]] = {}
    for j in judged:
        c = cands[j.candidate_id]
        by_question.setdefault(c.example_id, []).append((c.logprob, bool(j.accepted)))
    wins, pairs, questions = 0.0, 0, 0
    for rows in by_question.values():
        yes = [lp for lp, ok in rows if ok]
        no = [lp for lp, ok in rows if not ok]
        if yes and no:
            questions += 1
            pairs += len(yes) * len(no)
            wins += sum((a > b) + 0.5 * (a == b) for a in yes for b in no)
    return wins, pairs, questions


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("candidates")
    ap.add_argument("judgements")
    ap.add_argument("--seed-size", type=float, default=0.1, help="share of judgements the calibration sees")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--recipe", help="the recipe whose data the candidates are of: also compares, calibrated the "
                    "same way, the relevance features (question and answer words in the rationale) and both")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a recipe override, as illume-rm's --set")
    a = ap.parse_args(argv)
    cands = {c.id: c for c in read_jsonl(a.candidates, Candidate)}
    judged = [j for j in read_jsonl(a.judgements, Judgement) if j.candidate_id in cands]
    if not judged:
        raise UserError(f"{a.judgements}: no judgement is of a candidate in {a.candidates}")
    if any(cands[j.candidate_id].logprob is None for j in judged):
        raise UserError(f"{a.candidates}: candidates without a logprob (sampled by an older version?)")
    # the recipe's data before any work: a bad recipe or a foreign candidate stops here
    rel = relevance_columns(a.recipe, a.overrides, [cands[j.candidate_id] for j in judged]) if a.recipe else None
    y = np.array([bool(j.accepted) for j in judged])
    lp = np.array([cands[j.candidate_id].logprob for j in judged])
    words = np.array([max(1, len(cands[j.candidate_id].rationale.split())) for j in judged])
    x = np.stack([lp, lp / words, words], 1)
    print(f"{len(y)} judgements, {int(y.sum())} accepted")
    print(f"ROC-AUC of the sampling model's log-probability, no training: {roc_auc_score(y, lp):.3f}")
    wins, pairs, questions = within_question(judged, cands)
    if pairs:
        print(f"within a question (what selecting among a question's samples needs): the accepted rationale "
              f"more likely than the rejected one in {wins / pairs:.3f} of {pairs} pairs ({questions} questions "
              "with both)")
    n_seed = max(2, round(a.seed_size * len(y)))
    fitted, raw = [], []
    for seed, rest in seed_splits(y, n_seed, a.splits):
        m = LogisticRegression(class_weight="balanced", max_iter=1000).fit(x[seed], y[seed])
        fitted.append(roc_auc_score(y[rest], m.decision_function(x[rest])))
        raw.append(roc_auc_score(y[rest], lp[rest]))
    if not fitted:
        print(f"calibration: no split's seed of {n_seed} (or its rest) held both verdicts")
        return
    se = lambda v: statistics.stdev(v) / len(v) ** 0.5 if len(v) > 1 else float("nan")  # noqa: E731
    print(f"calibrated on {n_seed} judgements, scored on the other {len(y) - n_seed} ({len(fitted)} splits): "
          f"ROC-AUC {statistics.mean(fitted):.3f} ± {se(fitted):.3f} (raw log-probability on the same: "
          f"{statistics.mean(raw):.3f} ± {se(raw):.3f})")
    if rel is not None:
        sets = {"likelihood [log-probability, per word, words]": x,
                "relevance [words, question words in rationale, answer words in rationale]": np.column_stack([words, rel]),
                "both (the vlm-likelihood reward model's features)": np.column_stack([x, rel])}
        print(f"features standardised on the seed, the same {a.splits} splits:")
        for name, feats in sets.items():
            aucs = standardised_splits(feats, y, n_seed, a.splits)
            print(f"  {name}: ROC-AUC {statistics.mean(aucs):.3f} ± {se(aucs):.3f}")


def seed_splits(y: np.ndarray, n_seed: int, splits: int):
    """(seed, rest) index lists of each random split (split k shuffled by seed k) whose seed and rest
    both hold both verdicts."""
    for s in range(splits):
        idx = list(range(len(y)))
        random.Random(s).shuffle(idx)
        seed, rest = idx[:n_seed], idx[n_seed:]
        if len(set(y[seed])) == 2 and len(set(y[rest])) == 2:
            yield seed, rest


def relevance_columns(recipe: str, overrides: list[str], cands: list[Candidate]) -> np.ndarray:
    """[n, 2]: the relevance features of each candidate, its question from the recipe's data."""
    from illume_rm.cli import _examples_by_id, _recipe
    from illume_rm.reward.relevance import relevance

    examples = _examples_by_id(_recipe(recipe, overrides))
    missing = sorted({c.example_id for c in cands} - set(examples))
    if missing:
        raise UserError(f"{len(missing)} candidate(s) of examples not in {recipe}'s data, e.g. {missing[0]}")
    return np.array([relevance(examples[c.example_id].question, c.answer, c.rationale) for c in cands])


def standardised_splits(x: np.ndarray, y: np.ndarray, n_seed: int, splits: int) -> list[float]:
    """ROC-AUC on the rest of a logistic regression fitted on a random seed of ``n_seed`` (features
    standardised on the seed, as the reward model does), over the splits whose seed and rest hold both."""
    out = []
    for seed, rest in seed_splits(y, n_seed, splits):
        mu, sd = x[seed].mean(0), x[seed].std(0) + 1e-6
        m = LogisticRegression(class_weight="balanced", max_iter=1000).fit((x[seed] - mu) / sd, y[seed])
        out.append(roc_auc_score(y[rest], m.decision_function((x[rest] - mu) / sd)))
    return out


if __name__ == "__main__":
    run_script(main)
