"""The built-in VLM: EfficientNet-Lite0 features -> projection -> prefix embeddings of a causal LM.

Like MAGMA and LLaVA: each image becomes ``n`` tokens (the encoder's feature
map at stride 32) that stand in the sequence where the processor put the
image placeholder id. It is a real Hugging Face model (config class,
``save_pretrained`` / ``from_pretrained``), so PEFT and the Trainer work with
it as with any other. Text-only examples simply have no image placeholders.
"""
from __future__ import annotations

import torch
from torch import nn
from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, PreTrainedModel
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec
from transformers.modeling_outputs import CausalLMOutputWithPast

from .efficientnet import FEATURE_DIM, EfficientNetLite0


@strict
class IllumeVLMConfig(PreTrainedConfig):
    """``text_config`` is the language model's config; the image placeholder id is
    ``text_config.vocab_size`` (outside the vocabulary, so no text ever produces it)."""

    model_type = "illume_vlm"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    vision_dim: int = FEATURE_DIM
    image_size: int = 192         # the encoder's input resolution (images are resized to it)
    image_grid: int = 3           # its feature map is average-pooled to grid x grid image tokens
    projector_layers: int = 2
    freeze_vision: bool = True
    image_scale: float = 1.0      # image tokens are scaled to the norm of the LM's word embeddings
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.tie_word_embeddings = bool(self.text_config.tie_word_embeddings)

    @property
    def image_token_id(self) -> int:
        return self.text_config.vocab_size

    @property
    def image_tokens(self) -> int:
        return self.image_grid * self.image_grid


def grid_place(row: int, col: int, grid: int) -> str:
    """A grid cell's place in words: 'top left', 'middle right', 'centre' (on a grid other than 3x3,
    by which third of the image the cell's centre lies in)."""
    third = lambda i: min(2, int((i + 0.5) / grid * 3))  # noqa: E731
    vert, horiz = ("top", "middle", "bottom")[third(row)], ("left", "middle", "right")[third(col)]
    return "centre" if (vert, horiz) == ("middle", "middle") else f"{vert} {horiz}"


class IllumeVLMForConditionalGeneration(PreTrainedModel):
    config: IllumeVLMConfig
    config_class = IllumeVLMConfig
    base_model_prefix = ""
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    input_modalities = ("image", "text")
    _no_split_modules = ["LlamaDecoderLayer"]

    def __init__(self, config: IllumeVLMConfig):
        super().__init__(config)
        self.vision = EfficientNetLite0()
        hidden = config.text_config.hidden_size
        # LayerNorm first: the encoder's ReLU6 features differ in scale channel by channel
        layers: list[nn.Module] = [nn.LayerNorm(config.vision_dim), nn.Linear(config.vision_dim, hidden)]
        for _ in range(config.projector_layers - 1):
            layers += [nn.GELU(), nn.Linear(hidden, hidden)]
        self.projector = nn.Sequential(*layers)
        # where each image token sits on the feature grid: learned, added after projection
        self.image_positions = nn.Parameter(torch.zeros(config.image_tokens, hidden))
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        if config.freeze_vision:
            self.vision.requires_grad_(False)
        self.post_init()

    # -- HF plumbing ------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_vision:
            self.vision.eval()  # frozen BatchNorm statistics stay the ImageNet ones
        return self

    # -- images -----------------------------------------------------------------------
    def match_image_scale(self) -> None:
        """Set ``image_scale`` so projected image tokens start with the typical norm of a word embedding
        (a fresh projection gives tokens far larger than words, which drowns the prompt)."""
        with torch.no_grad():
            words = self.get_input_embeddings().weight.float().norm(dim=-1).mean().item()
            probe = torch.rand(64, self.config.vision_dim) * 6.0  # ReLU6 range
            tokens = self.projector(probe.to(self.projector[1].weight.dtype)).float().norm(dim=-1).mean().item()
        self.config.image_scale = words / max(tokens, 1e-6)

    def init_positions_from_words(self, tokenizer) -> None:
        """Start each image token's learned position at the word embedding of its grid cell's place
        ("top left", "middle right", "centre"; the mean of the phrase's tokens), scaled to the mean
        norm of a word embedding: the token then carries where it is in words the language model
        reads, where a zero start leaves place to be learned from nothing (and it was not, here)."""
        n = self.config.image_grid
        words = self.get_input_embeddings().weight.detach().float()
        rows = []
        for row in range(n):
            for col in range(n):
                ids = tokenizer(" " + grid_place(row, col, n), add_special_tokens=False)["input_ids"]
                vec = words[ids].mean(0)
                rows.append(vec / vec.norm().clamp_min(1e-6))
        with torch.no_grad():
            self.image_positions.copy_(torch.stack(rows) * words.norm(dim=-1).mean())

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] normalised pixels -> [B, grid*grid, 1280] features of the (frozen) encoder.

        The stride-32 map is pooled to the grid: an ImageNet encoder fed small images keeps little
        of what each region holds (a linear probe of colour+shape per cell of a 96 px shapes image:
        0.67, at the 0.62 of always saying 'empty'); fed 192 px and pooled to 3x3, 0.98."""
        with torch.set_grad_enabled(not self.config.freeze_vision and self.training):
            fmap = self.vision(pixel_values.to(self.projector[1].weight.dtype))
        fmap = nn.functional.adaptive_avg_pool2d(fmap, self.config.image_grid)
        return fmap.flatten(2).transpose(1, 2)

    def embed(self, input_ids: torch.Tensor, image_features: torch.Tensor | None = None,
              pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with the projected image features put where the placeholders are."""
        is_image = input_ids == self.config.image_token_id
        embeds = self.get_input_embeddings()(input_ids.masked_fill(is_image, 0))
        if not is_image.any():
            return embeds
        if image_features is None:
            if pixel_values is None:
                raise ValueError("the input has image placeholders but neither image_features nor pixel_values")
            image_features = self.encode_images(pixel_values)
        projected = self.projector(image_features.to(embeds.dtype)) * self.config.image_scale
        if projected.shape[1] == self.image_positions.shape[0]:
            projected = projected + self.image_positions
        if projected.shape[0] * projected.shape[1] != int(is_image.sum()):
            raise ValueError(
                f"{int(is_image.sum())} image placeholders but {projected.shape[0]}x{projected.shape[1]} image tokens"
            )
        mask = is_image.unsqueeze(-1).expand_as(embeds)
        return embeds.masked_scatter(mask, projected.reshape(-1, projected.shape[-1]))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                image_features: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs) -> CausalLMOutputWithPast:
        embeds = self.embed(input_ids, image_features, pixel_values)
        return self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    def decoder(self) -> nn.Module:
        """The language model's decoder stack (under any PEFT wrapper), without the LM head."""
        lm = self.language_model
        if hasattr(lm, "get_base_model"):
            lm = lm.get_base_model()
        return lm.model

    def target_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                    image_features: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Per-example token-mean cross-entropy on the labelled tokens.

        The LM head (a 49k-word vocabulary) runs only where a label is, not on
        every position: most of a batch is image and prompt, so this saves much
        of the head's cost in training.
        """
        embeds = self.embed(input_ids, image_features, pixel_values)
        hidden = self.decoder()(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        targets = labels[:, 1:]
        rows, cols = (targets != -100).nonzero(as_tuple=True)
        logits = self.get_output_embeddings()(hidden[rows, cols]).float()
        tok = nn.functional.cross_entropy(logits, targets[rows, cols], reduction="none")
        per = torch.zeros(labels.shape[0], device=tok.device).index_add(0, rows, tok)
        count = torch.zeros(labels.shape[0], device=tok.device).index_add(0, rows, torch.ones_like(tok))
        return per / count.clamp(min=1)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 image_features: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
                 **generate_kwargs) -> torch.Tensor:
        """Left-padded prompts in, only the new tokens out (as ``generate(inputs_embeds=...)`` gives)."""
        embeds = self.embed(input_ids, image_features, pixel_values)
        return self.language_model.generate(inputs_embeds=embeds, attention_mask=attention_mask, **generate_kwargs)


# So that AutoConfig / AutoModelForImageTextToText open a saved built-in VLM too.
AutoConfig.register(IllumeVLMConfig.model_type, IllumeVLMConfig, exist_ok=True)
AutoModelForImageTextToText.register(IllumeVLMConfig, IllumeVLMForConditionalGeneration, exist_ok=True)
