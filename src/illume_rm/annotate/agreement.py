"""Agreement between people who judged the same rationales (accept / reject)."""
from __future__ import annotations

from itertools import combinations


def cohen_kappa(a: list[bool], b: list[bool]) -> float:
    """Cohen's kappa of two raters over the same items (nan when chance agreement is total)."""
    n = len(a)
    if n == 0 or n != len(b):
        return float("nan")
    observed = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    return float("nan") if expected == 1 else (observed - expected) / (1 - expected)


def fleiss_kappa(items: list[list[bool]]) -> float:
    """Fleiss' kappa over items each rated by two or more people (the usual generalisation to a
    varying number of raters per item: per-item agreement averaged, category shares over all ratings)."""
    items = [r for r in items if len(r) >= 2]
    if not items:
        return float("nan")
    per_item, yes, total = [], 0, 0
    for ratings in items:
        n, k = len(ratings), sum(ratings)
        per_item.append((k * (k - 1) + (n - k) * (n - k - 1)) / (n * (n - 1)))
        yes, total = yes + k, total + n
    p_bar = sum(per_item) / len(per_item)
    p = yes / total
    p_e = p * p + (1 - p) * (1 - p)
    return float("nan") if p_e == 1 else (p_bar - p_e) / (1 - p_e)


def agreement_report(votes: dict[str, dict[str, bool]]) -> dict:
    """From item -> {annotator: accepted}: how many items two or more people judged, their raw
    agreement, Fleiss' kappa, and Cohen's kappa for each pair of people with items in common."""
    shared = {item: v for item, v in votes.items() if len(v) >= 2}
    pairs = {}
    people = sorted({a for v in votes.values() for a in v})
    for x, y in combinations(people, 2):
        common = [v for v in shared.values() if x in v and y in v]
        if common:
            pairs[f"{x} / {y}"] = {"items": len(common),
                                  "kappa": cohen_kappa([v[x] for v in common], [v[y] for v in common])}
    unanimous = sum(len(set(v.values())) == 1 for v in shared.values())
    return {
        "annotators": len(people),
        "items": len(votes),
        "items_with_2_or_more": len(shared),
        "unanimous": unanimous / len(shared) if shared else float("nan"),
        "fleiss_kappa": fleiss_kappa([list(v.values()) for v in shared.values()]),
        "cohen_kappa": pairs,
        "cohen_kappa_mean": (sum(p["kappa"] * p["items"] for p in pairs.values())
                             / sum(p["items"] for p in pairs.values())) if pairs else float("nan"),
    }
