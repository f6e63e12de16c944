"""The VLM families people use, behind the one VLM interface: prompts through each family's chat
template (labels on the assistant's turn only), generation with left padding and several samples,
LoRA on the language model only, adapters saved and loaded. Tiny random models of each family's own
classes, built offline (tests/families.py; LLaVA's in test_vlm.py)."""
import json
import shutil

import pytest
import torch

from families import (tiny_gemma3, tiny_idefics3, tiny_llava_next, tiny_paligemma, tiny_qwen2_5_vl, tiny_qwen2_vl,
                      tiny_smolvlm)
from illume_rm.errors import UserError
from illume_rm.vlm import load_vlm
from test_vlm import tiny_llava

FAMILIES = {"llava": (tiny_llava, "ASSISTANT:", "vision_tower"), "idefics3": (tiny_idefics3, "Assistant:", "vision_model"),
            "llava_next": (tiny_llava_next, "[/INST]", "vision_tower"),
            "gemma3": (tiny_gemma3, "<start_of_turn>model", "vision_tower"),
            "paligemma": (tiny_paligemma, "?\n", "vision_tower"),  # its prefix ends with a newline
            "qwen2_vl": (tiny_qwen2_vl, "<|im_start|>assistant", "visual"),
            "qwen2_5_vl": (tiny_qwen2_5_vl, "<|im_start|>assistant", "visual"),
            "smolvlm": (tiny_smolvlm, "Assistant:", "vision_model")}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_family_behind_the_vlm_interface(family, tmp_path, shapes_small):
    from illume_rm.data import load_examples
    from illume_rm.records import Candidate
    from illume_rm.train.finetune import FinetuneConfig, finetune
    from illume_rm.train.lora import LoraConfig, load_adapter, save_adapter
    from illume_rm.vlm.hf import TESTED_FAMILIES

    build, assistant, tower = FAMILIES[family]
    assert family in TESTED_FAMILIES
    folder = build(tmp_path / family)
    vlm = load_vlm(folder)
    assert vlm.model.config.model_type == family
    exs = load_examples(shapes_small, "train")[:8]
    items = [(exs[0].image, "Q: What is it? A:", " yes"),
             (exs[1].image, "Q: What colour? A: red, seeing that", " it is red")]
    # the chat: the user's turn with the image, then the assistant's; the reply begun is prompt
    batch, labels = vlm.labelled(items)
    tok = vlm.tokenizer
    for row, reply in zip(range(2), ("yes", " it is red")):
        said = tok.decode(batch["input_ids"][row][labels[row] != -100])
        assert said.strip().startswith(reply.strip()) and said.strip() != reply.strip(), said  # the reply, then its end
        assert assistant in tok.decode(batch["input_ids"][row][labels[row] == -100])
    # generation: left-padded prompts of different lengths, several samples each
    out = vlm.generate([(i, p, None) for i, p, _ in items], max_new_tokens=3, do_sample=True,
                       num_return_sequences=3)
    assert [len(o) for o in out] == [3, 3]
    one = vlm.generate([items[1][:2] + (None,)], max_new_tokens=3)
    assert vlm.generate([(i, p, None) for i, p, _ in items], max_new_tokens=3)[1] == one[0]  # padding changes nothing
    # LoRA on the language model only; an adapter saved and loaded gives the same loss
    accepted = [Candidate(id=f"{e.id}#0", example_id=e.id, answer=e.answer, rationale=e.explanations[0]) for e in exs]
    finetune(vlm, exs, accepted, FinetuneConfig(steps=2, batch_size=4, lr=1e-2, answer_ratio=1.0,
                                                lora=LoraConfig(r=4, alpha=8)), log=lambda s: None)
    trained = [n for n, p in vlm.model.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained) and not any(tower in n for n in trained)
    with torch.no_grad():
        tuned = float(vlm.loss(items))
    save_adapter(vlm, tmp_path / "adapter")
    again = load_vlm(folder)
    load_adapter(again, tmp_path / "adapter")
    with torch.no_grad():
        assert float(again.loss(items)) == pytest.approx(tuned, rel=1e-5)


def test_a_processor_without_a_chat_template_is_refused(tmp_path):
    folder = tiny_llava(tmp_path / "llava")
    for f in folder.glob("chat_template*"):
        f.unlink()
    cfg = folder / "processor_config.json"
    if cfg.exists():
        d = json.loads(cfg.read_text())
        d.pop("chat_template", None)
        cfg.write_text(json.dumps(d))
    with pytest.raises(UserError, match="no chat template.*chat_template.jinja"):
        load_vlm(folder)


def test_an_unsupported_family_is_named(tmp_path):
    folder = tiny_llava(tmp_path / "llava")
    shutil.copy(folder / "config.json", tmp_path / "config.orig")
    d = json.loads((folder / "config.json").read_text())
    d["model_type"] = "mystery_vlm"
    (folder / "config.json").write_text(json.dumps(d))
    with pytest.raises(UserError, match="'mystery_vlm'.*families tested here: llava"):
        load_vlm(folder)


@pytest.mark.parametrize("family", ["qwen2_vl", "smolvlm"])
def test_a_processor_with_a_video_half_opens_without_torchvision(family, tmp_path, shapes_small, monkeypatch):
    """Where torchvision does not load, a Qwen2-VL or SmolVLM folder still opens with load_vlm: the
    family's own processor class with its image half, the folder's settings (SmolVLM's image tokens per
    image) and chat template, which writes a user's turn around the image as the family's does. Where
    torchvision loads, the whole processor opens, and the image half alone encodes the same batches."""
    from illume_rm.data import load_examples
    from illume_rm.vlm.hf import _has_torchvision

    folder = FAMILIES[family][0](tmp_path / family)
    vlm = load_vlm(folder)
    names = {"qwen2_vl": "Qwen2VLProcessor", "smolvlm": "SmolVLMProcessor"}
    assert type(vlm.processor).__name__ == names[family]
    image = load_examples(shapes_small, "train")[0].image
    items = [(image, "Q: What is it? A:", None), (image, "Q: What colour? A: red, seeing that", " it is red")]
    if _has_torchvision():  # the whole processor: its image half encodes exactly as it does
        from illume_rm.vlm.hf import image_only_processor

        half = type(vlm)(vlm.model, image_only_processor(folder, family), path=str(folder))
        for targets in (False, True):
            whole, part = (v._encode(items, targets, "left") for v in (vlm, half))
            assert whole.keys() == part.keys() and all(torch.equal(whole[k], part[k]) for k in whole)
        return
    ids = vlm._encode(items[:1], False, "left")["input_ids"][0]
    text = vlm.tokenizer.decode(ids)
    if family == "qwen2_vl":  # 56 x 56 pixels: 2 x 2 merged patches, 4 image tokens between start and end
        assert "<|vision_start|>" + "<|image_pad|>" * 4 + "<|vision_end|>Q: What is it?" in text, text
    else:  # image_seq_len 1 from processor_config.json: one <image> between the fake tokens
        assert "<fake_token_around_image><global-img><image><fake_token_around_image>Q: What is it?" in text, text
    # where the image half cannot be built either, one line says why and what to install
    from illume_rm.vlm import hf

    def fails(folder, family):
        raise ValueError("no image processor for this folder")

    monkeypatch.setattr(hf, "image_only_processor", fails)
    with pytest.raises(UserError, match=f"'{family}' model holds a video processor, which needs torchvision, and "
                                        "its image half alone could not be built \\(no image processor"):
        load_vlm(folder)


def test_lora_targets_that_name_nothing_are_refused(tmp_path):
    from illume_rm.train.lora import LoraConfig, add_lora

    vlm = load_vlm(tiny_llava(tmp_path / "llava"))
    with pytest.raises(UserError, match="lora.target_modules"):
        add_lora(vlm, LoraConfig(target_modules=r".*\.no_such_layer"))


def test_the_loop_starts_from_a_pretrained_model_without_warm_up(tmp_path):
    """model.base: a local VLM folder of another family: no warm-up; iterate runs the loop on it."""
    from click.testing import CliRunner

    from illume_rm.cli import cli
    from test_loop import RECIPE

    folder = tiny_idefics3(tmp_path / "idefics3")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(base=folder).replace("max_iterations: 2", "max_iterations: 1"))
    r = CliRunner().invoke(cli, ["warmup", str(recipe)])
    assert r.exit_code == 0 and "nothing to warm up" in r.output, r.output
    r = CliRunner().invoke(cli, ["iterate", str(recipe), "--run", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "pretrained idefics3 model; no warm-up" in r.output
    assert (tmp_path / "run" / "warm-up.txt").read_text().strip() == str(folder.resolve())
    assert (tmp_path / "run" / "iter-000" / "adapter" / "adapter_config.json").exists()


def test_paligemma_reads_a_prefix_and_continues_its_suffix(tmp_path, shapes_small):
    """No chat template: the question is the prefix (attended both ways), the reply begun is the start
    of the suffix, and a prompt is exactly the training sequence up to where the target begins."""
    from illume_rm.data import load_examples

    vlm = load_vlm(tiny_paligemma(tmp_path / "pali"))
    ex = load_examples(shapes_small, "train")[0]
    item = (ex.image, "Q: What colour? A: red, seeing that", " it is red")
    batch, labels = vlm.labelled([item])
    prompt = vlm._encode([item[:2] + (None,)], False, "left")
    n = prompt["input_ids"].shape[1]
    assert torch.equal(prompt["input_ids"][0], batch["input_ids"][0, :n])
    assert torch.equal(prompt["token_type_ids"][0], batch["token_type_ids"][0, :n])
    tok = vlm.tokenizer
    suffix = batch["input_ids"][0][batch["token_type_ids"][0] == 1]
    assert tok.decode(suffix, skip_special_tokens=True) == "red, seeing that it is red"
    assert tok.decode(batch["input_ids"][0][labels[0] != -100], skip_special_tokens=True).strip() == "it is red"
    with pytest.raises(UserError, match="reads an image with every prompt"):
        vlm.generate([(None, "Q: What colour? A:", None)])
