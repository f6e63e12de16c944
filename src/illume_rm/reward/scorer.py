"""A saved reward model as a scorer (``score(examples, candidates)``), opened in one call."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from .models import CLASSES, NEEDS_VLM


class RewardScorer:
    """A saved reward model as a scorer; ``threshold`` is the one chosen on held-out data."""

    kind = "reward"  # a machine's judgements: not the human budget

    def __init__(self, path: str | Path, model, vlm=None):
        self.path, self.model, self.vlm = Path(path), model, vlm
        self.name = f"reward:{self.path.name}"
        self.threshold = model.threshold

    @property
    def wants_vlm(self) -> bool:
        """Reads the warm-up VLM and has none yet (a judge gives it its context's: ``Selector.judge``)."""
        return NEEDS_VLM.get(self.model.kind) == "warm-up" and self.vlm is None

    def score(self, examples, candidates) -> list[float]:
        if NEEDS_VLM.get(self.model.kind) == "warm-up" and self.vlm is None:
            raise UserError(f"{self.path}: a {self.model.kind} reward model reads the warm-up VLM; load it with vlm=")
        return self.model.predict(examples, list(candidates), self.vlm)


def reward_kind(path: str | Path) -> str:
    """The kind of the reward model saved at ``path`` (cross-encoder, image-aware, ...)."""
    meta = Path(path) / "reward.json"
    if not meta.is_file():
        raise UserError(f"reward model {path} does not exist (no reward.json there)")
    return json.loads(meta.read_text())["kind"]


def load_reward(path: str | Path, vlm=None) -> RewardScorer:
    """The reward model saved at ``path``; ``vlm``: the warm-up VLM, for the kinds that read it
    (``NEEDS_VLM``; an image-aware model loads its own image encoder when none is given)."""
    path = Path(path)
    info = json.loads((path / "reward.json").read_text()) if (path / "reward.json").is_file() else None
    if info is None:
        raise UserError(f"reward model {path} does not exist (no reward.json there)")
    if info.get("kind") not in CLASSES:
        raise UserError(f"{path}/reward.json: unknown reward model kind {info.get('kind')!r}")
    return RewardScorer(path, CLASSES[info["kind"]].load(path, info["threshold"]), vlm)
