"""What every VLM offers the stages above it."""
from __future__ import annotations

import abc
import re
from typing import Sequence

import torch

from ..errors import UserError

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


def bf16_native(device: torch.device) -> bool:
    """Whether this device runs bfloat16 matmuls natively (a CPU with AVX512-BF16 or AMX, a GPU with bf16)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 where ``device`` runs it natively, else fp32; ``fp32`` and ``bf16`` as named."""
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    return precision


class VLM(abc.ABC):
    name: str = "vlm"
    device: torch.device
    # generation (sampling, evaluation) under bfloat16 autocast, or fp32; set by ``set_precision``
    inference_precision: str = "fp32"

    def set_precision(self, precision: str) -> "VLM":
        """``fp32``, ``bf16``, or ``auto`` (bf16 where the device runs it natively, else fp32)."""
        if precision not in ("auto", "fp32", "bf16"):
            raise UserError(f"model.precision: unknown value '{precision}' (choose one of auto, fp32, bf16)")
        self.inference_precision = resolve_precision(precision, self.device)
        return self

    def inference_autocast(self):
        """The autocast context generation runs in (a no-op for fp32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.inference_precision == "bf16")

    # where several items of a batch are about one image, read its tokens once for all of them (the
    # built-in VLM; the same losses up to float rounding, so off unless a recipe asks: a checkpoint
    # trained without it stays bit-identical). Other VLMs read each row whole and ignore it.
    share_images: bool = False

    @abc.abstractmethod
    def loss(self, items: Sequence[Item], weights: Sequence[float] | None = None) -> torch.Tensor:
        """Mean over examples (weighted) of the token-mean loss on the targets."""

    def generate(self, items: Sequence[Item], max_new_tokens: int = 24, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int = 0, num_return_sequences: int = 1) -> list[list[str]]:
        """For each (image, prompt) item, ``num_return_sequences`` continuations."""
        out = self.generate_scored(items, max_new_tokens, do_sample, temperature, top_k, num_return_sequences)
        return [[text for text, _ in row] for row in out]

    @abc.abstractmethod
    def target_logprobs(self, items: Sequence[Item]) -> list[float]:
        """Per item, the summed log-probability of its target (and the EOS after it) given the prompt."""

    @abc.abstractmethod
    def generate_scored(self, items: Sequence[Item], max_new_tokens: int = 24, do_sample: bool = False,
                        temperature: float = 1.0, top_k: int = 0,
                        num_return_sequences: int = 1) -> list[list[tuple[str, float]]]:
        """Like ``generate``, with each continuation's log-probability under the model."""

    def sample_groups(self, items: Sequence[Item], temperatures: Sequence[float], k: int, max_new_tokens: int = 24,
                      top_k: int = 0, seed: int = 0) -> list[list[list[tuple[str, float]]]]:
        """Top-k samples at each temperature: ``[temperature][item][k]`` (text, log-probability under the
        raw logits). The draws depend only on ``seed`` and these items, never on what ran before, so
        a batch's samples are the same whichever process samples it. This default calls
        ``generate_scored`` once per temperature; the built-in VLM reads each prompt once for all."""
        out = []
        for j, temp in enumerate(temperatures):
            torch.manual_seed(seed + j)
            out.append(self.generate_scored(items, max_new_tokens=max_new_tokens, do_sample=True, temperature=temp,
                                            top_k=top_k, num_return_sequences=k))
        return out

    def sample_group_batches(self, batches: Sequence[Sequence[Item]], seeds: Sequence[int],
                             temperatures: Sequence[float], k: int, max_new_tokens: int = 24,
                             top_k: int = 0) -> list[list[list[list[tuple[str, float]]]]]:
        """``sample_groups`` of each batch with its own seed (the built-in VLM decodes them together)."""
        return [self.sample_groups(items, temperatures, k, max_new_tokens=max_new_tokens, top_k=top_k, seed=seed)
                for items, seed in zip(batches, seeds)]

    model: torch.nn.Module
    processor: object

    def trainable_model(self) -> torch.nn.Module:
        """The module PEFT wraps and optimisers see."""
        return self.model

    def save(self, path) -> None:
        """The whole model and its processor (merge adapters first with ``train.lora.merge_lora``)."""
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)

    def answer(self, examples: Sequence[Example], batch_size: int = 128, template: str = ANSWER_TEMPLATE) -> list[str]:
        """Greedy short answers (a progress bar when there is more than one batch; the batches shared
        out among processes when there are several). Batches of 128 (32 before): on a CPU the val
        questions, 3 an image, ran about as fast (1.02x) and grounding questions, about 12 an image,
        1.33x faster in batches of 128 (benchmarks/eval_batch.py): each image is read once a batch."""
        from tqdm.auto import tqdm

        from ..distributed import processes

        procs = processes()
        starts = list(range(0, len(examples), batch_size))
        bar = tqdm(total=len(starts), desc="answering", unit="batch", leave=False,
                   disable=len(examples) <= batch_size or not procs.is_main)

        def one(start: int) -> list[str]:
            chunk = examples[start:start + batch_size]
            gens = self.generate([(ex.image, answer_prompt(ex, template), None) for ex in chunk], max_new_tokens=6)
            procs.advance(bar, 1)
            return [parse_answer(g[0]) for g in gens]

        out = [a for part in procs.map(one, starts) for a in part]
        bar.close()
        return out


def sequence_logprobs(tokens: torch.Tensor, logits: Sequence[torch.Tensor], eos_token_id: int | Sequence[int]) -> list[float]:
    """Sum of log p(token) under the model's raw logits for each generated row, up to and
    including the first EOS (any of them, when several end a reply; what follows is padding)."""
    if not logits:
        return [0.0] * tokens.shape[0]
    steps = torch.stack(list(logits), dim=1).float()  # [rows, steps, vocab]
    tokens = tokens[:, : steps.shape[1]]
    lp = torch.log_softmax(steps, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    ends = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id), device=tokens.device)
    is_eos = torch.isin(tokens, ends).int()
    after_eos = (is_eos.cumsum(1) - is_eos) > 0
    return lp.masked_fill(after_eos, 0.0).sum(1).tolist()


def generation_kwargs(max_new_tokens: int, do_sample: bool, temperature: float, top_k: int,
                      num_return_sequences: int, pad_token_id: int, eos_token_id: int | list[int] | None) -> dict:
    """Arguments for ``generate``: top-k sampling at a temperature, or greedy; raw logits kept for log-probs."""
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_return_sequences=num_return_sequences,
                  pad_token_id=pad_token_id, return_dict_in_generate=True, output_logits=True)
    if eos_token_id is not None:
        kwargs["eos_token_id"] = eos_token_id
    if do_sample:
        kwargs.update(temperature=temperature, top_k=top_k or None, top_p=None)
    else:
        kwargs.update(temperature=None, top_k=None, top_p=None)
    return kwargs


def group_rows(flat: list, n: int) -> list[list]:
    return [flat[i * n:(i + 1) * n] for i in range(len(flat) // n)]


def weighted_mean(per_example: torch.Tensor, weights: Sequence[float] | None) -> torch.Tensor:
    """The batch loss: per-example losses averaged, weighted when weights are given."""
    if weights is None:
        return per_example.mean()
    w = torch.tensor(list(weights), dtype=per_example.dtype, device=per_example.device)
    return (per_example * w).sum() / w.sum()
