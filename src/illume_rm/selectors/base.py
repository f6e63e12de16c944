"""One door for every judge: a scorer plus an acceptance rule.

A *scorer* is anything with ``score(examples, candidates) -> list[float]``
(higher is better; ``examples`` is a mapping from example id to Example).
A *selector* is a scorer plus a rule: a fixed threshold, an adaptive one
(the highest threshold that still accepts at least N), or top-k per example.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

from ..errors import UserError
from ..records import Candidate, Example, Judgement


@runtime_checkable
class Scorer(Protocol):
    name: str

    def score(self, examples: Mapping[str, Example], candidates: Sequence[Candidate]) -> list[float]:
        ...


@dataclass
class Rule:
    """How scores become accept / reject.

    kind ``threshold``: accept score >= threshold. kind ``adaptive``: the highest
    threshold (never above ``threshold``) that accepts at least ``min_accept``
    candidates, but never below ``floor``. kind ``topk``: the best ``k`` of each
    example whose score is >= ``floor``.
    """

    kind: str = "threshold"
    threshold: float = 0.7
    min_accept: int = 50
    floor: float = 0.0
    k: int = 1

    def describe(self) -> str:
        if self.kind == "threshold":
            return f">={self.threshold:g}"
        if self.kind == "adaptive":
            return f">=adaptive(max {self.threshold:g}, n>={self.min_accept}, floor {self.floor:g})"
        return f"top{self.k}>={self.floor:g}"

    def apply(self, scores: Sequence[float], candidates: Sequence[Candidate]) -> tuple[list[bool], float]:
        if self.kind == "threshold":
            return [s >= self.threshold for s in scores], self.threshold
        if self.kind == "adaptive":
            ranked = sorted(scores, reverse=True)
            t = self.threshold
            if len(ranked) >= self.min_accept and ranked[self.min_accept - 1] < t:
                t = ranked[self.min_accept - 1]
            elif len(ranked) < self.min_accept and ranked:
                t = min(t, ranked[-1])
            t = max(t, self.floor)
            return [s >= t for s in scores], t
        if self.kind == "topk":
            by_example: dict[str, list[int]] = {}
            for i, c in enumerate(candidates):
                by_example.setdefault(c.example_id, []).append(i)
            accepted = [False] * len(scores)
            for idx in by_example.values():
                for i in sorted(idx, key=lambda i: -scores[i])[: self.k]:
                    accepted[i] = scores[i] >= self.floor
            return accepted, self.floor
        raise UserError(f"unknown acceptance rule '{self.kind}' (threshold, adaptive or topk)")


def checked_scores(scorer: Scorer, examples: Mapping[str, Example], candidates: Sequence[Candidate]) -> list[float]:
    """A scorer's scores, or one clear error naming the scorer."""
    unknown = [c for c in candidates if c.example_id not in examples]
    if unknown:
        raise UserError(f"{len(unknown)} of {len(candidates)} candidates are about examples the data lacks "
                        f"(first: candidate {unknown[0].id}, example {unknown[0].example_id})")
    try:
        scores = list(scorer.score(examples, candidates))
    except UserError:
        raise
    except SystemExit as exc:  # a plugin that calls exit() does not end the command without a word
        raise UserError(f"scorer '{scorer.name}' called exit({exc.code!r})") from None
    except Exception as exc:  # a plugin's bug is named, not a traceback deep inside the loop
        raise UserError(f"scorer '{scorer.name}' failed: {type(exc).__name__}: {exc}") from exc
    if len(scores) != len(candidates):
        raise UserError(f"scorer '{scorer.name}' returned {len(scores)} scores for {len(candidates)} candidates")
    try:
        out = [float(s) for s in scores]
    except (TypeError, ValueError):
        raise UserError(f"scorer '{scorer.name}' returned something that is not a number") from None
    nan = sum(math.isnan(s) for s in out)
    if nan:
        raise UserError(f"scorer '{scorer.name}' returned NaN for {nan} of {len(out)} candidates "
                        f"(first: candidate {candidates[[math.isnan(s) for s in out].index(True)].id})")
    return out


class Selector:
    """A scorer and its rule; ``gates`` are further scorers that must each give >= 0.5 for a
    candidate to be accepted (e.g. a reward model AND the answer being correct)."""

    def __init__(self, scorer: Scorer, rule: Rule, label: str | None = None, gates: Sequence[Scorer] = ()):
        self.scorer, self.rule, self.gates = scorer, rule, list(gates)
        self.label = label or f"{scorer.name}{rule.describe()}" + "".join(f"&{g.name}" for g in self.gates)
        self.last_threshold: float | None = None

    def scores(self, examples: Mapping[str, Example], candidates: Sequence[Candidate]) -> list[float]:
        return checked_scores(self.scorer, examples, candidates)

    def select(self, examples: Mapping[str, Example], candidates: Sequence[Candidate]) -> list[Judgement]:
        if not candidates:
            return []
        scores = self.scores(examples, candidates)
        accepted, self.last_threshold = self.rule.apply(scores, candidates)
        for gate in self.gates:
            passed = checked_scores(gate, examples, candidates)
            accepted = [a and g >= 0.5 for a, g in zip(accepted, passed)]
        now = time.time()
        return [Judgement(candidate_id=c.id, accepted=a, score=s, selector=self.label, time=now)
                for c, s, a in zip(candidates, scores, accepted)]


def example_for(examples: Mapping[str, Example], cand: Candidate) -> Example:
    try:
        return examples[cand.example_id]
    except KeyError:
        raise UserError(f"candidate {cand.id} refers to unknown example {cand.example_id}") from None
