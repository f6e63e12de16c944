"""The rationale reward model: trained on a seed of human (or simulated) selections, it then
selects in the annotators' place. In parts, as sentence-transformers separates them:

- ``models``: the kinds (cross-encoder, pairwise, scene-text, vlm-likelihood, image-aware) and
  ``RewardConfig``;
- ``training``: judgements to rows, the held-out split, ``train_reward``;
- ``evaluation``: agreement with judgements, the threshold for a target precision, scoring the
  judgements a model never saw;
- ``scorer``: ``load_reward`` opens a saved model as a scorer like any other
  (``score(examples, candidates)``)."""
from .evaluation import agreement, score_unseen, seed_agreement, threshold_for_precision
from .models import KINDS, NEEDS_VLM, RewardConfig
from .scorer import RewardScorer, load_reward, reward_kind
from .training import labelled_rows, train_reward

__all__ = ["KINDS", "NEEDS_VLM", "RewardConfig", "RewardScorer", "agreement", "labelled_rows", "load_reward",
           "reward_kind", "score_unseen", "seed_agreement", "threshold_for_precision", "train_reward"]
