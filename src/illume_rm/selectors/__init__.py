"""Selectors: the critic, the oracle, and any scorer behind one protocol."""
from __future__ import annotations

from ..errors import UserError
from .base import Rule, Scorer, Selector
from .critic import AnswerCorrect, RougeCritic
from .oracle import SceneOracle

__all__ = ["AnswerCorrect", "Rule", "Scorer", "Selector", "RougeCritic", "SceneOracle", "make_scorer", "make_selector"]


def make_scorer(name: str) -> Scorer:
    """'critic', 'oracle', 'reward:PATH' (a trained reward model), or 'package.module:name'
    (a scorer object, class or function; or an entry point of the group illume_rm.scorers)."""
    if name == "critic":
        return RougeCritic()
    if name == "oracle":
        return SceneOracle()
    if name == "answer":
        return AnswerCorrect()
    if name == "human":
        raise UserError("people judge in the annotation page: run `illume-rm iterate --selector human`, "
                        "then `illume-rm annotate RUN_DIR`")
    if name.startswith("reward:"):
        from ..reward.model import load_reward

        return load_reward(name.split(":", 1)[1])
    from .plugins import load_plugin

    return load_plugin(name)


def make_selector(cfg) -> Selector:
    """The selector a recipe's ``selector`` section describes (not the reward loop's, see loop.py)."""
    return Selector(make_scorer(cfg.name), cfg.rule, gates=[make_scorer(g) for g in cfg.require])
