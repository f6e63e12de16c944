"""``warmup.micro_batch`` / ``finetune.micro_batch``: a step's rows a few at a time (gradient
accumulation), the same step up to rounding, for machines with less memory."""
import json

import pytest
import torch
from click.testing import CliRunner

from illume_rm.cli import cli


def _grads(params):
    return [p.grad.detach().clone() for p in params]


def test_micro_batches_give_the_whole_batchs_gradient_and_loss(tiny_vlm_path, shapes_small):
    """Uneven parts (3 + 3 + 1 rows), unequal per-item weights and an extra term counted in its own
    units: the accumulated gradient and the loss are the whole batch's."""
    from illume_rm.data import load_examples
    from illume_rm.distributed import processes
    from illume_rm.train.lora import LoraConfig, add_lora
    from illume_rm.train.steps import _accumulate
    from illume_rm.vlm import load_vlm
    from illume_rm.vlm.base import answer_prompt

    train = load_examples(shapes_small, "train")[:7]
    vlm = load_vlm(tiny_vlm_path)
    torch.manual_seed(0)
    model = add_lora(vlm, LoraConfig(r=4, alpha=8))
    for n, p in model.named_parameters():  # LoRA's B starts at zero; give it weight so every path has a gradient
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    params = [p for p in model.parameters() if p.requires_grad]
    items = [(ex.image, answer_prompt(ex), " " + ex.answer) for ex in train]
    weights = [3.0, 1.0, 1.0, 3.0, 1.0, 1.0, 2.0]

    def extra(batch):  # a term that is a mean over its own units (two a row), as the warm-up's per-cell term
        return 0.5 * vlm.loss(batch[::-1]), 2 * len(batch)

    model.train()
    whole = vlm.loss(items, weights) + extra(items)[0]
    whole.backward()
    expected = _grads(params)
    for p in params:
        p.grad = None
    got = _accumulate(vlm, processes(), items, weights, extra, micro_batch=3, precision="fp32")
    assert float(got) == pytest.approx(whole.item(), rel=1e-6)
    for g, e in zip(_grads(params), expected):
        # rounding scales with a tensor's largest terms, not each element's own size (an element of 4e-4
        # in a tensor of larger ones differed by 1.8e-7 on an AVX2-only CPU, whose kernels sum in
        # another order)
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5 * float(e.abs().max()))
    assert sum(float(e.abs().sum()) for e in expected) > 0
    # without the weights' shares the parts would not add up to the batch: the check can fail
    for p in params:
        p.grad = None
    _accumulate(vlm, processes(), items, None, extra, micro_batch=3, precision="fp32")
    assert any(not torch.allclose(g, e, rtol=1e-3) for g, e in zip(_grads(params), expected))


def test_micro_batch_is_a_recipe_setting_checked_before_any_work(tiny_vlm_path, tmp_path):
    from illume_rm.config import load_recipe

    base = ["warmup", "--set", f"model.base={tiny_vlm_path}", "--set", "model.image_size=64",
            "--set", "data.shapes={train: 12, val: 4, test: 2, image_size: 64}"]
    r = CliRunner().invoke(cli, base + ["--set", "warmup.micro_batch=-1", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "warmup.micro_batch: 0 (the whole batch at once) or more, got -1" in r.output
    assert not (tmp_path / "a").exists()
    r = CliRunner().invoke(cli, ["sample", "--set", f"model.base={tiny_vlm_path}", "--set", "finetune.micro_batch=-2",
                                 "--out", str(tmp_path / "b.jsonl")])
    assert r.exit_code == 2 and "finetune.micro_batch" in r.output and not (tmp_path / "b.jsonl").exists()
    # trains, part by part (batches of 4 in parts of 3 and 1), and says so in warmup.json
    r = CliRunner().invoke(cli, base + ["--set", "warmup.micro_batch=3", "--set", "warmup.steps=2", "--set",
                                        "warmup.batch_size=4", "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "a" / "warmup.json").read_text())
    assert report["config"]["micro_batch"] == 3 and len(report["losses"]) == 2
    # the default leaves existing cache keys as they were; another value is another checkpoint
    plain = load_recipe(None, [f"model.base={tiny_vlm_path}"])
    assert plain.hash("warmup") == load_recipe(None, ["warmup.micro_batch=0"]).hash("warmup")
    assert plain.hash("warmup") != load_recipe(None, ["warmup.micro_batch=8"]).hash("warmup")


def test_the_loops_fine_tuning_runs_in_micro_batches(tiny_vlm_path, shapes_small):
    """``finetune.micro_batch`` reaches the fine-tuning steps: the same losses as whole batches, up to
    rounding, from the same seed."""
    from illume_rm.data import load_examples
    from illume_rm.records import Candidate
    from illume_rm.train.finetune import FinetuneConfig, finetune
    from illume_rm.train.lora import LoraConfig
    from illume_rm.vlm import load_vlm

    train = load_examples(shapes_small, "train")[:12]
    accepted = [Candidate(id=f"{e.id}#0", example_id=e.id, answer=e.answer, rationale=e.explanations[0])
                for e in train[:4]]
    curves = {}
    for micro in (0, 2):
        cfg = FinetuneConfig(steps=3, batch_size=6, lr=1e-2, answer_ratio=1.0, lora=LoraConfig(r=4, alpha=8),
                             micro_batch=micro)
        curves[micro] = finetune(load_vlm(tiny_vlm_path), train, accepted, cfg, seed=1, log=lambda s: None)
    assert curves[2] == pytest.approx(curves[0], rel=1e-4)
