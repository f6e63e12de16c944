"""Selectors: the critic, the oracle, and any scorer behind one protocol."""
from __future__ import annotations

from .base import Rule, Scorer, Selector
from .critic import RougeCritic
from .oracle import SceneOracle

__all__ = ["Rule", "Scorer", "Selector", "RougeCritic", "SceneOracle", "make_scorer"]


def make_scorer(name: str) -> Scorer:
    """'critic', 'oracle', or 'package.module:name' (a scorer object, class or factory)."""
    if name == "critic":
        return RougeCritic()
    if name == "oracle":
        return SceneOracle()
    from .plugins import load_plugin

    return load_plugin(name)
