"""Warm-up: teach the built-in VLM to see and answer before ILLUME tunes its rationales.

As MAGMA was pretrained on captions before ILLUME tuned it: steps of
captions, of answer-only questions and, where the data has them, of grounding
questions (what is where, as region descriptions serve VLM pretraining);
never reference explanations. Projection + LoRA train (a projection alone
does not learn to see here). The result is a merged checkpoint folder,
cached by recipe, so a second run skips it.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch

from ..errors import UserError
from ..records import Example, write_json, write_tree_atomic
from ..vlm.base import ANSWER_TEMPLATE, VLM, Item, answer_prompt, resolve_precision
from ..evaluate.accuracy import accuracy_by_family, chance_by_family
from ..evaluate.controls import as_text, grounding_accuracy, swap_images
from .align import align_projector, cell_accuracy, cell_loss, cell_targets
from .lora import LoraConfig, add_lora, count_trainable, merge_lora
from .steps import autocast, train_steps

CAPTION_PROMPT = "Describe the image:"
# the version of how the warm-up trains, part of its cache key (a change in how it trains is a new
# checkpoint); 1: the loop and schedule of train/steps.py (the same steps as before they were shared)
TRAINER_VERSION = 1


@dataclass
class WarmupConfig:
    # a pretrained Hugging Face VLM (model.base: a folder) already sees: the loop starts from it as it is,
    # unless this is False (then it is warmed up like the built-in VLM)
    skip_pretrained: bool = field(default=True, metadata={"hash_default": False})
    steps: int = 120
    batch_size: int = 16
    lr: float = 1e-3
    projector_lr: float = 2e-3
    warmup_steps: int = 10
    caption_fraction: float = 0.5      # share of steps that train on captions; a step is all of one kind,
                                       # so short questions are never padded to caption length
    grounding_fraction: float = 0.0    # share of steps on grounding questions (what is where), where the data has them
    # val examples for the before/after accuracy (None: the whole split), and every how many steps the curve
    # in warmup.json is measured: what is measured, not what is trained, so not part of the cache key
    eval_examples: int | None = field(default=None, metadata={"shapes_cache": False})
    eval_every: int | None = field(default=None, metadata={"shapes_cache": False})
    # bf16: forward/backward under bfloat16 autocast (weights and Adam stay fp32); auto: bf16 where the
    # device runs it natively (a CPU with AVX512-BF16 or AMX, a GPU with bf16), else fp32. Without native
    # support bf16 is emulated, many times slower (benchmarks/warmup_precision.py). The cache key holds
    # what auto resolves to on this machine (checkpoints.py)
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    lora: LoraConfig = field(default_factory=LoraConfig)
    # how often each question family is drawn for answer-only steps, relative to its share of the
    # training questions (e.g. {compare: 3, spatial: 3}: three times as often; unnamed families 1)
    family_weights: dict[str, float] | None = field(default=None, metadata={"hash_default": False})
    # learning rate after the warm-up steps (train/steps.py): "cosine" decays to 5%, "constant" holds it
    schedule: Literal["cosine", "constant"] = field(default="cosine", metadata={"hash_default": False})
    # word-anchored image tokens (model.image_tokens: words) on data with a scene graph: the projector
    # first learns each cell's words alone for `align_steps` (train/align.py), then every warm-up step
    # adds `cell_loss` x the same per-cell cross-entropy to the language model's loss
    align_steps: int = 300
    cell_loss: float = 1.0
    # grounding steps: per image, ask "What is in <cell>?" of as many empty cells as occupied ones (not of
    # every empty cell), so that "nothing" is not the safe answer
    balance_grounding: bool = True
    # answer-only and grounding steps draw this many items about each image they draw (batch_size /
    # items_per_image images a step, as multi-turn instruction data puts several questions about one
    # image in a sequence), and the built-in VLM reads each image's tokens once for all of them
    # (VLM.share_images): such a step costs less, about by the share of each row that is image.
    # 1 (the default): items drawn at random, each row reading its image whole, as every shipped recipe trains
    items_per_image: int = field(default=1, metadata={"hash_default": False})
    # rows per forward and backward within a step (gradient accumulation; 0: the whole batch at once): the
    # same step up to rounding, with a fraction of the activation memory (README, "Commands")
    micro_batch: int = field(default=0, metadata={"hash_default": False})

    def __post_init__(self):
        if self.micro_batch < 0:
            raise UserError(f"warmup.micro_batch: 0 (the whole batch at once) or more, got {self.micro_batch}")
        if self.items_per_image < 1:
            raise UserError(f"warmup.items_per_image: at least 1, got {self.items_per_image}")
        if self.items_per_image > 1 and self.family_weights:
            raise UserError("warmup.family_weights and warmup.items_per_image > 1 cannot be combined (the "
                            "weights are per question, the draws per image): set one of them")
        if self.family_weights and any(w < 0 for w in self.family_weights.values()):
            raise UserError(f"warmup.family_weights: weights must be 0 or more, got {self.family_weights}")
        shares = {"caption_fraction": self.caption_fraction, "grounding_fraction": self.grounding_fraction}
        if any(not 0 <= v <= 1 for v in shares.values()) or sum(shares.values()) > 1:
            raise UserError(f"warmup: caption_fraction ({self.caption_fraction}) and grounding_fraction "
                            f"({self.grounding_fraction}) are shares of the steps: each 0 to 1, together at most 1")


def warmup_items(train: Sequence[Example], balance: bool = False,
                 seed: int = 0) -> tuple[list[Item], list[Item], list[Item]]:
    """(answer-only items, caption items, grounding items); explanations are never used.

    Captions come from ``meta["caption"]``, grounding questions (what is where) from
    ``meta["grounding"]`` ([question, answer] pairs), each once per image; with ``balance``, of the
    questions answered "nothing" only as many as the image has other questions whose answer
    names an object ("What is in <cell>?" of an occupied cell), drawn at random."""
    rng = random.Random(f"balance/{seed}")
    answers = [(ex.image, answer_prompt(ex), " " + ex.answer) for ex in train]
    seen, captions, grounded = set(), [], []
    for ex in train:
        if not ex.image or ex.image in seen:
            continue
        seen.add(ex.image)
        if ex.meta.get("caption"):
            captions.append((ex.image, CAPTION_PROMPT, " " + ex.meta["caption"]))
        pairs = list(ex.meta.get("grounding") or [])
        if balance:
            empty = [p for p in pairs if p[1] == "nothing"]
            occupied = [p for p in pairs if p[1] != "nothing" and p[0].startswith("What")]
            keep = rng.sample(empty, min(len(empty), len(occupied)))
            pairs = [p for p in pairs if p[1] != "nothing" or p in keep]
        for question, answer in pairs:
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


def sample_by_image(rng: random.Random, pool: Sequence[Item], k: int, n: int) -> list[Item]:
    """n items of ``pool``, up to k about each image drawn: images at random without replacement, then
    up to k of each image's items at random, until there are n (fewer if the pool has fewer). An item
    without an image is its own group."""
    by_image: dict = {}
    for i, item in enumerate(pool):
        by_image.setdefault(item[0] if item[0] is not None else ("no image", i), []).append(item)
    out: list[Item] = []
    for image in rng.sample(list(by_image), len(by_image)):
        if len(out) >= n:
            break
        items = by_image[image]
        out += rng.sample(items, min(k, len(items), n - len(out)))
    return out


def evaluate_answers(vlm: VLM, val: Sequence[Example]) -> dict[str, float]:
    return accuracy_by_family(val, vlm.answer(val))


def evaluate_with_swapped(vlm: VLM, val: Sequence[Example]) -> tuple[dict[str, float], dict[str, float] | None]:
    """Per-family accuracy on ``val`` and with each image swapped for another scene's (None without
    images), in one pass: the questions about each image, its own and those swapped onto it, are asked
    together, so the built-in VLM reads each image once for both (its tokens are most of a prompt).
    The same answers as two passes (greedy; on the demo's 600 questions 45 s against 62 for two passes
    in batches of 32: benchmarks/eval_batch.py)."""
    if not any(ex.image for ex in val):
        return evaluate_answers(vlm, val), None
    swapped = swap_images(val)
    both = list(val) + swapped
    order = sorted(range(len(both)), key=lambda i: both[i].image or "")  # stable: each image's questions together
    preds: list[str] = [""] * len(both)
    for i, pred in zip(order, vlm.answer([both[i] for i in order])):
        preds[i] = pred
    return accuracy_by_family(val, preds[:len(val)]), accuracy_by_family(swapped, preds[len(val):])


def format_table(before: dict, after: dict | None, chance: dict, swapped: dict | None = None,
                 text: dict | None = None) -> str:
    """Per family: chance, before, after; with the controls, the accuracy with each image swapped for
    another scene's (and how much is lost), and the scene given as text (the upper bound)."""
    fams = ["all"] + sorted(k for k in chance if k != "all")
    cols = [("chance", chance), ("before", before)] + ([("after", after)] if after else [])
    if swapped:
        cols.append(("swapped", swapped))
    if text:
        cols.append(("text", text))
    head = f"{'family':<10}" + "".join(f" {name:>7}" for name, _ in cols) + (f" {'lost':>7}" if swapped else "")
    lines = [head, "-" * len(head)]
    for f in fams:
        row = f"{f:<10}" + "".join(f" {vals.get(f, float('nan')):>7.3f}" for _, vals in cols)
        if swapped and after:
            row += f" {after.get(f, float('nan')) - swapped.get(f, float('nan')):>7.3f}"
        lines.append(row)
    return "\n".join(lines)


def format_controls(report: dict) -> str:
    """The warm-up's per-family table with its controls, then grounding and image-token accuracy."""
    lines = [format_table(report["before"], report["after"], report["chance"], report.get("swapped"),
                          (report.get("text") or {}).get("after"))]
    if report.get("swapped"):
        lines.append("swapped: each question asked of another scene's image; lost: after - swapped")
    if report.get("text"):
        lines.append(f"text: the same language model given the scene as text, {report['text']['steps']} question "
                     "steps (an upper bound on what perception can buy)")
    if report.get("grounding"):
        g = report["grounding"]
        lines.append("grounding questions (exact answer): " + ", ".join(
            f"{k.replace('_', ' on ')} {v:.3f}" for k, v in g.items()))
    if report.get("cells"):
        c = report["cells"]
        lines.append(f"image tokens' most likely words true of the cell: occupied {c['occupied']:.3f}, "
                     f"empty {c['empty']:.3f}"
                     + (f"; count token's most likely number true of the image {c['count']:.3f}" if "count" in c else ""))
    return "\n".join(lines)


def controls(vlm: VLM, val: Sequence[Example], swapped: dict[str, float] | None = None) -> dict:
    """swapped (per-family accuracy, each image another scene's; measured here unless given), grounding
    (what/where questions) and cells (the image tokens' words against the scene graph), where the data
    allows each."""
    out: dict = {}
    if swapped is not None:
        out["swapped"] = swapped
    elif any(ex.image for ex in val):
        out["swapped"] = evaluate_answers(vlm, swap_images(val))
    grounding = grounding_accuracy(vlm, val)
    if grounding:
        out["grounding"] = grounding
    targets = cell_targets(vlm, val)
    if targets:
        out["cells"] = cell_accuracy(vlm, targets)
    return out


def text_questions_config(cfg: WarmupConfig, steps: int, eval_every: int | None = None) -> WarmupConfig:
    """``cfg`` for training on question steps alone with each scene given as text: no caption or
    grounding steps, and none of the image's terms (projector pre-alignment, per-cell loss, a shared
    image)."""
    return replace(cfg, steps=steps, caption_fraction=0.0, grounding_fraction=0.0, eval_every=eval_every,
                   align_steps=0, cell_loss=0.0, items_per_image=1)


def text_upper_bound(vlm: VLM, train: Sequence[Example], val: Sequence[Example], cfg: WarmupConfig, seed: int = 0,
                     log: Callable[[str], None] = print) -> dict:
    """The warm-up's question steps with each scene given as text instead of the image, on a fresh
    language model: val accuracy per family is what perfect perception would buy at that many steps.
    ``vlm`` must be the base model (trained in place)."""
    steps = max(1, round(cfg.steps * (1 - cfg.caption_fraction - cfg.grounding_fraction)))
    text_cfg = text_questions_config(cfg, steps)
    proc = getattr(vlm, "processor", None)  # the scene laid out as the image tokens are
    places, count = getattr(proc, "cell_places", "before"), getattr(proc, "count_token", False)
    text_train, text_val = [as_text(e, places, count) for e in train], [as_text(e, places, count) for e in val]
    t = time.time()
    train_warmup(vlm, text_train, text_cfg, seed, log)
    return {"steps": steps, "after": evaluate_answers(vlm, text_val), "train_seconds": time.time() - t}


def warmup_draw(train: Sequence[Example], cfg: WarmupConfig, seed: int = 0) -> Callable[[int], tuple[list[Item], None]]:
    """The warm-up's batches: ``draw(step)`` gives the step's items (and no per-item weights), each
    step all captions, all grounding questions or all answer-only questions, by the recipe's shares,
    from one generator seeded by ``seed``; called for steps 0, 1, ... in order, the batches
    ``train_warmup`` trains on (``benchmarks/warmup_floor.py`` counts their tokens)."""
    rng = random.Random(seed)
    answers, captions, grounded = warmup_items(train, cfg.balance_grounding, seed)
    answer_weights = family_weights(train, cfg.family_weights)

    def draw(step: int):
        u = rng.random()
        if captions and u < cfg.caption_fraction:
            pool = captions
        elif grounded and u < cfg.caption_fraction + cfg.grounding_fraction:
            pool = grounded
        else:
            pool = answers
        if pool is answers and answer_weights is not None:
            return weighted_sample(rng, answers, answer_weights, cfg.batch_size), None
        if cfg.items_per_image > 1 and pool is not captions:
            return sample_by_image(rng, pool, cfg.items_per_image, cfg.batch_size), None
        return rng.sample(pool, min(cfg.batch_size, len(pool))), None

    return draw


def train_warmup(vlm: VLM, train: Sequence[Example], cfg: WarmupConfig, seed: int = 0,
                 log: Callable[[str], None] = print,
                 on_eval: Callable[[int], None] | None = None) -> list[float]:
    """Train in place (LoRA merged back at the end); returns the loss curve. With
    ``cfg.eval_every``, ``on_eval(step)`` runs every that many steps (model in eval mode)."""
    torch.manual_seed(seed)
    draw = warmup_draw(train, cfg, seed)
    targets = cell_targets(vlm, train)
    if targets and cfg.align_steps:
        align_projector(vlm, train, steps=cfg.align_steps, seed=seed, log=log)
    model = add_lora(vlm, cfg.lora)
    precision = resolve_precision(cfg.precision, vlm.device)
    log(f"warm-up: {count_trainable(model):,} trainable parameters, {cfg.steps} steps of {cfg.batch_size}, "
        + ("bf16 autocast" if precision == "bf16" else "fp32"))
    proj = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("projector")]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("projector")]
    groups = [{"params": rest, "lr": cfg.lr}, {"params": proj, "lr": cfg.projector_lr}]

    def per_cell(batch):
        supervised = [img for img, _, _ in batch if img in targets] if cfg.cell_loss else []
        if not supervised:
            return None
        gold = torch.stack([targets[img] for img in supervised])
        return cfg.cell_loss * cell_loss(vlm, vlm.features.get(supervised), gold), len(supervised)

    vlm.share_images = cfg.items_per_image > 1
    try:
        losses = train_steps(vlm, groups, cfg.steps, draw, schedule=cfg.schedule, warmup_steps=cfg.warmup_steps,
                             precision=precision, desc="warm-up", extra_loss=per_cell, on_eval=on_eval,
                             eval_every=cfg.eval_every, micro_batch=cfg.micro_batch)
    finally:
        vlm.share_images = False
    merge_lora(vlm)
    vlm.model.eval()
    return losses


def run_warmup(vlm: VLM, train: Sequence[Example], val: Sequence[Example], cfg: WarmupConfig, out: Path,
               seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """Accuracy before, training, accuracy after; saves the checkpoint and warmup.json in `out`."""
    family_weights(train, cfg.family_weights)  # a family the data lacks: refused before any work
    cfg = replace(cfg, precision=resolve_precision(cfg.precision, vlm.device))  # warmup.json says which
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
    after, swapped = evaluate_with_swapped(vlm, val)
    curve.append({"step": cfg.steps, **after})
    report = {"before": before, "after": after, "chance": chance, "val_questions": len(val),
              "train_seconds": train_s, "losses": losses, "curve": curve, "config": asdict(cfg), "seed": seed}
    report.update(controls(vlm, val, swapped))
    report["total_seconds"] = time.time() - t0
    log(f"val answer accuracy ({len(val)} questions), warm-up took {train_s / 60:.1f} min of training:\n"
        + format_controls(report))
    from ..distributed import processes

    def write(tmp: Path) -> None:
        vlm.save(tmp)
        write_json(tmp / "warmup.json", report)

    if processes().is_main:  # with several processes, they all hold the same weights; one saves them
        write_tree_atomic(out, write)  # the checkpoint appears whole or not at all
    return report
