"""Tiny randomly initialised VLMs of the families illume-rm serves, built offline from configs (the
tokenizer is SmolLM2's with each family's special tokens added), each with its family's chat template."""
import json
from pathlib import Path

import torch

# Idefics3 / SmolVLM's chat template (as HuggingFaceTB's processors ship it)
IDEFICS3_TEMPLATE = ("<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
                     "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
                     "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
                     "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
                     "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")


def idefics_model(config_cls, model_cls):
    """A tiny Idefics3-design model (a SigLIP-like tower, pixel shuffle, a Llama text model) of the given
    classes, and its tokenizer (SmolLM2's with the family's tokens)."""
    from illume_rm.vlm.weights import _tiny_tokenizer

    tok = _tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<fake_token_around_image>", "<image>",
                                                          "<end_of_utterance>", "<global-img>"]})
    end = tok.convert_tokens_to_ids("<end_of_utterance>")
    cfg = config_cls(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=16),
        text_config=dict(model_type="llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, eos_token_id=end,
                         pad_token_id=tok.pad_token_id),
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2)
    torch.manual_seed(0)
    model = model_cls(cfg)
    model.generation_config.eos_token_id = end  # the end of a turn ends a reply
    return model, tok


def tiny_idefics3(folder: Path) -> Path:
    """Idefics3 (SmolVLM's architecture): a SigLIP-like tower, pixel shuffle, a Llama text model."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    model, tok = idefics_model(Idefics3Config, Idefics3ForConditionalGeneration)
    model.save_pretrained(folder)
    images = Idefics3ImageProcessorPil(size={"longest_edge": 32}, max_image_size={"longest_edge": 32},
                                       do_image_splitting=False)
    Idefics3Processor(image_processor=images, tokenizer=tok, image_seq_len=1,
                      chat_template=IDEFICS3_TEMPLATE).save_pretrained(folder)
    return folder


# LLaVA-NeXT (Mistral/Vicuna-style [INST] template, as llava-hf's llava-v1.6-mistral ships it)
LLAVA_NEXT_TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' }}"
                       "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '<image>\\n' }}"
                       "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{{ ' [/INST]' }}"
                       "{% else %}{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}"
                       "{% endif %}{% endfor %}{{ eos_token }}{% endif %}{% endfor %}")


def clip_and_llama():
    """The tokenizer (with ``<image>``) and the tiny CLIP vision and Llama text configs of the LLaVA family."""
    from transformers import CLIPVisionConfig, LlamaConfig

    from illume_rm.vlm.weights import _tiny_tokenizer

    tok = _tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
                       eos_token_id=tok.eos_token_id)
    return tok, vision, text


def tiny_llava_next(folder: Path) -> Path:
    """LLaVA-NeXT: any-resolution tiles of a CLIP tower, a Llama text model."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    tok, vision, text = clip_and_llama()
    cfg = LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                          image_grid_pinpoints=[[32, 32], [32, 64], [64, 32], [64, 64]], vision_feature_layer=-1,
                          image_seq_length=16)
    torch.manual_seed(0)
    LlavaNextForConditionalGeneration(cfg).save_pretrained(folder)
    images = LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                        image_grid_pinpoints=[[32, 32], [32, 64], [64, 32], [64, 64]])
    LlavaNextProcessor(image_processor=images, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                       num_additional_image_tokens=1, chat_template=LLAVA_NEXT_TEMPLATE).save_pretrained(folder)
    return folder


# Gemma3's chat template, shortened (no system turn): its turns and its image marker
GEMMA3_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
                   "else message['role'] %}{{ '<start_of_turn>' + role + '\\n' }}{% for item in message['content'] %}"
                   "{% if item['type'] == 'image' %}{{ '<start_of_image>' }}{% elif item['type'] == 'text' %}"
                   "{{ item['text'] | trim }}{% endif %}{% endfor %}{{ '<end_of_turn>\\n' }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")


def tiny_gemma3(folder: Path) -> Path:
    """Gemma3: a SigLIP tower pooled to a few soft tokens, a Gemma3 text model."""
    from transformers import AutoTokenizer, Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    from illume_rm.vlm.weights import _tiny_tokenizer

    tok = _tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_image>", "<end_of_image>", "<image_soft_token>",
                                                          "<start_of_turn>", "<end_of_turn>"]})
    tok.save_pretrained(folder / "tokenizer")
    tok = AutoTokenizer.from_pretrained(folder / "tokenizer", extra_special_tokens={
        "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"})
    end = tok.convert_tokens_to_ids("<end_of_turn>")
    cfg = Gemma3Config(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, eos_token_id=end,
                         pad_token_id=tok.pad_token_id, sliding_window=64),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=8),
        mm_tokens_per_image=4, boi_token_index=tok.boi_token_id, eoi_token_index=tok.eoi_token_id,
        image_token_index=tok.image_token_id)
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = end
    model.save_pretrained(folder)
    images = Gemma3ImageProcessorPil(size={"height": 32, "width": 32})
    Gemma3Processor(image_processor=images, tokenizer=tok, image_seq_length=4,
                    chat_template=GEMMA3_TEMPLATE).save_pretrained(folder)
    return folder


def tiny_paligemma(folder: Path) -> Path:
    """PaliGemma: a SigLIP tower, a Gemma text model reading a prefix (no chat template)."""
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    from illume_rm.vlm.weights import _tiny_tokenizer

    tok = _tiny_tokenizer()
    images = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    images.image_seq_length = 16  # (32 / 8) ** 2 patches
    processor = PaliGemmaProcessor(image_processor=images, tokenizer=tok)  # adds <image> and its location tokens
    cfg = PaliGemmaConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=8, projection_dim=32),
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id),
        image_token_id=processor.image_token_id, projection_dim=32)
    torch.manual_seed(0)
    PaliGemmaForConditionalGeneration(cfg).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# -- families whose processor carries a video half ------------------------------------------------------
# Qwen2-VL, Qwen2.5-VL and SmolVLM's processors hold a video processor, which needs torchvision; the
# package registries here have only its CUDA build, which does not load against torch's CPU wheel.
# Their folders are written part by part, as the Hub holds them (the processor's own settings in
# processor_config.json, the video processor's in video_preprocessor_config.json), and load_vlm opens
# them with the processor's image half (illume-rm sends images only; vlm/hf.py: image_only_processor).
def _save_parts(folder: Path, model, tok, images, template: str, processor: dict | None = None,
                video: dict | None = None) -> Path:
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    images.save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(template)
    if processor is not None:
        (folder / "processor_config.json").write_text(json.dumps(processor))
    if video is not None:
        (folder / "video_preprocessor_config.json").write_text(json.dumps(video))
    return folder


# Qwen2-VL's chat template, shortened (no system turn): ChatML turns, the image as vision start/pad/end
QWEN2_VL_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
                     "{% for item in message['content'] %}{% if item['type'] == 'image' %}"
                     "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% elif item['type'] == 'text' %}"
                     "{{ item['text'] }}{% endif %}{% endfor %}{{ '<|im_end|>\\n' }}{% endfor %}"
                     "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def _qwen_tokenizer():
    from illume_rm.vlm.weights import _tiny_tokenizer

    tok = _tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|vision_start|>",
                                                          "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]})
    ids = {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
           "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"}
    return tok, {k: tok.convert_tokens_to_ids(v) for k, v in ids.items()}


def _qwen_text(tok) -> dict:
    # M-RoPE: the rotary dimensions split over time, height and width (head_dim 8: 4 frequencies)
    return dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0})


def _qwen_images():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    # every image resized to 56 x 56 pixels: 4 x 4 patches of 14, merged 2 x 2 into 4 image tokens
    return Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=56 * 56)


def _tiny_qwen(folder: Path, config_cls, model_cls, vision: dict) -> Path:
    tok, ids = _qwen_tokenizer()
    cfg = config_cls(vision_config=vision, text_config=_qwen_text(tok), **ids)
    torch.manual_seed(0)
    model = model_cls(cfg)
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    return _save_parts(folder, model, tok, _qwen_images(), QWEN2_VL_TEMPLATE)


def tiny_qwen2_vl(folder: Path) -> Path:
    """Qwen2-VL: a ViT over 14-pixel patches merged 2 x 2, M-RoPE, a Qwen2 text model."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    return _tiny_qwen(folder, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                      dict(depth=1, embed_dim=32, hidden_size=32, num_heads=4, mlp_ratio=2))


def tiny_qwen2_5_vl(folder: Path) -> Path:
    """Qwen2.5-VL: Qwen2-VL with windowed attention in the vision tower (one full-attention block)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    return _tiny_qwen(folder, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                      dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32,
                           window_size=56, fullatt_block_indexes=[1]))


def tiny_smolvlm(folder: Path) -> Path:
    """SmolVLM (SmolVLM2's own classes, ``smolvlm``): Idefics3's design, its own processor."""
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    model, tok = idefics_model(SmolVLMConfig, SmolVLMForConditionalGeneration)
    images = SmolVLMImageProcessorPil(size={"longest_edge": 32}, max_image_size={"longest_edge": 32},
                                      do_image_splitting=False)
    # as SmolVLM2's folders hold them: the image tokens per image, and the video sampling its chat template reads
    return _save_parts(folder, model, tok, images, IDEFICS3_TEMPLATE,
                       processor={"processor_class": "SmolVLMProcessor", "image_seq_len": 1},
                       video={"video_processor_type": "SmolVLMVideoProcessor",
                              "video_sampling": {"fps": 1, "max_frames": 64, "video_size": {"longest_edge": 32}}})

