"""Answer accuracy: VQA accuracy where ten answers exist, exact match otherwise."""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Sequence

from ..records import Example

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    text = text.lower().strip().rstrip(".")
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_score(pred: str, answers: Sequence[str]) -> float:
    """min(#annotators who gave it / 3, 1) with 10 answers (VQA), else exact match on the first."""
    p = normalize(pred)
    if len(answers) >= 10:
        return min(sum(normalize(a) == p for a in answers) / 3.0, 1.0)
    return float(p == normalize(answers[0]))


def family(ex: Example) -> str:
    return ex.meta.get("family", "all")


def accuracy_by_family(examples: Sequence[Example], preds: Sequence[str]) -> dict[str, float]:
    """{'all': .., family: ..} answer accuracy."""
    scores: dict[str, list[float]] = defaultdict(list)
    for ex, p in zip(examples, preds):
        s = answer_score(p, ex.answers)
        scores["all"].append(s)
        scores[family(ex)].append(s)
    return {k: sum(v) / len(v) for k, v in scores.items()}


def chance_by_family(train: Sequence[Example], val: Sequence[Example]) -> dict[str, float]:
    """What always giving each family's most common *training* answer scores on val."""
    common: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for ex in train:
        common[family(ex)][normalize(ex.answer)] += 1
        overall[normalize(ex.answer)] += 1
    preds = [(common.get(family(ex)) or overall).most_common(1)[0][0] for ex in val]
    return accuracy_by_family(val, preds)
