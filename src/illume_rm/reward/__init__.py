"""The rationale reward model: trained on a seed of human (or simulated) selections, it then
selects in the annotators' place. ``train_reward`` fits one; ``load_reward`` opens a saved one,
which is a scorer like any other (``score(examples, candidates)``)."""
from .model import RewardConfig, load_reward, train_reward

__all__ = ["RewardConfig", "load_reward", "train_reward"]
