"""Agreement of a reward model with held-out judgements, and the acceptance threshold."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def agreement(labels: Sequence[bool], probs: Sequence[float], threshold: float) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, precision_score, recall_score, roc_auc_score

    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    pred = (p >= threshold).astype(int)
    out = {
        "n": int(len(y)), "positives": int(y.sum()), "threshold": float(threshold),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "kappa": float(cohen_kappa_score(y, pred)) if len(set(y)) > 1 or len(set(pred)) > 1 else 1.0,
    }
    out["roc_auc"] = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    return out


def threshold_for_precision(labels: Sequence[bool], probs: Sequence[float], target: float) -> float:
    """The lowest threshold whose precision on these judgements reaches ``target`` (most recall at
    that precision); 0.5 when none does or there are no positives."""
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    if y.sum() == 0:
        return 0.5
    best = None
    for t in sorted(set(p.tolist()), reverse=True):
        pred = p >= t
        prec = (y[pred] == 1).mean() if pred.any() else 0.0
        if prec >= target:
            best = t
    return float(best) if best is not None else 0.5
