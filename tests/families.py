"""Tiny randomly initialised VLMs of the families illume-rm serves, built offline from configs (the
tokenizer is SmolLM2's with each family's special tokens added), each with its family's chat template."""
from pathlib import Path

import torch

# Idefics3 / SmolVLM's chat template (as HuggingFaceTB's processors ship it)
IDEFICS3_TEMPLATE = ("<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
                     "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
                     "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
                     "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
                     "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")


def tiny_idefics3(folder: Path) -> Path:
    """Idefics3 (SmolVLM's architecture): a SigLIP-like tower, pixel shuffle, a Llama text model."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    from illume_rm.vlm.weights import _tiny_tokenizer

    tok = _tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<fake_token_around_image>", "<image>",
                                                          "<end_of_utterance>", "<global-img>"]})
    end = tok.convert_tokens_to_ids("<end_of_utterance>")
    cfg = Idefics3Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=16),
        text_config=dict(model_type="llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, eos_token_id=end,
                         pad_token_id=tok.pad_token_id),
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2)
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = end  # the end of a turn ends a reply
    model.save_pretrained(folder)
    images = Idefics3ImageProcessorPil(size={"longest_edge": 32}, max_image_size={"longest_edge": 32},
                                       do_image_splitting=False)
    Idefics3Processor(image_processor=images, tokenizer=tok, image_seq_len=1,
                      chat_template=IDEFICS3_TEMPLATE).save_pretrained(folder)
    return folder
