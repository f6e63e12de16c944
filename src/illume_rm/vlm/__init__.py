"""The VLM behind one interface: answer, sample rationales, loss.

``load_vlm(path)`` opens a built-in VLM folder (``config.json`` with
``model_type: illume_vlm``) or any Hugging Face image-text-to-text model in a
local folder; ``load_vlm("builtin")`` converts the shipped weights once.
Both give a :class:`VLM`: ``loss(items)``, ``generate(items, ...)`` and
``answer(examples)``, where an item is ``(image path or None, prompt, target)``.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from .base import VLM, Item, answer_prompt, parse_answer
from .builtin import BuiltinVLM

__all__ = ["VLM", "Item", "BuiltinVLM", "load_vlm", "answer_prompt", "parse_answer"]


def load_vlm(path: str | Path, device: str | None = None, image_size: int = 192, image_grid: int = 3,
             precision: str = "fp32") -> VLM:
    """``precision``: what generation runs in (``VLM.set_precision``: fp32, bf16, or auto)."""
    return _open(path, device, image_size, image_grid).set_precision(precision)


def require_checkpoint(path: str | Path) -> Path:
    """``path``, a saved model's folder; refused (one line) when it holds none."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError(f"model checkpoint {path} does not exist (no config.json there)")
    return path


def _open(path: str | Path, device: str | None, image_size: int, image_grid: int) -> VLM:
    if str(path) == "builtin":
        from .weights import build_builtin

        return BuiltinVLM.load(build_builtin(image_size, image_grid), device=device)
    path = require_checkpoint(path)
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    if model_type == "illume_vlm":
        return BuiltinVLM.load(path, device=device)
    from .hf import HFVLM

    return HFVLM.load(path, device=device)
