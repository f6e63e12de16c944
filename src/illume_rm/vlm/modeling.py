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
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.modeling_utils import AttentionInterface
from transformers.models.llama.modeling_llama import eager_attention_forward
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
    # "projected": each grid cell is one continuous token (LayerNorm -> MLP -> a learned position added).
    # "words": each cell is len(visual_words) tokens, one per slot (e.g. size, colour, shape); each is a
    # probability-weighted mix of the word embeddings of that slot's words (or of nothing: a zero
    # vector), as Ovis builds visual tokens from an embedding table, here the LM's own.
    token_kind: str = "projected"
    visual_words: list | None = None     # per slot, the words it may say: [["small", "large"], ["red", ...], ...]
    visual_word_ids: list | None = None  # per slot, per word, its token ids (a word is the mean of its tokens)
    # "words" only: one more image token after the cells, how many cells hold something, as a
    # probability-weighted mix of the number words (count_words[n] is the word for n). Its weights are
    # not learned apart: they are the distribution of the number of occupied cells given each cell's
    # own probability of holding something (its slots' words against nothing), so it says what the
    # cell tokens say, summed, in one word (the LM need not count them).
    count_words: list | None = None
    count_word_ids: list | None = None
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.tie_word_embeddings = bool(self.text_config.tie_word_embeddings)

    @property
    def image_token_id(self) -> int:
        return self.text_config.vocab_size

    @property
    def tokens_per_cell(self) -> int:
        return len(self.visual_words) if self.token_kind == "words" else 1

    @property
    def count_tokens(self) -> int:
        return 1 if self.token_kind == "words" and self.count_words else 0

    @property
    def image_tokens(self) -> int:
        return self.image_grid * self.image_grid * self.tokens_per_cell + self.count_tokens


def grid_place(row: int, col: int, grid: int) -> str:
    """A grid cell's place in words: 'top left', 'middle right', 'centre' (on a grid other than 3x3,
    by which third of the image the cell's centre lies in)."""
    third = lambda i: min(2, int((i + 0.5) / grid * 3))  # noqa: E731
    vert, horiz = ("top", "middle", "bottom")[third(row)], ("left", "middle", "right")[third(col)]
    return "centre" if (vert, horiz) == ("middle", "middle") else f"{vert} {horiz}"


def _projector(config: IllumeVLMConfig) -> nn.Sequential:
    """Features -> image tokens (projected) or -> each slot's word logits, one more for "nothing" (words).
    LayerNorm first: the encoder's ReLU6 features differ in scale channel by channel."""
    hidden = config.text_config.hidden_size
    out = sum(len(w) + 1 for w in config.visual_words) if config.token_kind == "words" else hidden
    if config.token_kind == "words" and config.projector_layers < 2:
        raise ValueError("token_kind 'words' needs projector_layers >= 2")
    layers: list[nn.Module] = [nn.LayerNorm(config.vision_dim), nn.Linear(config.vision_dim, hidden)]
    for i in range(config.projector_layers - 1):
        layers += [nn.GELU(), nn.Linear(hidden, out if i == config.projector_layers - 2 else hidden)]
    return nn.Sequential(*layers)


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
        if config.token_kind not in ("projected", "words"):
            raise ValueError(f"token_kind must be projected or words, not {config.token_kind!r}")
        self.projector = _projector(config)
        # where each image token sits on the feature grid: learned, added after projection (projected
        # tokens only: word tokens follow text place labels that the processor writes)
        self.image_positions = nn.Parameter(torch.zeros(config.image_tokens if config.token_kind == "projected" else 0,
                                                        hidden))
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        # generation is the language model's: one config, shared (trainers set its pad token here)
        self.generation_config = self.language_model.generation_config
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

    # -- word-anchored image tokens -------------------------------------------------------
    def use_word_tokens(self, words: list[list[str]], word_ids: list[list[list[int]]],
                        count_words: list[str] | None = None, count_word_ids: list[list[int]] | None = None) -> None:
        """Switch a projected-token model to word-anchored tokens (a fresh projector to slot logits);
        with ``count_words``, one more token: the number of occupied cells in words."""
        self.config.token_kind = "words"
        self.config.visual_words = [list(w) for w in words]
        self.config.visual_word_ids = [[list(i) for i in ids] for ids in word_ids]
        self.config.count_words = list(count_words) if count_words else None
        self.config.count_word_ids = [list(i) for i in count_word_ids] if count_words else None
        hidden = self.config.text_config.hidden_size
        dev, dtype = self.projector[1].weight.device, self.projector[1].weight.dtype
        self.projector = _projector(self.config).to(dev, dtype)
        self.image_positions = nn.Parameter(torch.zeros(0, hidden, device=dev, dtype=dtype))

    def slot_logits(self, image_features: torch.Tensor) -> list[torch.Tensor]:
        """[B, cells, 1280] features -> per slot, [B, cells, 1 + words] logits (index 0: nothing)."""
        logits = self.projector(image_features.to(self.projector[1].weight.dtype))
        sizes = [len(w) + 1 for w in self.config.visual_words]
        return list(torch.split(logits, sizes, dim=-1))

    def word_table(self, slot: int) -> torch.Tensor:
        """[1 + words, hidden]: a zero row (nothing), then each of the slot's words as the mean of the
        LM's input embeddings of its tokens."""
        emb = self.get_input_embeddings().weight
        rows = [emb.new_zeros(emb.shape[1])] + [emb[ids].mean(0) for ids in self.config.visual_word_ids[slot]]
        return torch.stack(rows)

    def word_tokens(self, image_features: torch.Tensor) -> torch.Tensor:
        """[B, cells * slots (+ 1), hidden]: per cell its slots in order, each the softmax-weighted mix of
        its table; with count words, then the count token (``count_distribution`` over their embeddings)."""
        logits = self.slot_logits(image_features)
        dtype = logits[0].dtype
        probs = [torch.softmax(lg.float(), -1) for lg in logits]
        per_slot = [p.to(dtype) @ self.word_table(s).to(dtype) for s, p in enumerate(probs)]
        tokens = torch.stack(per_slot, dim=2).flatten(1, 2)  # [B, cells * slots, hidden]
        if not self.config.count_tokens:
            return tokens
        dist = self.count_distribution(probs)
        table = torch.stack([self.get_input_embeddings().weight[ids].mean(0) for ids in self.config.count_word_ids])
        return torch.cat([tokens, (dist.to(dtype) @ table.to(dtype)).unsqueeze(1)], dim=1)

    def occupancy(self, probs: list[torch.Tensor]) -> torch.Tensor:
        """[B, cells]: each cell's probability of holding something, the mean over its slots of the
        probability of a word other than nothing (index 0, and a slot's word "nothing" where it has one)."""
        occupied = []
        for s, p in enumerate(probs):
            empty = p[..., 0]
            if "nothing" in self.config.visual_words[s]:
                empty = empty + p[..., 1 + self.config.visual_words[s].index("nothing")]
            occupied.append(1.0 - empty)
        return torch.stack(occupied, -1).mean(-1).clamp(0.0, 1.0)

    def count_said(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """[B]: the count token's most likely number (an index into ``count_words``), from the slot logits."""
        return self.count_distribution([torch.softmax(lg.float(), -1) for lg in logits]).argmax(-1)

    def count_distribution(self, probs: list[torch.Tensor]) -> torch.Tensor:
        """[B, len(count_words)]: the distribution of the number of occupied cells, the cells independent
        with ``occupancy``'s probabilities (a Poisson binomial, exact by recursion over the cells);
        counts past the last word are given to it."""
        occ = self.occupancy(probs)
        n = len(self.config.count_words)
        dist = occ.new_zeros(occ.shape[0], n)
        dist[:, 0] = 1.0
        for c in range(occ.shape[1]):
            p = occ[:, c:c + 1]
            shifted = torch.cat([dist.new_zeros(dist.shape[0], 1), dist[:, :-1]], 1)
            shifted[:, -1] = shifted[:, -1] + dist[:, -1]  # past the last word stays there
            dist = dist * (1 - p) + shifted * p
        return dist

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
        if self.config.token_kind == "words":
            projected = self.word_tokens(image_features).to(embeds.dtype)
        else:
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
                    image_features: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
                    reduction: str = "mean") -> torch.Tensor:
        """Per-example token-mean (``reduction="sum"``: summed) cross-entropy on the labelled tokens.

        The LM head (a 49k-word vocabulary) runs only where a label is, not on
        every position: most of a batch is image and prompt, so this saves much
        of the head's cost in training.
        """
        embeds = self.embed(input_ids, image_features, pixel_values)
        hidden = self.decoder()(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        return self._labelled_loss(hidden, labels, reduction)

    def target_loss_shared_images(self, prefix_ids: torch.Tensor, image_features: torch.Tensor,
                                  row_image: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                                  labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """``target_loss`` for rows that each begin with one image's block (``prefix_ids``: the image
        placeholders and any place words between them, the same for every image), read once per
        distinct image: its keys and values are shared by every row about it, as one prefill serves
        all the prompts about an image in generation. Attention is causal, so nothing in the block
        depends on the row: the losses and gradients are ``target_loss``'s on the whole rows, up to
        float rounding; the block is computed once an image instead of once a row.

        ``prefix_ids`` [images, P] and ``image_features`` [images, cells, dim] of the distinct images;
        ``row_image`` [rows]: each row's image; ``input_ids``, ``attention_mask``, ``labels`` [rows, T]:
        what follows the block, right-padded. The first token after the block must be unlabelled
        (a prompt), since no hidden state of the row predicts it."""
        if bool((labels[:, 0] != -100).any()):
            raise ValueError("target_loss_shared_images: a row's first token after the image is labelled")
        decoder = self.decoder()
        block = decoder(inputs_embeds=self.embed(prefix_ids, image_features), use_cache=True).cache
        block.reorder_cache(row_image)  # index_select per layer: the gradient flows back to each image once
        n, width = input_ids.shape
        prefix = prefix_ids.shape[1]
        mask = torch.cat([attention_mask.new_ones((n, prefix)), attention_mask], 1)
        pos = torch.arange(prefix, prefix + width, device=input_ids.device).expand(n, -1)
        hidden = decoder(inputs_embeds=self.embed(input_ids), attention_mask=mask, position_ids=pos, cache=block,
                         use_cache=True).last_hidden_state
        return self._labelled_loss(hidden, labels, reduction)

    def _labelled_loss(self, hidden: torch.Tensor, labels: torch.Tensor, reduction: str) -> torch.Tensor:
        """Per row, the cross-entropy of the labelled tokens predicted from ``hidden`` (position t predicts
        token t + 1): their mean, or with ``reduction="sum"`` their sum."""
        targets = labels[:, 1:]
        rows, cols = (targets != -100).nonzero(as_tuple=True)
        logits = self.get_output_embeddings()(hidden[rows, cols]).float()
        tok = nn.functional.cross_entropy(logits, targets[rows, cols], reduction="none")
        per = torch.zeros(labels.shape[0], device=tok.device).index_add(0, rows, tok)
        if reduction == "sum":
            return per
        count = torch.zeros(labels.shape[0], device=tok.device).index_add(0, rows, torch.ones_like(tok))
        return per / count.clamp(min=1)

    @property
    def base_model(self) -> "IllumeVLMBackbone":
        """The backbone (image tokens + decoder, no LM head), as Hugging Face models expose theirs:
        ``base_model(input_ids, attention_mask, pixel_values=...)`` gives hidden states aligned with
        ``input_ids`` (the image placeholders are in ``input_ids``). TRL's fused LM head reads it."""
        return IllumeVLMBackbone(self)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 image_features: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
                 **generate_kwargs):
        """Left-padded prompts in; prompt + new tokens out, as every Hugging Face ``generate`` gives
        (the language model, fed ``inputs_embeds``, returns only the new tokens: the prompt is put back)."""
        embeds = self.embed(input_ids, image_features, pixel_values)
        out = self.language_model.generate(inputs_embeds=embeds, attention_mask=attention_mask, **generate_kwargs)
        new = out if isinstance(out, torch.Tensor) else out.sequences
        prompt = input_ids.repeat_interleave(new.shape[0] // input_ids.shape[0], dim=0)
        sequences = torch.cat([prompt, new], dim=1)
        if isinstance(out, torch.Tensor):
            return sequences
        out.sequences = sequences
        return out


class IllumeVLMBackbone:
    """A view of a built-in VLM without its LM head (not a submodule: the weights stay the model's).
    Positions come from the attention mask, as in ``generate``, so a left-padded prompt is read at
    the positions it was sampled at."""

    def __init__(self, model: IllumeVLMForConditionalGeneration):
        self.model = model

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 image_features: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None, **kwargs):
        embeds = self.model.embed(input_ids, image_features, pixel_values)
        if attention_mask is not None and "position_ids" not in kwargs:
            kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.model.decoder()(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)


def grouped_attention_products(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                               attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0, **kwargs):
    """Eager attention (Llama's ``eager_attention_forward``: the same products, scaling, additive mask
    and float32 softmax) for grouped-query attention without copying the keys and values once per query
    head: each key/value head's query heads are stacked as rows of one product. SmolLM2-135M has 9
    query heads on 3 key/value heads, and while decoding ``repeat_kv`` copied the whole KV cache three
    times over in every layer at every step (a fifth of the sampler's time on a CPU)."""
    b, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    q = query.reshape(b, kv_heads, groups * q_len, dim)
    weights = torch.matmul(q, key.transpose(2, 3)) * scaling
    weights = weights.view(b, kv_heads, groups, q_len, -1)
    if attention_mask is not None:
        weights = weights + attention_mask[:, :, None, :, : key.shape[-2]]
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights.view(b, kv_heads, groups * q_len, -1), value)
    out = out.view(b, heads, q_len, dim).transpose(1, 2).contiguous()
    return out, weights.view(b, heads, q_len, -1)


def grouped_eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0, **kwargs):
    """The built-in VLM's attention on a CPU: ``grouped_attention_products`` without gradients
    (generation), Llama's eager attention itself with them (training). Grouping does not make a
    training step faster (benchmarks/generation_speed.py), and a warm-up is chaotic enough that the
    grouped products' last bits, under bf16 autocast, gave a different checkpoint (all 0.573 against
    0.612 on the demo's val questions, the same recipe and seed): trained weights stay what they were."""
    if torch.is_grad_enabled():
        return eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    return grouped_attention_products(module, query, key, value, attention_mask, scaling, dropout, **kwargs)


GROUPED_EAGER = "illume_grouped_eager"
AttentionInterface.register(GROUPED_EAGER, grouped_eager_attention)
AttentionMaskInterface.register(GROUPED_EAGER, eager_mask)


# So that AutoConfig / AutoModelForImageTextToText open a saved built-in VLM too.
AutoConfig.register(IllumeVLMConfig.model_type, IllumeVLMConfig, exist_ok=True)
AutoModelForImageTextToText.register(IllumeVLMConfig, IllumeVLMForConditionalGeneration, exist_ok=True)
