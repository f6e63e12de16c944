"""The models a recipe names, opened or made: the base VLM, the cached warm-up checkpoint (trained
when missing, with its controls), the VLM a reward model reads, and reward-model suggestions for the
annotation page. The CLI parses and calls these."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import UserError


def base_vlm(recipe, path=None, log=print):
    """The recipe's base VLM (the built-in one before warm-up, or a local HF folder), or the VLM at path."""
    from .vlm import load_vlm

    vlm = load_vlm(path or recipe.model.base, device=recipe.model.device, image_size=recipe.model.image_size,
                   image_grid=recipe.model.image_grid, precision=recipe.model.precision)
    if (path is None and recipe.model.image_tokens == "words" and hasattr(vlm, "use_word_tokens")
            and vlm.model.config.token_kind != "words"):
        from .data import visual_words

        words = recipe.model.visual_words or visual_words(recipe.data)
        if words:
            import torch

            torch.manual_seed(recipe.seed)  # the fresh projector's start is part of the recipe
            vlm.use_word_tokens(words, recipe.model.cell_places, count_token=recipe.model.count_token)
        else:
            log(f"note: data '{recipe.data.name}' has no words for image tokens, so they stay projected "
                "(continuous); set model.visual_words (each slot's words, e.g. [[small, large], "
                "[red, blue], [circle, square]]) to write images as words")
    if path is None and recipe.model.count_token and not getattr(getattr(getattr(vlm, "model", None), "config", None),
                                                                  "count_tokens", 0):
        raise UserError("model.count_token: the count token is one of the built-in VLM's word image tokens "
                        "(model.base: builtin, model.image_tokens: words, data with a scene graph); this recipe's "
                        "model has none")
    return vlm


def reward_vlm(recipe, kind: str):
    """The VLM a reward model of this kind reads: image-aware, the frozen vision encoder's features;
    scene-text and vlm-likelihood, the warm-up model; the others none."""
    from .reward import NEEDS_VLM

    if NEEDS_VLM.get(kind) == "features":
        return base_vlm(recipe)
    if NEEDS_VLM.get(kind) == "warm-up":
        return base_vlm(recipe, str(warmup_checkpoint(recipe)))
    return None


def pretrained_family(base: str) -> str | None:
    """The model family of a local Hugging Face VLM folder (``llava``, ``idefics3``, ...); None for the
    built-in VLM (``builtin``, or a folder of one)."""
    config = Path(base) / "config.json"
    if base == "builtin" or not config.is_file():
        return None
    family = json.loads(config.read_text()).get("model_type")
    return None if family == "illume_vlm" else family


def warmup_checkpoint(recipe, log=print) -> Path:
    """The cached warm-up checkpoint for this recipe, trained when missing."""
    from .data import generator_version, load_examples
    from .paths import cache_dir
    from .train.warmup import TRAINER_VERSION

    family = pretrained_family(recipe.model.base)
    if family and recipe.warmup.skip_pretrained:
        log(f"{recipe.model.base}: a pretrained {family} model; no warm-up (the loop starts from it; "
            "warmup.skip_pretrained=false warms it up)")
        return Path(recipe.model.base)
    if recipe.warmup.precision == "auto":  # what it is here: bf16 and fp32 train different checkpoints
        from dataclasses import replace

        from .vlm.base import resolve_precision
        from .vlm.builtin import default_device

        recipe = replace(recipe, warmup=replace(recipe.warmup, precision=resolve_precision(
            "auto", default_device(recipe.model.device))))
    key = recipe.hash("seed", "data", "model", "warmup")
    if generator_version(recipe.data):  # data a generator writes: its version too (version 0 keeps old keys)
        key = hashlib.sha1(f"{key}/{generator_version(recipe.data)}".encode()).hexdigest()[:12]
    if TRAINER_VERSION > 1:  # the training code's version: a change in how it trains is a new checkpoint
        key = hashlib.sha1(f"{key}/trainer{TRAINER_VERSION}".encode()).hexdigest()[:12]
    out = cache_dir() / "warmup" / key
    if (out / "warmup.json").exists():
        log(f"warm-up checkpoint found (cached for this recipe): {out}")
        return out
    from . import tasks

    tasks.warmup(recipe, load_examples(recipe.data, "train"), load_examples(recipe.data, "val"), out)
    return out


def add_controls(recipe, ckpt: Path, report: dict, upper_bound: bool, log=print) -> dict:
    """Measure the controls a cached warm-up lacks (made before they existed, or without --upper-bound)
    and store them in its warmup.json."""
    from .data import load_examples
    from .distributed import processes
    from .evaluate.controls import can_write_as_text
    from .records import write_json

    need_swapped, need_text = "swapped" not in report, upper_bound and "text" not in report
    if need_text:
        data = load_examples(recipe.data, "train") + load_examples(recipe.data, "val")
        if not can_write_as_text(data):
            raise UserError(f"--upper-bound: data '{recipe.data.name}' has no scene graphs to write as text")
    if not (need_swapped or need_text):
        return report
    if need_swapped:
        log("measuring the controls this cached warm-up lacks (swapped images, grounding questions)")
    if need_text:
        log("training the text upper bound (the scene as text instead of the image)")
    report = processes().run(_measure_controls, recipe, str(ckpt), report, upper_bound)
    write_json(ckpt / "warmup.json", report)
    return report


def _measure_controls(recipe, ckpt: str, report: dict, upper_bound: bool) -> dict:
    """The controls (on every process, when there are several: their evaluations are shared out)."""
    from .data import load_examples
    from .distributed import processes
    from .train.warmup import controls, text_upper_bound

    report = dict(report)
    train, val = load_examples(recipe.data, "train"), load_examples(recipe.data, "val")
    if recipe.warmup.eval_examples is not None:
        val = val[: recipe.warmup.eval_examples]
    if "swapped" not in report:
        report.update(controls(base_vlm(recipe, ckpt), val))
    if upper_bound and "text" not in report:
        report["text"] = text_upper_bound(base_vlm(recipe), train, val, recipe.warmup, seed=recipe.seed,
                                          log=print if processes().is_main else (lambda _: None))
    return report


def suggest(store, run: Path, reward_dir: Path, log=print) -> None:
    """Score the open questions' rationales with the reward model (shown pre-ticked above its threshold)."""
    from .reward import load_reward

    todo = store.unscored()
    if not todo:
        return
    if not (reward_dir / "reward.json").exists():
        raise UserError(f"reward model {reward_dir} does not exist (no reward.json there)")
    from .config import load_recipe

    kind = json.loads((reward_dir / "reward.json").read_text()).get("kind")
    vlm = reward_vlm(load_recipe(str(run / "recipe.yaml")) if (run / "recipe.yaml").exists() else load_recipe(None), kind)
    scorer = load_reward(reward_dir, vlm=vlm)
    by_id = {ex.id: ex for _, ex, _ in todo}
    probs = scorer.score(by_id, [c for _, _, c in todo])
    store.set_suggestions({(task, c.id): float(p) for (task, _, c), p in zip(todo, probs)}, scorer.threshold)
    log(f"reward model {reward_dir}: suggestions for {len(todo)} rationales (ticked at >= {scorer.threshold:.3f})")
