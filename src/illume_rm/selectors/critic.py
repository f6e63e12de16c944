"""ILLUME's simulated human: ROUGE-L of the rationale against the reference explanations."""
from __future__ import annotations

from typing import Mapping, Sequence

from ..evaluate.nlg import rouge_l
from ..records import Candidate, Example
from .base import example_for


class RougeCritic:
    name = "critic:rougeL"
    kind = "critic"
    people = True  # ILLUME's simulated human

    def score(self, examples: Mapping[str, Example], candidates: Sequence[Candidate]) -> list[float]:
        return [rouge_l(c.rationale, example_for(examples, c).explanations) for c in candidates]


class AnswerCorrect:
    """1.0 when the candidate's answer is right (VQA accuracy > 0), else 0.0: a gate to combine
    with another selector, e.g. ``selector.require: [answer]``."""

    name = "answer"
    kind = "answer"

    def score(self, examples: Mapping[str, Example], candidates: Sequence[Candidate]) -> list[float]:
        from ..evaluate.accuracy import answer_score

        return [float(answer_score(c.answer, example_for(examples, c).answers) > 0) for c in candidates]
