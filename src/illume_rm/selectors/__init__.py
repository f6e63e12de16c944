"""Judges: the critic, the oracle, people, reward models and any scorer behind one protocol
(``base.Judge``: ``judge(examples, candidates, ctx) -> Verdicts``).

Adding a judge: a scorer class (``score(examples, candidates)``; ``kind`` and ``people`` for the
accounting) in ``SCORERS``, or a judge class in ``JUDGES``; nothing else needs to know it.
"""
from __future__ import annotations

from ..errors import UserError
from .base import Judge, JudgeContext, Rule, Scorer, Selector, Verdicts
from .critic import AnswerCorrect, RougeCritic
from .human import HumanJudge
from .oracle import SceneOracle
from .reward import RewardLoopJudge

__all__ = ["AnswerCorrect", "HumanJudge", "Judge", "JudgeContext", "JUDGES", "RewardLoopJudge", "Rule", "SCORERS",
           "Scorer", "Selector", "RougeCritic", "SceneOracle", "Verdicts", "make_judge", "make_scorer"]

# scorers by name (each becomes a judge with the recipe's rule)
SCORERS = {"critic": RougeCritic, "oracle": SceneOracle, "answer": AnswerCorrect}


def _human(cfg, seed: int) -> Judge:
    return HumanJudge(cfg.judges)


def _reward_loop(cfg, seed: int) -> Judge:
    seed_judge = make_judge(cfg, cfg.seed_selector, seed, rule=Rule("threshold", threshold=0.5), gates=False)
    return RewardLoopJudge(seed_judge, cfg, gates=[make_scorer(g) for g in cfg.require], seed_value=seed)


# judges that are more than a scorer and a rule: people, and the reward loop (a seed judge and a model)
JUDGES = {"human": _human, "reward": _reward_loop}


def make_scorer(name: str) -> Scorer:
    """'critic', 'oracle', 'answer', 'reward:PATH' (a trained reward model), or 'package.module:name'
    (a scorer object, class or function; or an entry point of the group illume_rm.scorers)."""
    if name in SCORERS:
        return SCORERS[name]()
    if name in JUDGES:
        raise UserError(f"'{name}' is a judge, not a scorer: use it as selector.name "
                        f"(scorers: {', '.join(SCORERS)}, reward:FOLDER or package.module:name)")
    if name.startswith("reward:"):
        from ..reward import load_reward

        return load_reward(name.split(":", 1)[1])
    from .plugins import load_plugin

    return load_plugin(name)


def make_judge(cfg, name: str | None = None, seed: int = 0, rule: Rule | None = None, gates: bool = True) -> Judge:
    """The judge a recipe's ``selector`` section names (``name`` overrides ``cfg.name``): one of
    ``JUDGES``, else a scorer with ``rule`` (default ``cfg.rule``) and the ``require`` gates."""
    name = name or cfg.name
    if name in JUDGES:
        return JUDGES[name](cfg, seed)
    return Selector(make_scorer(name), rule or cfg.rule,
                    gates=[make_scorer(g) for g in cfg.require] if gates else [])

