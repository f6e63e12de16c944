"""Any Hugging Face image-text-to-text model in a local folder, behind the VLM interface.

The folder holds the model and its processor (``save_pretrained`` of both). Prompts go through the
processor's chat template, as the model was instruction-tuned to read them: the built-in prompt
``Q: {question} A: {reply so far}`` becomes the user's turn (the image, then ``Q: {question}``) and
an assistant turn begun with the reply so far (``giraffe, seeing that``; none for the answer
prompt); a target continues the assistant turn, and only the assistant's tokens are labels (the
turn's end included, so the model learns to stop). Each family's own image tokens (LLaVA's
``<image>``, Qwen2-VL's vision start/pad/end, Idefics3's tiles) are the processor's business.
Generation pads on the left and stops at any of the model's end tokens (the end of a turn too).

PaliGemma has no chat template: it reads a prefix (``<image>`` tokens, BOS, the task, a newline;
attended both ways) and writes a suffix (attended causally; ``token_type_ids`` tell them apart).
The user's text is its prefix, the reply (begun, then the target) its suffix, as its processor's
``suffix=`` builds it for fine-tuning.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..errors import UserError
from .base import VLM, Item, generation_kwargs, group_rows, sequence_logprobs, weighted_mean
from .builtin import default_device

# families tested offline with tiny random models of their own classes (tests/test_families.py)
TESTED_FAMILIES = ("llava", "llava_next", "idefics3", "smolvlm", "qwen2_vl", "qwen2_5_vl", "gemma3", "paligemma")
# families that read a prefix and write a suffix (no chat template)
PREFIX_LM_FAMILIES = ("paligemma",)


def chat_turns(prompt: str) -> tuple[str, str]:
    """``"Q: what is it? A: giraffe, seeing that"`` -> the user's text ``"Q: what is it?"`` and the
    assistant's reply so far ``"giraffe, seeing that"`` (empty for ``"Q: what is it? A:"``)."""
    k = prompt.rfind(" A:")
    if k < 0:
        return prompt.strip(), ""
    return prompt[:k].strip(), prompt[k + 3:].strip()


def chat_messages(prompt: str, has_image: bool, reply: str | None = None) -> list[dict]:
    """The conversation of a prompt: the user's turn (the image first), then the assistant's reply
    (``reply``, else the reply so far) when there is one."""
    user, so_far = chat_turns(prompt)
    messages = [{"role": "user", "content": ([{"type": "image"}] if has_image else [])
                 + [{"type": "text", "text": user}]}]
    reply = so_far if reply is None else reply
    if reply:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": reply}]})
    return messages


class HFVLM(VLM):
    def __init__(self, model, processor, device=None, path: str | None = None):
        self.device = default_device(str(device) if device else None)
        self.model = model.to(self.device)
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.path = path
        self.name = Path(path).name if path else type(model).__name__
        self.prefix_lm = getattr(model.config, "model_type", None) in PREFIX_LM_FAMILIES
        if not self.prefix_lm and not getattr(processor, "chat_template", None):
            raise UserError(f"{path or self.name}: the processor has no chat template, so illume-rm cannot write "
                            "prompts the way this model reads them; give it one (a chat_template.jinja beside "
                            "the processor's files, or processor.chat_template = ... then save_pretrained)")
        # every token that ends a reply: the tokenizer's EOS and the model's own (the end of a turn)
        ends = getattr(model.generation_config, "eos_token_id", None)
        ends = [] if ends is None else ([ends] if isinstance(ends, int) else list(ends))
        self.end_ids = list(dict.fromkeys([self.tokenizer.eos_token_id, *ends]))

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "HFVLM":
        import json

        from transformers import AutoModelForImageTextToText, AutoProcessor

        family = json.loads((Path(path) / "config.json").read_text()).get("model_type")
        try:
            model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
            try:
                processor = AutoProcessor.from_pretrained(path)
            except (OSError, ValueError, KeyError, ImportError) as exc:
                if not (re.search(r"video ?processor|torchvision", str(exc), re.I) and not _has_torchvision()):
                    raise
                try:
                    processor = image_only_processor(Path(path), family)
                except (OSError, ValueError, KeyError, ImportError, TypeError) as half:
                    raise UserError(f"model checkpoint {path}: the processor of a {family!r} model holds a video "
                                    "processor, which needs torchvision, and its image half alone could not be "
                                    f"built ({str(half).splitlines()[0][:200]}); install the torchvision build "
                                    "that matches your torch") from None
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise UserError(f"model checkpoint {path}: a {family!r} model cannot be loaded as an image-text-to-text "
                            f"model ({str(exc).splitlines()[0][:200]}); families tested here: "
                            f"{', '.join(TESTED_FAMILIES)}") from None
        model.eval()
        return cls(model, processor, device, str(path))

    def _render(self, messages: list[dict], reply_done: bool) -> str:
        """A conversation as the chat template writes it: closed after a whole reply, else open for
        the model to continue (its reply begun, or the assistant's turn about to start)."""
        last_is_reply = messages[-1]["role"] == "assistant"
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=not last_is_reply,
            continue_final_message=last_is_reply and not reply_done)

    def _encode(self, items: Sequence[Item], with_targets: bool, padding_side: str) -> dict:
        if self.prefix_lm:
            return self._encode_prefix_lm(items, with_targets, padding_side)
        texts, images = [], []
        for img, prompt, target in items:
            if with_targets:
                reply = (chat_turns(prompt)[1] + (target or "")).strip()
                texts.append(self._render(chat_messages(prompt, img is not None, reply), reply_done=True))
            else:
                texts.append(self._render(chat_messages(prompt, img is not None), reply_done=False))
            if img is not None:
                images.append([_read_image(img)])  # per text its images (Gemma3 and Idefics3 ask for it)
        self.tokenizer.padding_side = padding_side
        kwargs = dict(text=texts, return_tensors="pt", padding=True)
        if images:
            if len(images) != len(texts):
                raise UserError(f"{self.name}: a batch must be all images or all text for this processor")
            kwargs["images"] = images
        batch = self.processor(**kwargs) if images or self.tokenizer is not self.processor else self.tokenizer(texts, return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in batch.items()}

    def _encode_prefix_lm(self, items: Sequence[Item], with_targets: bool, padding_side: str) -> dict:
        """PaliGemma: prefix ``<image>{user text}``, suffix the reply (begun, then the target) and its
        end, which a prompt (``with_targets`` False) leaves off so the model writes on."""
        prefixes, suffixes, images = [], [], []
        image_token = getattr(self.processor, "image_token", "<image>")
        for img, prompt, target in items:
            if img is None:
                raise UserError(f"{self.name}: a {self.model.config.model_type} model reads an image with every "
                                "prompt; this example has none")
            user, so_far = chat_turns(prompt)
            prefixes.append(image_token + user)
            suffixes.append((so_far + (target or "")).strip() if with_targets else so_far)
            images.append([_read_image(img)])
        self.tokenizer.padding_side = padding_side
        batch = self.processor(text=prefixes, images=images, suffix=suffixes, return_tensors="pt", padding=True)
        batch = {k: v for k, v in batch.items() if k != "labels"}
        if not with_targets:  # each row's last real token is the end the processor appended to the suffix
            if padding_side == "left":
                batch = {k: v[:, :-1] if k in ("input_ids", "attention_mask", "token_type_ids") else v
                         for k, v in batch.items()}
            else:
                last = batch["attention_mask"].sum(1) - 1
                rows = torch.arange(len(items))
                batch["attention_mask"][rows, last] = 0
                batch["input_ids"][rows, last] = self.tokenizer.pad_token_id
        return {k: v.to(self.device) for k, v in batch.items()}

    def loss(self, items: Sequence[Item], weights: Sequence[float] | None = None) -> torch.Tensor:
        tok, mask = self._target_token_losses(items)
        return weighted_mean((tok * mask).sum(1) / mask.sum(1).clamp(min=1), weights)

    def target_logprobs(self, items: Sequence[Item]) -> list[float]:
        tok, mask = self._target_token_losses(items)
        return (-(tok * mask).sum(1)).tolist()

    def _target_token_losses(self, items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per token, its cross-entropy and whether it is a target token (the reply's, its end included)."""
        batch, labels = self.labelled(items)
        logits = self.model(**batch).logits[:, :-1].float()
        targets = labels[:, 1:]
        tok = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                ignore_index=-100, reduction="none").view(targets.shape)
        return tok, (targets != -100).float()

    def labelled(self, items: Sequence[Item]) -> tuple[dict, torch.Tensor]:
        """The batch of whole conversations and its labels: the assistant's tokens after the prompt
        (the reply begun is prompt), -100 elsewhere."""
        batch = self._encode(items, True, "right")
        prompt_only = self._encode([(i, p, None) for i, p, _ in items], False, "right")
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        for row, n in enumerate(prompt_only["attention_mask"].sum(1).tolist()):
            labels[row, :n] = -100
        # the end of the reply is a real label even when it is also the pad token
        for row, n in enumerate(batch["attention_mask"].sum(1).tolist()):
            labels[row, n - 1] = batch["input_ids"][row, n - 1]
        return batch, labels

    @torch.no_grad()
    def generate_scored(self, items: Sequence[Item], max_new_tokens: int = 24, do_sample: bool = False,
                        temperature: float = 1.0, top_k: int = 0,
                        num_return_sequences: int = 1) -> list[list[tuple[str, float]]]:
        batch = self._encode(items, False, "left")
        kwargs = generation_kwargs(max_new_tokens, do_sample, temperature, top_k, num_return_sequences,
                                   self.tokenizer.pad_token_id, self.end_ids)
        with self.inference_autocast():
            out = self.model.generate(**batch, **kwargs)
        new = out.sequences[:, batch["input_ids"].shape[1]:]
        texts = [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        logprobs = sequence_logprobs(new, out.logits, self.end_ids)
        return group_rows(list(zip(texts, logprobs)), num_return_sequences)


def image_only_processor(folder: Path, family: str | None):
    """The folder's processor without its video half, where torchvision (which every video processor
    needs) does not load: illume-rm sends images only. The family's own processor class, given the
    folder's image processor (its PIL backend), tokenizer, chat template and settings; the settings of
    its video processor that the chat template reads for any conversation (SmolVLM's ``num_frames``
    and ``fps``) come from the folder's ``video_preprocessor_config.json`` as plain values."""
    import json
    from types import SimpleNamespace

    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    def read(name: str) -> dict:
        f = folder / name
        return json.loads(f.read_text()) if f.is_file() else {}

    settings = read("processor_config.json")
    name = settings.get("processor_class") or PROCESSOR_MAPPING_NAMES.get(family or "")
    cls = getattr(transformers, name or "", None)
    if cls is None:
        raise ValueError(f"no processor class for the family {family!r} (processor_config.json names none)")
    template = settings.get("chat_template") or read("chat_template.json").get("chat_template")
    if (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    template = template or getattr(tokenizer, "chat_template", None)
    video = read("video_preprocessor_config.json")
    sampling = video.get("video_sampling") or {}
    frames = {"num_frames": video.get("num_frames", sampling.get("max_frames")),
              "fps": video.get("fps", sampling.get("fps"))}
    # the processor's own settings (SmolVLM's image_seq_len), not its parts' configs
    kwargs = {k: v for k, v in settings.items() if k not in ("processor_class", "chat_template", "auto_map")
              and not isinstance(v, dict)}

    class ImageOnly(cls):
        @classmethod
        def get_attributes(klass):
            return [a for a in super().get_attributes() if a != "video_processor"]

        def __init__(self, image_processor, tokenizer, **kw):
            super().__init__(image_processor=image_processor, tokenizer=tokenizer, video_processor=None, **kw)
            self.video_processor = SimpleNamespace(**frames)

    ImageOnly.__name__ = ImageOnly.__qualname__ = cls.__name__
    return ImageOnly(AutoImageProcessor.from_pretrained(folder), tokenizer, chat_template=template, **kwargs)


def _has_torchvision() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or a build that does not load against this torch
        return False
    return True


def _read_image(path: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as exc:
        raise UserError(f"image {path} cannot be read: {exc}") from None
