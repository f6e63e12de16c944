"""Warm-up: teach the built-in VLM to see and answer before ILLUME tunes its rationales.

As MAGMA was pretrained on captions before ILLUME tuned it: steps of
captions, of answer-only questions and, where the data has them, of grounding
questions (what is where, as region descriptions serve VLM pretraining);
never reference explanations. Projection + LoRA train (a projection alone
does not learn to see here). The result is a merged checkpoint folder,
cached by recipe, so a second run skips it.
"""
from __future__ import annotations

import math
import os
import shutil
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch
from tqdm.auto import tqdm

from ..errors import UserError
from ..records import Example, write_json
from ..vlm.base import ANSWER_TEMPLATE, VLM, Item, answer_prompt
from ..evaluate.accuracy import accuracy_by_family, chance_by_family
from .lora import LoraConfig, add_lora, count_trainable, merge_lora

CAPTION_PROMPT = "Describe the image:"


@dataclass
class WarmupConfig:
    steps: int = 120
    batch_size: int = 16
    lr: float = 1e-3
    projector_lr: float = 2e-3
    warmup_steps: int = 10
    caption_fraction: float = 0.5      # share of steps that train on captions; a step is all of one kind,
                                       # so short questions are never padded to caption length
    grounding_fraction: float = 0.0    # share of steps on grounding questions (what is where), where the data has them
    eval_examples: int | None = None   # val examples for the before/after accuracy (None: the whole split)
    eval_every: int | None = None      # also measure val accuracy every N steps (the curve in warmup.json)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: forward/backward under bfloat16 autocast (weights and
                                                 # Adam stay fp32); benchmarks/warmup_precision.py measures it
    lora: LoraConfig = field(default_factory=LoraConfig)
    # how often each question family is drawn for answer-only steps, relative to its share of the
    # training questions (e.g. {compare: 3, spatial: 3}: three times as often; unnamed families 1)
    family_weights: dict[str, float] | None = field(default=None, metadata={"hash_default": False})
    # learning rate after the warm-up steps: "cosine" decays to 5%, "constant" holds it
    schedule: Literal["cosine", "constant"] = field(default="cosine", metadata={"hash_default": False})

    def __post_init__(self):
        if self.family_weights and any(w < 0 for w in self.family_weights.values()):
            raise UserError(f"warmup.family_weights: weights must be 0 or more, got {self.family_weights}")
        shares = {"caption_fraction": self.caption_fraction, "grounding_fraction": self.grounding_fraction}
        if any(not 0 <= v <= 1 for v in shares.values()) or sum(shares.values()) > 1:
            raise UserError(f"warmup: caption_fraction ({self.caption_fraction}) and grounding_fraction "
                            f"({self.grounding_fraction}) are shares of the steps: each 0 to 1, together at most 1")


def autocast(vlm: VLM, precision: str):
    """bfloat16 autocast on the VLM's device for ``precision == "bf16"``; a no-op for "fp32"."""
    return torch.autocast(vlm.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def warmup_items(train: Sequence[Example]) -> tuple[list[Item], list[Item], list[Item]]:
    """(answer-only items, caption items, grounding items); explanations are never used.

    Captions come from ``meta["caption"]``, grounding questions (what is where) from
    ``meta["grounding"]`` ([question, answer] pairs), each once per image."""
    answers = [(ex.image, answer_prompt(ex), " " + ex.answer) for ex in train]
    seen, captions, grounded = set(), [], []
    for ex in train:
        if not ex.image or ex.image in seen:
            continue
        seen.add(ex.image)
        if ex.meta.get("caption"):
            captions.append((ex.image, CAPTION_PROMPT, " " + ex.meta["caption"]))
        for question, answer in ex.meta.get("grounding") or []:
            grounded.append((ex.image, ANSWER_TEMPLATE.format(question=question), " " + answer))
    return answers, captions, grounded


def family_weights(train: Sequence[Example], weights: dict[str, float] | None) -> list[float] | None:
    """Sampling weight of each training question (in ``warmup_items`` order) from its family's weight;
    None when no weights are set. A named family the data does not have is an error."""
    if not weights:
        return None
    families = {ex.meta.get("family") for ex in train}
    unknown = sorted(set(weights) - families)
    if unknown:
        raise UserError(f"warmup.family_weights: no training question is of family {', '.join(unknown)} "
                        f"(the data has: {', '.join(sorted(str(f) for f in families))})")
    out = [float(weights.get(ex.meta.get("family"), 1.0)) for ex in train]
    if not any(out):
        raise UserError("warmup.family_weights: every question has weight 0")
    return out


def weighted_sample(rng: random.Random, pool: Sequence, weights: Sequence[float], k: int) -> list:
    """k distinct items drawn with probability proportional to weight (fewer if fewer have weight)."""
    keyed = sorted(((rng.random() ** (1.0 / w), i) for i, w in enumerate(weights) if w > 0), reverse=True)
    return [pool[i] for _, i in keyed[:k]]


def evaluate_answers(vlm: VLM, val: Sequence[Example]) -> dict[str, float]:
    return accuracy_by_family(val, vlm.answer(val))


def format_table(before: dict, after: dict | None, chance: dict) -> str:
    fams = ["all"] + sorted(k for k in chance if k != "all")
    head = f"{'family':<10} {'chance':>7} {'before':>7}" + (f" {'after':>7}" if after else "")
    lines = [head, "-" * len(head)]
    for f in fams:
        row = f"{f:<10} {chance.get(f, float('nan')):>7.3f} {before.get(f, float('nan')):>7.3f}"
        if after:
            row += f" {after.get(f, float('nan')):>7.3f}"
        lines.append(row)
    return "\n".join(lines)


def train_warmup(vlm: VLM, train: Sequence[Example], cfg: WarmupConfig, seed: int = 0,
                 log: Callable[[str], None] = print,
                 on_eval: Callable[[int], None] | None = None) -> list[float]:
    """Train in place (LoRA merged back at the end); returns the loss curve. With
    ``cfg.eval_every``, ``on_eval(step)`` runs every that many steps (model in eval mode)."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    answers, captions, grounded = warmup_items(train)
    answer_weights = family_weights(train, cfg.family_weights)
    model = add_lora(vlm, cfg.lora)
    log(f"warm-up: {count_trainable(model):,} trainable parameters, {cfg.steps} steps of {cfg.batch_size}")
    proj = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("projector")]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("projector")]
    opt = torch.optim.AdamW([{"params": rest, "lr": cfg.lr}, {"params": proj, "lr": cfg.projector_lr}],
                            weight_decay=0.0)
    base_lrs = [g["lr"] for g in opt.param_groups]
    losses: list[float] = []
    model.train()
    bar = tqdm(range(cfg.steps), desc="warm-up")
    for step in bar:
        scale = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        if cfg.schedule == "cosine":
            scale *= 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * max(scale, 0.05)
        u = rng.random()
        if captions and u < cfg.caption_fraction:
            pool = captions
        elif grounded and u < cfg.caption_fraction + cfg.grounding_fraction:
            pool = grounded
        else:
            pool = answers
        if pool is answers and answer_weights is not None:
            batch = weighted_sample(rng, answers, answer_weights, cfg.batch_size)
        else:
            batch = rng.sample(pool, min(cfg.batch_size, len(pool)))
        with autocast(vlm, cfg.precision):
            loss = vlm.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
        if on_eval and cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
            model.eval()
            on_eval(step + 1)
            model.train()
    model.eval()
    merge_lora(vlm)
    vlm.model.eval()
    return losses


def run_warmup(vlm: VLM, train: Sequence[Example], val: Sequence[Example], cfg: WarmupConfig, out: Path,
               seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """Accuracy before, training, accuracy after; saves the checkpoint and warmup.json in `out`."""
    family_weights(train, cfg.family_weights)  # a family the data lacks: refused before any work
    if cfg.eval_examples is not None:
        val = list(val)[: cfg.eval_examples]
    chance = chance_by_family(train, val)
    t0 = time.time()
    before = evaluate_answers(vlm, val)
    log("val answer accuracy before warm-up:\n" + format_table(before, None, chance))
    curve: list[dict] = [{"step": 0, **before}]
    eval_s = 0.0

    def on_eval(step: int) -> None:
        nonlocal eval_s
        t = time.time()
        acc = evaluate_answers(vlm, val)
        eval_s += time.time() - t
        curve.append({"step": step, **acc})
        log(f"step {step}: val accuracy " + "  ".join(f"{k} {v:.3f}" for k, v in sorted(acc.items())))

    t1 = time.time()
    losses = train_warmup(vlm, train, cfg, seed, log, on_eval)
    train_s = time.time() - t1 - eval_s  # training alone, without the curve's evaluations
    after = evaluate_answers(vlm, val)
    curve.append({"step": cfg.steps, **after})
    table = format_table(before, after, chance)
    log(f"val answer accuracy ({len(val)} questions), warm-up took {train_s / 60:.1f} min of training:\n" + table)
    report = {"before": before, "after": after, "chance": chance, "val_questions": len(val),
              "train_seconds": train_s, "total_seconds": time.time() - t0, "losses": losses, "curve": curve, "config": asdict(cfg), "seed": seed}
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    vlm.save(tmp)
    write_json(tmp / "warmup.json", report)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)  # the checkpoint appears whole or not at all
    return report
