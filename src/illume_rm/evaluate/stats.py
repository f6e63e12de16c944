"""The noise around a number: a mean's 95% interval over seeds (Student's t), and a paired bootstrap
over val questions for a difference between two runs (the same questions, so each question is its
own control). A difference is called a gain or a loss only when its interval leaves out zero."""
from __future__ import annotations

import math
import random
from typing import Sequence

def t975(df: int) -> float:
    """Student's t 97.5% quantile (scipy, which scikit-learn brings)."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of its 95% interval); the half-width is nan for fewer than two values."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t975(n - 1) * sd / math.sqrt(n)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 2000, seed: int = 0) -> dict:
    """Mean of a - b over paired items (a[i] and b[i] are the same question), its 95% percentile
    interval from resampling the items, and a two-sided p-value (the share of resampled differences
    on the other side of zero, doubled)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired bootstrap needs two equally long, non-empty lists (got {len(a)} and {len(b)})")
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    rng = random.Random(seed)
    means = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo, hi = means[int(0.025 * resamples)], means[min(resamples - 1, int(0.975 * resamples))]
    diff = sum(d) / n
    below = sum(m <= 0 for m in means) / resamples
    above = sum(m >= 0 for m in means) / resamples
    return {"diff": diff, "low": lo, "high": hi, "p": min(1.0, 2 * min(below, above)), "n": n}


def verdict(result: dict, what: str = "difference") -> str:
    """'gain' / 'loss' only when the interval leaves out zero; otherwise 'no clear difference'."""
    if result["low"] > 0:
        return "gain"
    if result["high"] < 0:
        return "loss"
    return f"no clear {what}"
