"""LoRA adapters (PEFT) in the language model; the projection trains whole."""
from __future__ import annotations

from dataclasses import dataclass

import torch

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    train_projector: bool = True


def add_lora(model: torch.nn.Module, cfg: LoraConfig) -> torch.nn.Module:
    """Wrap ``model.language_model`` with LoRA; freeze everything else but the projector."""
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    model.requires_grad_(False)
    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    model.language_model = get_peft_model(model.language_model, peft_cfg)
    if cfg.train_projector and hasattr(model, "projector"):
        model.projector.requires_grad_(True)
    return model


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    from peft import PeftModel

    if isinstance(model.language_model, PeftModel):
        model.language_model = model.language_model.merge_and_unload()
    model.requires_grad_(True)
    return model


def count_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
