"""Training a reward model on judgements: rows from judgements, a held-out split by example, the fit,
the threshold fitted on the held-out judgements, and the saved folder (``reward.json`` beside the
weights)."""
from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..errors import UserError
from ..records import Candidate, Example, write_json
from .evaluation import ABSTAIN, agreement, threshold_for_precision
from .models import CLASSES, KINDS, RewardConfig, remembered_features


def labelled_rows(examples: Mapping[str, Example], candidates: Sequence[Candidate], judgements) -> list:
    by_id = {c.id: c for c in candidates}
    rows = []
    for j in judgements:
        c = by_id.get(j.candidate_id)
        if c is None:
            raise UserError(f"judgement for unknown candidate {j.candidate_id}")
        if c.example_id not in examples:
            raise UserError(f"candidate {c.id} refers to unknown example {c.example_id}")
        rows.append((examples[c.example_id], c, bool(j.accepted)))
    return rows


def split_heldout(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    """Held-out rows by example (no example's candidates on both sides)."""
    ids = sorted({ex.id for ex, _, _ in rows})
    random.Random(seed).shuffle(ids)
    held = set(ids[: max(1, round(len(ids) * fraction))]) if fraction > 0 else set()
    return [r for r in rows if r[0].id not in held], [r for r in rows if r[0].id in held]


def example_folds(rows: list, k: int, seed: int) -> list[int]:
    """Each row's fold (0..k-1), by example: no example's candidates in two folds."""
    ids = sorted({ex.id for ex, _, _ in rows})
    random.Random(seed).shuffle(ids)
    fold = {i: n % k for n, i in enumerate(ids)}
    return [fold[ex.id] for ex, _, _ in rows]


def _check_two_classes(train: list, rows: list, held: int, where: str = "") -> None:
    if not any(y for _, _, y in train) or all(y for _, _, y in train):
        accepted = sum(bool(y) for _, _, y in rows)
        raise UserError(f"the training judgements{where} hold only one class ({accepted} of {len(rows)} judgements "
                        f"accepted; {held} held out): a reward model needs both; give it more "
                        "judgements (selector.seed_judgements) or a seed judge that accepts some")


def out_of_fold(rows: list, cfg: RewardConfig, vlm=None, log=print) -> list[float]:
    """Each row's probability from a model trained on the other ``cfg.threshold_folds`` - 1 folds."""
    folds = example_folds(rows, cfg.threshold_folds, cfg.seed)
    probs = [0.0] * len(rows)
    for k in range(cfg.threshold_folds):
        train = [r for r, f in zip(rows, folds) if f != k]
        held = [(n, r) for n, (r, f) in enumerate(zip(rows, folds)) if f == k]
        if not held:
            continue
        _check_two_classes(train, rows, len(held), f" of fold {k + 1} of {cfg.threshold_folds}")
        log(f"threshold by cross-validation: fold {k + 1} of {cfg.threshold_folds} ({len(train)} judgements)")
        torch.manual_seed(cfg.seed)
        model = CLASSES[cfg.kind].new(cfg)
        model.fit(train, cfg, vlm)
        pairs = [r for _, r in held]
        for (n, _), p in zip(held, model.predict({ex.id: ex for ex, _, _ in pairs}, [c for _, c, _ in pairs], vlm)):
            probs[n] = p
    return probs


def train_reward(rows: list, cfg: RewardConfig, out: str | Path, vlm=None, log=print,
                 origin: dict | None = None) -> dict:
    """``origin``: what the judgements are of (``data``: the recipe's data key, ``data_name``,
    ``warm_up``: the model whose candidates they judge), kept in reward.json so that RL refuses a
    reward model of other data or another model's candidates."""
    if cfg.kind not in CLASSES:
        raise UserError(f"unknown reward model kind '{cfg.kind}' (choose {', '.join(KINDS)})")
    if not rows:
        raise UserError("no judgements to train the reward model on")
    with remembered_features():  # the folds and the final fit read the same judgements through the VLM once
        return _train_reward(rows, cfg, out, vlm, log, origin)


def _train_reward(rows: list, cfg: RewardConfig, out: str | Path, vlm, log, origin: dict | None) -> dict:
    folds = cfg.threshold_folds > 1
    train, held = (rows, []) if folds else split_heldout(rows, cfg.heldout_fraction, cfg.seed)
    _check_two_classes(train, rows, len(held))
    report = {"kind": cfg.kind, "config": asdict(cfg), "train_judgements": len(train), "threshold": 0.5}
    if folds:
        probs, labels = out_of_fold(rows, cfg, vlm, log), [y for _, _, y in rows]
        threshold = threshold_for_precision(labels, probs, cfg.target_precision)
        report.update(threshold=threshold, crossval=agreement(labels, probs, threshold),
                      **{"crossval_at_0.5": agreement(labels, probs, 0.5)})
    torch.manual_seed(cfg.seed)  # the new head's start is part of the recipe: the same judgements, the same model
    model = CLASSES[cfg.kind].new(cfg)
    log(f"training a {cfg.kind} reward model on {len(train)} judgements "
        f"({sum(y for _, _, y in train)} accepted); {len(held)} held out")
    model.fit(train, cfg, vlm)
    model.threshold = report["threshold"]
    if origin:
        report["origin"] = origin
    if held:
        examples = {ex.id: ex for ex, _, _ in held}
        probs = model.predict(examples, [c for _, c, _ in held], vlm)
        labels = [y for _, _, y in held]
        model.threshold = threshold_for_precision(labels, probs, cfg.target_precision)
        report["threshold"] = model.threshold
        report["heldout"] = agreement(labels, probs, model.threshold)
        report["heldout_at_0.5"] = agreement(labels, probs, 0.5)
    if report["threshold"] == ABSTAIN:
        report["abstains"] = True
        log(f"warning: no threshold reaches precision {cfg.target_precision} on the "
            f"{'out-of-fold scores' if folds else 'held-out judgements'} of these {len(rows)} judgements, so this "
            "reward model accepts nothing (threshold above 1); give it more judgements "
            "(selector.seed_judgements) or a lower target (selector.reward.target_precision)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out)
    write_json(out / "reward.json", report)
    return report
