"""ILLUME's simulated human: ROUGE-L of the rationale against the reference explanations."""
from __future__ import annotations

from typing import Mapping, Sequence

from ..evaluate.nlg import rouge_l
from ..records import Candidate, Example
from .base import example_for


class RougeCritic:
    name = "critic:rougeL"

    def score(self, examples: Mapping[str, Example], candidates: Sequence[Candidate]) -> list[float]:
        return [rouge_l(c.rationale, example_for(examples, c).explanations) for c in candidates]
