"""Any Hugging Face image-text-to-text model in a local folder, behind the VLM interface.

The folder holds the model and its processor (``save_pretrained`` of both).
The processor's image token (``processor.image_token``) is put before the
prompt of each item that has an image; text-only items have none.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..errors import UserError
from .base import VLM, Item, generation_kwargs, group_rows, sequence_logprobs, weighted_mean
from .builtin import default_device


class HFVLM(VLM):
    def __init__(self, model, processor, device=None, path: str | None = None):
        self.device = default_device(str(device) if device else None)
        self.model = model.to(self.device)
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.image_token = getattr(processor, "image_token", None)
        self.path = path
        self.name = Path(path).name if path else type(model).__name__

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "HFVLM":
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
            processor = AutoProcessor.from_pretrained(path)
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"model checkpoint {path} cannot be loaded as an image-text-to-text model: {exc}") from None
        model.eval()
        return cls(model, processor, device, str(path))

    def _encode(self, items: Sequence[Item], with_targets: bool, padding_side: str) -> dict:
        texts, images = [], []
        for img, prompt, target in items:
            text = prompt + ((target or "") + self.tokenizer.eos_token if with_targets else "")
            if img is not None:
                if self.image_token is None:
                    raise UserError(f"{self.name}: the processor has no image token, so it cannot take images")
                text = self.image_token + text
                try:
                    with Image.open(img) as im:
                        images.append(im.convert("RGB"))
                except OSError as exc:
                    raise UserError(f"image {img} cannot be read: {exc}") from None
            texts.append(text)
        self.tokenizer.padding_side = padding_side
        kwargs = dict(text=texts, return_tensors="pt", padding=True)
        if images:
            if len(images) != len(texts):
                raise UserError(f"{self.name}: a batch must be all images or all text for this processor")
            kwargs["images"] = images
        batch = self.processor(**kwargs) if images or self.tokenizer is not self.processor else self.tokenizer(texts, return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in batch.items()}

    def loss(self, items: Sequence[Item], weights: Sequence[float] | None = None) -> torch.Tensor:
        tok, mask = self._target_token_losses(items)
        return weighted_mean((tok * mask).sum(1) / mask.sum(1).clamp(min=1), weights)

    def target_logprobs(self, items: Sequence[Item]) -> list[float]:
        tok, mask = self._target_token_losses(items)
        return (-(tok * mask).sum(1)).tolist()

    def _target_token_losses(self, items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per token, its cross-entropy and whether it is a target token (the target and its EOS)."""
        batch = self._encode(items, True, "right")
        prompt_only = self._encode([(i, p, None) for i, p, _ in items], False, "right")
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        for row, n in enumerate(prompt_only["attention_mask"].sum(1).tolist()):
            labels[row, :n] = -100
        # the EOS after the target is a real label even when it is also the pad token
        for row, n in enumerate(batch["attention_mask"].sum(1).tolist()):
            labels[row, n - 1] = batch["input_ids"][row, n - 1]
        logits = self.model(**batch).logits[:, :-1].float()
        targets = labels[:, 1:]
        tok = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                ignore_index=-100, reduction="none").view(targets.shape)
        return tok, (targets != -100).float()

    @torch.no_grad()
    def generate_scored(self, items: Sequence[Item], max_new_tokens: int = 24, do_sample: bool = False,
                        temperature: float = 1.0, top_k: int = 0,
                        num_return_sequences: int = 1) -> list[list[tuple[str, float]]]:
        batch = self._encode(items, False, "left")
        kwargs = generation_kwargs(max_new_tokens, do_sample, temperature, top_k, num_return_sequences,
                                   self.tokenizer.pad_token_id, self.tokenizer.eos_token_id)
        with self.inference_autocast():
            out = self.model.generate(**batch, **kwargs)
        new = out.sequences[:, batch["input_ids"].shape[1]:]
        texts = [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        logprobs = sequence_logprobs(new, out.logits, self.tokenizer.eos_token_id)
        return group_rows(list(zip(texts, logprobs)), num_return_sequences)
