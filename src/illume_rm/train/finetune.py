"""Adapter fine-tuning (ILLUME's step 3), and the two baselines it is compared against.

- ``illume``: LoRA on the accepted rationales (``{answer}, seeing that {rationale}``;
  the loss on the rationale alone unless ``loss_on_answer``, ILLUME's own target), mixed
  with answer-only examples (``answer_ratio`` of them per rationale example, 10 as in
  ILLUME); the explanation loss is weighted by ``explanation_weight`` so it is not drowned.
- ``gt-sft``: the same, on the ground-truth explanations of ``gt_fraction`` of
  the training examples (the baseline ILLUME is measured against).
- ``answer-only``: the same number of steps on answer-only examples (a control
  that tells gains from mere extra training).

The steps are the warm-up's (``steps.train_steps``): per-item weights, cached image features, a
constant learning rate after a linear ramp over ``warmup_steps``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import torch

from ..errors import UserError
from ..records import Candidate, Example
from ..vlm.base import VLM, Item, answer_prompt
from .lora import LoraConfig, add_lora, count_trainable
from .steps import train_steps

MODES = ("illume", "gt-sft", "answer-only")


@dataclass
class FinetuneConfig:
    mode: str = "illume"
    steps: int = 40
    batch_size: int = 16
    lr: float = 5e-4
    answer_ratio: float = 10.0        # answer-only examples per rationale example
    explanation_weight: float = 3.0   # loss weight of a rationale example against an answer-only one
    # whether a rationale example's loss covers its answer too (ILLUME's target), or the rationale alone,
    # its answer in the prompt as sampling puts it: in 3 matched demo loops the rationale alone ended
    # 10.7 +- 2.8 points more grounded (README, "The ILLUME loop: the demo")
    loss_on_answer: bool = field(default=False, metadata={"hash_default": False})
    gt_fraction: float = 0.1          # gt-sft: share of training examples whose references are used
    warmup_steps: int = field(default=5, metadata={"hash_default": False})  # linear warm-up of the learning rate
    # fp32, bfloat16 autocast for the forward and backward (weights and Adam stay fp32), or auto (bf16
    # where the device runs it natively, else fp32). fp32 by default: with bf16 the demo loop ended 9.3
    # grounded points lower in 3 matched loops on a CPU with AMX (README, "Fine-tuning under bf16")
    precision: Literal["auto", "fp32", "bf16"] = field(default="fp32", metadata={"hash_default": False})
    lora: LoraConfig = field(default_factory=lambda: LoraConfig(train_projector=False))
    # rows per forward and backward within a step (gradient accumulation; 0: the whole batch at once): the
    # same step up to rounding, with a fraction of the activation memory (README, "Commands")
    micro_batch: int = field(default=0, metadata={"hash_default": False})

    def __post_init__(self):
        if self.micro_batch < 0:
            raise UserError(f"finetune.micro_batch: 0 (the whole batch at once) or more, got {self.micro_batch}")


def rationale_target(answer: str, rationale: str) -> str:
    return f" {answer}, seeing that {rationale}"


def explained_item(ex: Example, rationale: str, loss_on_answer: bool) -> Item:
    """``Q: .. A:`` -> `` {answer}, seeing that {rationale}``; without ``loss_on_answer`` the same
    tokens, with the answer and "seeing that" moved into the prompt, so only the rationale is learnt."""
    target = rationale_target(ex.answer, rationale)
    if loss_on_answer:
        return ex.image, answer_prompt(ex), target
    head = rationale_target(ex.answer, "").rstrip()
    return ex.image, answer_prompt(ex) + head, target[len(head):]


def rationale_items(examples: dict[str, Example], accepted: Sequence[Candidate], loss_on_answer: bool) -> list[Item]:
    items = []
    for c in accepted:
        ex = examples.get(c.example_id)
        if ex is None:
            raise UserError(f"accepted candidate {c.id} refers to unknown example {c.example_id}")
        items.append(explained_item(ex, c.rationale, loss_on_answer))
    return items


def gt_count(train: Sequence[Example], fraction: float) -> int:
    """How many written explanations GT-SFT trains on: ``fraction`` of the questions that have one."""
    return round(sum(1 for ex in train if ex.explanations) * fraction)


def gt_items(train: Sequence[Example], fraction: float, seed: int, loss_on_answer: bool) -> list[Item]:
    rng = random.Random(seed)
    with_refs = [ex for ex in train if ex.explanations]
    chosen = rng.sample(with_refs, gt_count(train, fraction))
    return [explained_item(ex, rng.choice(ex.explanations), loss_on_answer) for ex in chosen]


def finetune(vlm: VLM, train: Sequence[Example], accepted: Sequence[Candidate], cfg: FinetuneConfig, seed: int = 0,
             log: Callable[[str], None] = print) -> list[float]:
    """Adds LoRA to ``vlm`` and trains it in place; returns the loss curve."""
    if cfg.mode not in MODES:
        raise UserError(f"unknown fine-tuning mode '{cfg.mode}' (choose {', '.join(MODES)})")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    answers = [(ex.image, answer_prompt(ex), " " + ex.answer) for ex in train]
    if cfg.mode == "illume":
        explained = rationale_items({ex.id: ex for ex in train}, accepted, cfg.loss_on_answer)
    elif cfg.mode == "gt-sft":
        explained = gt_items(train, cfg.gt_fraction, seed, cfg.loss_on_answer)
    else:
        explained = []
    model = add_lora(vlm, cfg.lora)
    log(f"fine-tuning ({cfg.mode}): {len(explained)} explained examples, {len(answers)} answer-only, "
        f"{count_trainable(model):,} trainable parameters, {cfg.steps} steps of {cfg.batch_size}")
    params = [p for p in model.parameters() if p.requires_grad]
    p_explained = 1.0 / (1.0 + cfg.answer_ratio) if explained else 0.0

    def draw(step: int):
        n_exp = sum(rng.random() < p_explained for _ in range(cfg.batch_size))
        if explained and step == 0:
            n_exp = max(n_exp, 1)
        batch = rng.choices(explained, k=n_exp) + rng.sample(answers, cfg.batch_size - n_exp)
        return batch, [cfg.explanation_weight] * n_exp + [1.0] * (cfg.batch_size - n_exp)

    return train_steps(vlm, [{"params": params, "lr": cfg.lr}], cfg.steps, draw, schedule="constant",
                       warmup_steps=cfg.warmup_steps, precision=cfg.precision, desc=f"fine-tuning ({cfg.mode})",
                       micro_batch=cfg.micro_batch)
