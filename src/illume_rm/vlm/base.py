"""What every VLM offers the stages above it."""
from __future__ import annotations

import abc
import re
from typing import Sequence

import torch

from ..records import Example

# (image path or None, prompt, target or None)
Item = tuple[str | None, str, str | None]

ANSWER_TEMPLATE = "Q: {question} A:"


def answer_prompt(ex: Example, template: str = ANSWER_TEMPLATE) -> str:
    return template.format(question=ex.question)


def parse_answer(text: str) -> str:
    """The answer part of a generation: up to the first comma, full stop or newline."""
    text = text.strip().lower()
    return re.split(r"[,.\n]| because | seeing that ", text, maxsplit=1)[0].strip()


class VLM(abc.ABC):
    name: str = "vlm"
    device: torch.device

    @abc.abstractmethod
    def loss(self, items: Sequence[Item], weights: Sequence[float] | None = None) -> torch.Tensor:
        """Mean over examples (weighted) of the token-mean loss on the targets."""

    @abc.abstractmethod
    def generate(self, items: Sequence[Item], max_new_tokens: int = 24, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int = 0, num_return_sequences: int = 1) -> list[list[str]]:
        """For each (image, prompt) item, ``num_return_sequences`` continuations."""

    @abc.abstractmethod
    def trainable_model(self) -> torch.nn.Module:
        """The module PEFT wraps and optimisers see."""

    @abc.abstractmethod
    def save(self, path) -> None:
        ...

    def answer(self, examples: Sequence[Example], batch_size: int = 32, template: str = ANSWER_TEMPLATE) -> list[str]:
        """Greedy short answers."""
        out: list[str] = []
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            gens = self.generate([(ex.image, answer_prompt(ex, template), None) for ex in chunk], max_new_tokens=6)
            out.extend(parse_answer(g[0]) for g in gens)
        return out


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-mean cross-entropy of each row's labelled tokens (labels shifted inside)."""
    logits = logits[:, :-1].float()
    labels = labels[:, 1:]
    tok = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="none"
    ).view(labels.shape)
    mask = (labels != -100).float()
    return (tok * mask).sum(1) / mask.sum(1).clamp(min=1)
