"""LoRA adapters (PEFT) in the language model; everything else frozen, but the
built-in VLM's projection when asked (warm-up trains it, fine-tuning does not)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..compat import hide_checkpointing_deprecation
from ..errors import UserError

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# a Hugging Face VLM: the language model's attention and MLP, not the vision tower's (whose layers
# share names like q_proj): the LM sits under language_model (LLaVA, Qwen2-VL, PaliGemma, Gemma3)
# or text_model (Idefics3 / SmolVLM)
HF_LORA_TARGETS = r"(.*\.)?(language_model|text_model)\..*\.({})".format("|".join(LORA_TARGETS))


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    # no dropout by default: on a CPU its random masks took a quarter of a warm-up step, and the demo
    # warm-up without it matched the one with 0.05 (README, "Warm-up speed")
    dropout: float = 0.0
    train_projector: bool = True
    # a regex of module names (PEFT's full match) to put adapters on; None: the language model's
    # attention and MLP projections (LORA_TARGETS in the built-in VLM, HF_LORA_TARGETS in others)
    target_modules: str | None = field(default=None, metadata={"hash_default": False})


def _is_builtin(model: torch.nn.Module) -> bool:
    return hasattr(model, "projector") and hasattr(model, "language_model")


def _peft_config(cfg: LoraConfig, builtin: bool):
    from peft import LoraConfig as PeftLoraConfig

    targets = cfg.target_modules or (LORA_TARGETS if builtin else HF_LORA_TARGETS)
    return PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                          task_type="CAUSAL_LM" if builtin else None)


def add_lora(vlm, cfg: LoraConfig) -> torch.nn.Module:
    """Wrap the language model with fresh LoRA adapters; returns the module to optimise."""
    from peft import get_peft_model

    model = vlm.trainable_model()
    model.requires_grad_(False)
    if _is_builtin(model):
        with hide_checkpointing_deprecation():
            model.language_model = get_peft_model(model.language_model, _peft_config(cfg, True))
        if cfg.train_projector:
            model.projector.requires_grad_(True)
            model.image_positions.requires_grad_(True)
        return model
    try:
        with hide_checkpointing_deprecation():
            vlm.model = get_peft_model(model, _peft_config(cfg, False))
    except ValueError as exc:
        if "not found" not in str(exc) and "match" not in str(exc):
            raise
        raise UserError(f"lora.target_modules: {cfg.target_modules or HF_LORA_TARGETS!r} names no module of "
                        f"{type(model).__name__} (set lora.target_modules to a regex of its module names)") from None
    return vlm.model


def _peft_part(vlm):
    from peft import PeftModel

    model = vlm.model
    if isinstance(model, PeftModel):
        return model
    if _is_builtin(model) and isinstance(model.language_model, PeftModel):
        return model.language_model
    return None


def save_adapter(vlm, path: str | Path) -> None:
    part = _peft_part(vlm)
    if part is None:
        raise UserError("this model has no adapters to save")
    # the adapters never resize the vocabulary: False spares PEFT's check of the base model's config,
    # which it looks for at base_model_name_or_path (the built-in VLM's is the weights' package, which
    # has none: a warning on every save) or else asks the Hugging Face Hub about
    part.save_pretrained(path, save_embedding_layers=False)


def require_adapter(path: str | Path) -> Path:
    """``path``, a saved adapter's folder; refused (one line) when it holds none."""
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise UserError(f"adapter {path} does not exist (no adapter_config.json there)")
    return path


def load_adapter(vlm, path: str | Path) -> None:
    """Put a saved adapter on the model, merged into its weights (for sampling and evaluation; not
    trainable): an unmerged adapter's extra matrix products in every projection made a decoding step
    1.24x slower and a prefill 1.17x (64 rows, fp32, the demo model); merged, the demo loop's
    metrics were the same to the digit (seed 1)."""
    from peft import PeftModel

    path = require_adapter(path)
    model = vlm.model
    with hide_checkpointing_deprecation():
        if _is_builtin(model):
            model.language_model = PeftModel.from_pretrained(model.language_model, path).merge_and_unload()
        else:
            vlm.model = PeftModel.from_pretrained(model, path).merge_and_unload()
    vlm.model.eval()


def merge_lora(vlm) -> torch.nn.Module:
    """Fold the adapters into the weights (a plain model again)."""
    from peft import PeftModel

    model = vlm.model
    if isinstance(model, PeftModel):
        vlm.model = model.merge_and_unload()
    elif _is_builtin(model) and isinstance(model.language_model, PeftModel):
        model.language_model = model.language_model.merge_and_unload()
    vlm.model.requires_grad_(True)
    if _is_builtin(vlm.model) and vlm.model.config.freeze_vision:
        vlm.model.vision.requires_grad_(False)
    return vlm.model


def count_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
