"""Per-cell supervision of the built-in VLM's word-anchored image tokens, from the scene graph.

Each grid cell's image tokens are a softmax over its slots' words (size,
colour, shape, or nothing); the scene graph says which words are true of the
cell, as region descriptions supervise a VLM's pretraining. Two uses:

- ``align_projector``: before the language model sees an image, the
  projector alone learns these targets from the cached features (seconds on a
  CPU), so the LM's first image tokens are already close to the words it reads;
- ``cell_loss``: the same cross-entropy, added to every warm-up step, keeps
  the tokens true while the LM's loss also trains the projector.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import torch
from torch import nn

from ..data import cell_words
from ..records import Example


def has_word_tokens(vlm) -> bool:
    cfg = getattr(getattr(vlm, "model", None), "config", None)
    return getattr(cfg, "token_kind", None) == "words"


def cell_targets(vlm, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """{image path: [cells, slots] target index (0: nothing, i: the slot's i-th word)} for each image
    whose example carries a scene graph on the model's grid; empty for a model without word tokens."""
    if not has_word_tokens(vlm):
        return {}
    cfg = vlm.model.config
    index = [{w: i + 1 for i, w in enumerate(slot)} for slot in cfg.visual_words]
    out: dict[str, torch.Tensor] = {}
    for ex in examples:
        if not ex.image or ex.image in out:
            continue
        cells = cell_words(ex, cfg.image_grid)
        if cells is None or any(len(c) != len(index) for c in cells):
            continue
        try:
            out[ex.image] = torch.tensor([[0 if w is None else index[s][w] for s, w in enumerate(c)] for c in cells])
        except KeyError:  # a word the model's vocabulary lacks: no target for this image
            continue
    return out


def cell_loss(vlm, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each slot's word logits against its target. ``features`` [B, cells, 1280],
    ``targets`` [B, cells, slots]."""
    logits = vlm.model.slot_logits(features)
    losses = [nn.functional.cross_entropy(lg.flatten(0, 1).float(), targets[..., s].flatten().to(lg.device))
              for s, lg in enumerate(logits)]
    return torch.stack(losses).mean()


@torch.no_grad()
def cell_accuracy(vlm, targets: dict[str, torch.Tensor], batch_size: int = 256) -> dict[str, float]:
    """Share of cells whose every slot's most likely word is the true one: occupied cells, empty cells;
    with a count token, the share of images whose count token's most likely number is the number of
    occupied cells."""
    paths = list(targets)
    hit = {"occupied": [0, 0], "empty": [0, 0]}
    count = vlm.model.config.count_tokens
    if count:
        hit["count"] = [0, 0]
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        feats = vlm.features.get(chunk)
        logits = vlm.model.slot_logits(feats)
        preds = torch.stack([lg.argmax(-1) for lg in logits], dim=-1).cpu()
        gold = torch.stack([targets[p] for p in chunk])
        right = (preds == gold).all(-1)
        empty = (gold[..., :-1] == 0).all(-1)
        for name, mask in (("occupied", ~empty), ("empty", empty)):
            hit[name][0] += int(right[mask].sum())
            hit[name][1] += int(mask.sum())
        if count:
            said = vlm.model.count_said(logits).cpu()
            hit["count"][0] += int((said == (~empty).sum(-1)).sum())
            hit["count"][1] += len(chunk)
    return {k: (a / b if b else float("nan")) for k, (a, b) in hit.items()}


def align_projector(vlm, train: Sequence[Example], steps: int = 300, lr: float = 3e-3, batch_size: int = 128,
                    seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """Train the projector alone on the per-cell targets of the training images (features cached);
    returns {"images", "steps", "loss"} (nothing trained when no image has targets)."""
    targets = cell_targets(vlm, train)
    if not targets or steps <= 0:
        return {"images": len(targets), "steps": 0}
    paths = list(targets)
    feats = vlm.features.get(paths)
    gold = torch.stack([targets[p] for p in paths]).to(feats.device)
    params = list(vlm.model.projector.parameters())
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    vlm.model.projector.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        idx = torch.tensor(rng.sample(range(len(paths)), min(batch_size, len(paths))))
        loss = cell_loss(vlm, feats[idx], gold[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for p, w in zip(params, was):
        p.requires_grad_(w)
    log(f"image tokens aligned to the scene graph's words: {steps} steps on {len(paths)} images, "
        f"loss {loss.item():.3f}")
    return {"images": len(paths), "steps": steps, "loss": loss.item()}
