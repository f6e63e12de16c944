"""The careful person: accepts a rationale only when every claim it makes is true of
the scene, nothing in it is left unread, and it supports the candidate's answer to the
question (data with scene graphs; ``data/scene.py``)."""
from __future__ import annotations

from typing import Mapping, Sequence

from ..data.scene import is_grounded
from ..errors import UserError
from ..records import Candidate, Example
from .base import example_for


def oracle_accepts(ex: Example, rationale: str, answer: str | None = None) -> bool:
    if "scene" not in ex.meta:
        raise UserError(f"the oracle needs scene graphs, and example {ex.id} has none (use the critic)")
    return is_grounded(ex.meta, ex.question, rationale, answer)


class SceneOracle:
    name = "oracle"
    kind = "oracle"
    people = True  # a simulated careful person

    def score(self, examples: Mapping[str, Example], candidates: Sequence[Candidate]) -> list[float]:
        return [float(oracle_accepts(example_for(examples, c), c.rationale, c.answer)) for c in candidates]
