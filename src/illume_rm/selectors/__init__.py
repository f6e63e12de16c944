"""Selectors: the critic, the oracle, and any scorer behind one protocol."""
from __future__ import annotations

from .base import Rule, Scorer, Selector
from .critic import RougeCritic
from .oracle import SceneOracle

__all__ = ["Rule", "Scorer", "Selector", "RougeCritic", "SceneOracle", "make_scorer"]


def make_scorer(name: str) -> Scorer:
    """'critic', 'oracle', 'reward:PATH' (a trained reward model), or 'package.module:name'
    (a scorer object, class or function; or an entry point of the group illume_rm.scorers)."""
    if name == "critic":
        return RougeCritic()
    if name == "oracle":
        return SceneOracle()
    if name.startswith("reward:"):
        from ..reward.model import load_reward

        return load_reward(name.split(":", 1)[1])
    from .plugins import load_plugin

    return load_plugin(name)
