"""Turns (image, prompt, target) triples into model inputs for the built-in VLM.

The image comes first, then the prompt, then the target and EOS. An image is
its placeholders alone, or, with an ``image_layout`` (word-anchored tokens),
each grid cell's place in words before its placeholders, as text:
``top left: <img><img><img>, top middle: <img><img><img>, ... bottom right: <img><img><img>.``
(as Idefics3 writes ``<row_1_col_1>`` before each tile), so the tokens read
like the text "top left: small red circle, top middle: nothing, ..."; with
``cell_places="around"`` the place is written after the tokens too
("top left: <img><img><img> (top left), ..."; ``cell_text``), and with ``cell_places="bare"``
before and after without the colon and brackets ("top left <img><img><img> top left, ...": 70 tokens
for a 3 x 3 grid against around's 89).
Padding goes on one side of the *whole* sequence (right for training, left
for generation), so positions derived from the attention mask agree in
training and in ``generate``. Labels are built explicitly: SmolLM2's pad
token is its EOS, so "label = id != pad" would mask the EOS and the model
would never learn to stop.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase, ProcessorMixin

from ..errors import UserError

PROCESSOR_FILE = "illume_processor.json"


# where the layout writes each cell's place: before its tokens, or before and after them, with a colon
# and brackets (around) or bare (cell_text)
CELL_PLACES = ("before", "around", "bare")
IMAGE_MARK = "<image>"  # where a rendered chat puts the image (never tokenized: split on before encoding)
COUNT_LABEL = "objects:"  # written before the count token (model.count_token): "... (bottom right). objects: <n>."


def check_cell_places(value: str) -> str:
    """``value`` if it is one of CELL_PLACES, else a ValueError naming them."""
    if value not in CELL_PLACES:
        raise ValueError(f"cell_places must be one of {', '.join(CELL_PLACES)}, not {value!r}")
    return value


def cell_text(places: list[str], words: list[str], cell_places: str = "before", count: str | None = None) -> str:
    """The text an image's tokens stand for, each cell's place and words as the processor lays them out
    ("top left: small red circle, ..."; around, "top left: small red circle (top left), ..."; bare,
    "top left small red circle top left, ..."); with ``count`` (a number word), then the count token's
    sentence (" objects: three.")."""
    text = ", ".join(_place_before(p, cell_places) + " " + w + _place_after(p, cell_places)
                     for p, w in zip(places, words)) + "."
    return text + (f" {COUNT_LABEL} {count}." if count is not None else "")


def _place_before(place: str, cell_places: str) -> str:
    return place if cell_places == "bare" else place + ":"


def _place_after(place: str, cell_places: str) -> str:
    return {"before": "", "around": f" ({place})", "bare": f" {place}"}[cell_places]


class IllumeVLMProcessor(ProcessorMixin):
    """The built-in VLM's processor. A ``ProcessorMixin``, so trainers that take a Hugging Face
    processor (TRL's GRPO and RLOO) take it: ``apply_chat_template`` renders a conversation in the
    built-in prompt format (the image, then the text of each turn, no role markers: the format
    warm-up and fine-tuning train on), and ``__call__(text=..., images=...)`` reads that text back,
    the image mark becoming the image's tokens."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, image_size: int, image_tokens: int,
                 image_token_id: int, max_length: int = 128, image_layout: list[str] | None = None,
                 cell_places: str = "before", count_token: bool = False):
        super().__init__(tokenizer)
        self.image_size = image_size
        self.image_tokens = image_tokens
        self.image_token_id = image_token_id
        self.max_length = max_length
        self.image_layout = list(image_layout) if image_layout else None
        self.cell_places = check_cell_places(cell_places)
        self.count_token = bool(count_token)  # the image ends with " objects: <count token>."
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.image_ids = self._image_ids()

    def _image_ids(self) -> list[int]:
        """The token ids an image stands for: placeholders, after place labels where there is a layout."""
        if not self.image_layout:
            return [self.image_token_id] * self.image_tokens
        per_cell, rest = divmod(self.image_tokens - int(self.count_token), len(self.image_layout))
        if rest:
            raise ValueError(f"{self.image_tokens} image tokens do not divide among {len(self.image_layout)} places")
        ids: list[int] = []
        last = len(self.image_layout) - 1
        for i, place in enumerate(self.image_layout):
            ids += self.encode(("" if i == 0 else " ") + _place_before(place, self.cell_places))
            ids += [self.image_token_id] * per_cell
            ids += self.encode(_place_after(place, self.cell_places) + ("." if i == last else ","))
        if self.count_token:
            ids += self.encode(" " + COUNT_LABEL) + [self.image_token_id] + self.encode(".")
        return ids

    @property
    def eos_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    # -- images ---------------------------------------------------------------------
    def load_image(self, path: str) -> Image.Image:
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except FileNotFoundError:
            raise UserError(f"image {path} does not exist") from None
        except OSError as exc:
            raise UserError(f"image {path} cannot be read: {exc}") from None

    def pixel_values(self, images: list[str | Image.Image]) -> torch.Tensor:
        """RGB 0..255 resized to image_size, normalised as (x - 127) / 128 (EfficientNet-Lite)."""
        arrays = []
        for im in images:
            img = self.load_image(im) if isinstance(im, (str, Path)) else im.convert("RGB")
            img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
            arrays.append(np.asarray(img, dtype=np.float32))
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return (x - 127.0) / 128.0

    # -- text -----------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def build(self, prompts: list[str], has_image: list[bool], targets: list[str] | None = None,
              padding_side: str = "right", target_weights: list[float] | None = None) -> dict[str, torch.Tensor]:
        """Token ids (with image placeholders), attention mask and, with targets, labels."""
        rows, label_rows = [], []
        for i, prompt in enumerate(prompts):
            image = self.image_ids if has_image[i] else []
            ids = self.encode(prompt)
            labels = [-100] * len(ids)
            if targets is not None:
                tgt = self.encode(targets[i]) + [self.eos_token_id]
                ids, labels = ids + tgt, labels + tgt
            keep = max(1, self.max_length - len(image))  # keep the image and the end (the target)
            rows.append(image + ids[-keep:])
            label_rows.append([-100] * len(image) + labels[-keep:])
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (ids, lab) in enumerate(zip(rows, label_rows)):
            sl = slice(0, len(ids)) if padding_side == "right" else slice(width - len(ids), width)
            input_ids[i, sl] = torch.tensor(ids)
            attention[i, sl] = 1
            labels[i, sl] = torch.tensor(lab)
        out = {"input_ids": input_ids, "attention_mask": attention}
        if targets is not None:
            out["labels"] = labels
            if target_weights is not None:
                out["weights"] = torch.tensor(target_weights, dtype=torch.float32)
        return out

    # -- chats (the processor interface of Hugging Face trainers) -----------------------------
    def apply_chat_template(self, conversation, chat_template=None, add_generation_prompt: bool = True,
                            tokenize: bool = False, return_dict: bool = False, tools=None, **kwargs):
        """One conversation (a list of messages) or a list of them, rendered as the built-in prompt:
        each turn's parts in order, an image part as its tokens. ``tokenize=False``: the text with
        ``<image>`` marks; ``tokenize=True, return_dict=True``: unpadded ``input_ids``, the attention
        mask and, where there are images, ``pixel_values``."""
        if chat_template is not None or tools:
            raise ValueError("the built-in VLM has one prompt format: no other chat template, no tools")
        single = bool(conversation) and isinstance(conversation[0], dict)
        convs = [conversation] if single else list(conversation)
        texts, images = [], []
        for conv in convs:
            parts, imgs = [], []
            for message in conv:
                content = message["content"]
                for part in ([{"type": "text", "text": content}] if isinstance(content, str) else content):
                    if part["type"] == "image":
                        parts.append(IMAGE_MARK)
                        imgs.append(part.get("image", part.get("url", part.get("path"))))
                    elif part["type"] == "text":
                        parts.append(part["text"])
                    else:
                        raise ValueError(f"the built-in VLM reads text and images, not {part['type']!r}")
            texts.append("".join(parts))
            images.append(imgs)
        if not tokenize:
            return texts[0] if single else texts
        out = self(text=texts, images=images if any(images) else None, padding=False)
        return out if return_dict else out["input_ids"]

    def __call__(self, images=None, text=None, padding: bool | str = True, return_tensors: str | None = None,
                 **kwargs) -> BatchFeature:
        """Texts with ``<image>`` marks (and per text its images, in order) -> token ids with each
        image's tokens in place of its mark; padded on the tokenizer's padding side when asked
        (``padding=False``: lists of ids)."""
        texts = [text] if isinstance(text, str) else list(text)
        if images is not None and not isinstance(images, (list, tuple)):
            images = [[images]]
        per_text = [list(im) if isinstance(im, (list, tuple)) else ([] if im is None else [im])
                    for im in (images or [[]] * len(texts))]
        if len(per_text) != len(texts):
            raise ValueError(f"{len(texts)} texts but images for {len(per_text)}")
        rows, flat = [], []
        for t, imgs in zip(texts, per_text):
            pieces = t.split(IMAGE_MARK)
            if len(pieces) - 1 != len(imgs):
                raise ValueError(f"a text has {len(pieces) - 1} image mark(s) but {len(imgs)} image(s): {t[:60]!r}")
            ids: list[int] = []
            for k, piece in enumerate(pieces):
                if k:
                    ids += self.image_ids
                ids += self.encode(piece) if piece else []
            rows.append(ids)
            flat += imgs
        data: dict = {"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]}
        if padding:
            width = max(len(r) for r in rows)
            left = self.tokenizer.padding_side == "left"
            pad = lambda r, v: ([v] * (width - len(r)) + r) if left else (r + [v] * (width - len(r)))  # noqa: E731
            data = {"input_ids": [pad(r, self.pad_token_id) for r in rows],
                    "attention_mask": [pad(m, 0) for m in data["attention_mask"]]}
            data = {k: torch.tensor(v) for k, v in data.items()}
        if flat:
            data["pixel_values"] = self.pixel_values(flat)
        return BatchFeature(data)

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    # -- files ----------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        self.tokenizer.save_pretrained(path)
        (path / PROCESSOR_FILE).write_text(json.dumps({
            "image_size": self.image_size, "image_tokens": self.image_tokens,
            "image_token_id": self.image_token_id, "max_length": self.max_length,
            "image_layout": self.image_layout, "cell_places": self.cell_places,
            **({"count_token": True} if self.count_token else {})}, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "IllumeVLMProcessor":
        path = Path(path)
        spec = json.loads((path / PROCESSOR_FILE).read_text())
        return cls(AutoTokenizer.from_pretrained(path), **spec)
