"""RL against the reward model through TRL (train/rl.py): the built-in VLM meets TRL's interface,
the stage runs, measures itself on held-out questions, resumes, and refuses bad input."""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from illume_rm.cli import cli
from illume_rm.errors import UserError
from illume_rm.records import Candidate
from illume_rm.sampling import SamplingConfig
from test_reward import LOOP

sys.path.insert(0, str(Path(__file__).parent / "plugins"))


def _sft(vlm, train, folder):
    from illume_rm.train.finetune import FinetuneConfig, finetune
    from illume_rm.train.lora import save_adapter

    finetune(vlm, train, [], FinetuneConfig(mode="gt-sft", steps=2, batch_size=4, gt_fraction=0.5), log=lambda *_: None)
    save_adapter(vlm, folder)
    return folder


@pytest.fixture(scope="module")
def stage(tmp_path_factory, tiny_vlm_path, shapes_small):
    """A tiny built-in VLM, an SFT adapter on it, and a reward model of its likelihood."""
    from illume_rm.data import load_examples
    from illume_rm.reward import RewardConfig, train_reward
    from illume_rm.vlm import load_vlm

    d = tmp_path_factory.mktemp("rl")
    train, val = load_examples(shapes_small, "train"), load_examples(shapes_small, "val")
    sft = _sft(load_vlm(tiny_vlm_path), train, d / "sft")
    rows = []
    for k, e in enumerate(train[:12]):
        rows.append((e, Candidate(id=f"{e.id}#g", example_id=e.id, answer=e.answer, rationale=e.explanations[0]), True))
        rows.append((e, Candidate(id=f"{e.id}#b", example_id=e.id, answer=e.answer,
                                  rationale="a dog runs along the beach on and on"), False))
    train_reward(rows, RewardConfig(kind="vlm-likelihood", heldout_fraction=0.0), d / "rm", vlm=load_vlm(tiny_vlm_path),
                 log=lambda *_: None)
    return {"dir": d, "sft": sft, "rm": d / "rm", "train": train, "val": val, "path": tiny_vlm_path}


def test_trl_reads_the_built_in_vlm_as_the_vlm_reads_itself(tiny_vlm_path, shapes_small):
    """TRL's log-probabilities (its fused LM head on the backbone, left-padded prompts with the image
    in them) equal the VLM's own teacher-forced ones; generate gives prompt + completion."""
    from trl.trainer.utils import add_fused_lm_head

    from illume_rm.data import load_examples
    from illume_rm.vlm import load_vlm

    vlm = load_vlm(tiny_vlm_path)
    exs = load_examples(shapes_small, "val")[:3]
    prompts = ["Q: what is it? A:", "Q: is there a small red circle in the picture? A:", "Q: how many? A:"]
    targets = [" two, seeing that", " yes", " a small blue square and more words"]
    want = vlm.target_logprobs([(e.image, p, t) for e, p, t in zip(exs, prompts, targets)])
    proc, model = vlm.processor, vlm.model
    convs = [[{"role": "user", "content": [{"type": "image", "image": e.image}, {"type": "text", "text": p}]}]
             for e, p in zip(exs, prompts)]
    enc = proc.apply_chat_template(convs, tokenize=True, return_dict=True)
    rows = [ids + proc.encode(t) + [proc.eos_token_id] for ids, t in zip(enc["input_ids"], targets)]
    width = max(map(len, rows))
    ids = torch.tensor([[proc.pad_token_id] * (width - len(r)) + r for r in rows])  # left-padded, as TRL pads prompts
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    labels = ids.masked_fill(mask == 0, -100)
    for k, p in enumerate(enc["input_ids"]):
        labels[k, : width - len(rows[k]) + len(p)] = -100  # only the completion is scored
    add_fused_lm_head(model)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, pixel_values=enc["pixel_values"], labels=labels,
                    fused_lm_head=True)
    got = out.log_probs.sum(1).tolist()
    assert got == pytest.approx(want, abs=2e-4)
    # the rendered text reads back to the same ids
    text = proc.apply_chat_template(convs[0])
    assert text == "<image>" + prompts[0]
    assert proc(text=[text], images=[[exs[0].image]], padding=False)["input_ids"][0] == enc["input_ids"][0]
    # generate: the prompt, then the new tokens
    batch = proc(text=[text], images=[[exs[0].image]], return_tensors="pt")
    seq = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert seq.shape[1] == batch["input_ids"].shape[1] + 3 and torch.equal(seq[:, : batch["input_ids"].shape[1]],
                                                                           batch["input_ids"])


def test_the_policy_adapter_moves_to_the_top_and_back(stage):
    """The built-in VLM's adapter sits on its language model; TRL trains it at the top of a PEFT
    model. Moved up and saved back, the adapter is an ordinary one and gives the policy's outputs."""
    from illume_rm.train.lora import load_adapter
    from illume_rm.train.rl import save_policy, top_level_policy
    from illume_rm.vlm import load_vlm

    items = [(e.image, "Q: what is this? A:", " a circle") for e in stage["val"][:2]]
    sft_vlm = load_vlm(stage["path"])
    load_adapter(sft_vlm, stage["sft"])
    vlm = load_vlm(stage["path"])
    policy = top_level_policy(vlm, stage["sft"])
    assert vlm.target_logprobs(items) == pytest.approx(sft_vlm.target_logprobs(items), abs=1e-5)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    with torch.no_grad():  # a training step's worth of change
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.add_(0.05 * torch.randn_like(p))
    moved = vlm.target_logprobs(items)
    assert moved != pytest.approx(sft_vlm.target_logprobs(items), abs=1e-3)
    out = stage["dir"] / "moved"
    save_policy(policy, vlm, stage["sft"], out)
    again = load_vlm(stage["path"])
    load_adapter(again, out)
    assert again.target_logprobs(items) == pytest.approx(moved, abs=1e-5)


def test_grpo_stage_measures_keeps_the_best_and_resumes(stage, monkeypatch):
    from illume_rm.train import rl
    from illume_rm.train.lora import load_adapter
    from illume_rm.vlm import load_vlm

    cfg = rl.RLConfig(algorithm="grpo", steps=4, prompts_per_step=2, num_generations=2, eval_every=2,
                      eval_examples=4, max_completion_length=6, patience=0, lr=1e-3)
    out = stage["dir"] / "grpo"
    sampling = SamplingConfig(max_new_tokens=6)
    real = rl.RLMonitor.measure

    def killed_at_4(self, step):
        if step == 4:
            raise KeyboardInterrupt("killed")
        return real(self, step)

    monkeypatch.setattr(rl.RLMonitor, "measure", killed_at_4)
    with pytest.raises(KeyboardInterrupt):
        rl.run_rl(load_vlm(stage["path"]), stage["sft"], stage["rm"], stage["train"], stage["val"], cfg, out, sampling,
                  log=lambda *_: None)
    assert (out / "trl" / "checkpoint-2").is_dir() and not (out / "rl.json").exists()
    assert not (out / "adapter").exists()  # nothing a finished stage has
    monkeypatch.setattr(rl.RLMonitor, "measure", real)
    logs = []
    report = rl.run_rl(load_vlm(stage["path"]), stage["sft"], stage["rm"], stage["train"], stage["val"], cfg, out,
                       sampling, log=logs.append)
    assert any("resuming from" in line and "checkpoint-2" in line for line in logs)
    assert [e["step"] for e in report["evaluations"]] == [0, 2, 4]  # each evaluation once, across the kill
    assert report["steps_run"] == 4 and report["evaluations"][0]["kl"] == 0.0
    assert report["evaluations"][-1]["kl"] != 0.0  # the policy moved
    assert set(report["evaluations"][0]) >= {"reward", "gold", "accuracy", "kl", "length"}
    assert report["reward_weights"] == {"reward_model": 1.0}
    assert (out / "rl.png").exists() and not (out / "trl").exists()
    best = max(report["evaluations"], key=lambda e: e["gold"])
    assert report["best_step"] == best["step"]
    vlm = load_vlm(stage["path"])
    load_adapter(vlm, out / "adapter")  # an ordinary adapter
    # done: a rerun returns the report and trains nothing
    assert rl.run_rl(load_vlm(stage["path"]), stage["sft"], stage["rm"], stage["train"], stage["val"], cfg, out,
                     sampling, log=lambda *_: None) == report


def test_rloo_and_the_answer_prompt_with_answer_and_plugin_rewards(stage):
    from illume_rm.train import rl
    from illume_rm.vlm import load_vlm

    cfg = rl.RLConfig(algorithm="rloo", steps=1, prompts_per_step=2, num_generations=2, eval_every=1, eval_examples=2,
                      max_completion_length=6, prompt="answer", answer_weight=0.5,
                      plugins={"length_scorer:ten_words": 0.25})
    report = rl.run_rl(load_vlm(stage["path"]), stage["sft"], stage["rm"], stage["train"], stage["val"], cfg,
                       stage["dir"] / "rloo", SamplingConfig(max_new_tokens=6), log=lambda *_: None)
    assert report["algorithm"] == "rloo"
    assert report["reward_weights"] == {"reward_model": 1.0, "answer_correct": 0.5, "plugin_length_scorer_ten_words": 0.25}
    logged = report["train_log"][0]
    assert {"rewards/answer_correct/mean", "rewards/plugin_length_scorer_ten_words/mean"} <= set(logged)


def test_completions_become_candidates():
    from illume_rm.train.rl import completion_candidate

    c = completion_candidate("q1", " Giraffe, seeing that it has a long neck. Q: next")
    assert (c.answer, c.rationale) == ("giraffe", "it has a long neck")
    assert completion_candidate("q1", " yes").rationale == ""
    c = completion_candidate("q1", " it has a long neck.", answer="giraffe")
    assert (c.answer, c.rationale) == ("giraffe", "it has a long neck")


def test_bad_rewards_and_settings_are_refused(stage):
    from illume_rm.train import rl
    from illume_rm.vlm import load_vlm

    by_id = {e.id: e for e in stage["train"]}
    ids = [stage["train"][0].id] * 2
    from illume_rm.selectors import make_scorer

    class Raw:  # a scorer as it is, without the checks the selectors wrap plugins in
        def __init__(self, values):
            self.values = values

        def score(self, examples, candidates):
            return self.values

    with pytest.raises(UserError, match="not a finite number"):
        rl.ScorerReward(Raw([float("nan")] * 2), by_id, "nan", rationale=False)(None, ["a b", "c"], ids)
    with pytest.raises(UserError, match="returned 1 values for 2"):
        rl.ScorerReward(Raw([1.0]), by_id, "short", rationale=False)(None, ["a b", "c"], ids)
    with pytest.raises(UserError, match="reward plugin_nan returned a value that is not a finite number"):
        rl.ScorerReward(make_scorer("length_scorer:not_a_number"), by_id, "plugin_nan", rationale=False)(
            None, ["a b"], ids[:1])
    with pytest.raises(UserError, match="beta must be >= 0"):
        rl.RLConfig(algorithm="grpo", beta=-0.1).check()
    with pytest.raises(UserError, match="answer_weight"):
        rl.RLConfig(algorithm="grpo", answer_weight=1.0).check()
    cfg = rl.RLConfig(algorithm="grpo", steps=1, prompts_per_step=2, num_generations=2, eval_examples=2)
    other = stage["dir"] / "rm-other-data"
    shutil.copytree(stage["rm"], other, dirs_exist_ok=True)
    meta = json.loads((other / "reward.json").read_text())
    meta["origin"] = {"data": "0123abcd", "data_name": "vqa-x", "warm_up": str(stage["path"])}
    (other / "reward.json").write_text(json.dumps(meta))
    out = stage["dir"] / "refused"
    with pytest.raises(UserError, match="other data"):
        rl.run_rl(load_vlm(stage["path"]), stage["sft"], other, stage["train"], stage["val"], cfg, out,
                  SamplingConfig(), data_key="fedcba98", log=lambda *_: None)
    meta["origin"] = {"data": "fedcba98", "warm_up": "/some/other/warm-up"}
    (other / "reward.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="another model"):
        rl.run_rl(load_vlm(stage["path"]), stage["sft"], other, stage["train"], stage["val"], cfg, out,
                  SamplingConfig(), data_key="fedcba98", warm_up=stage["path"], log=lambda *_: None)
    with pytest.raises(UserError, match="no reward.json"):
        rl.run_rl(load_vlm(stage["path"]), stage["sft"], stage["dir"] / "nothing", stage["train"], stage["val"], cfg,
                  out, SamplingConfig(), log=lambda *_: None)
    assert not out.exists()  # refused before anything is written


def test_rl_in_the_loop_and_from_the_command_line(tmp_path, tiny_vlm_path):
    """An iteration fine-tunes by SFT, then runs RL from that adapter against the reward loop's model;
    `illume-rm rl` runs one stage; bad settings exit 2 with one line."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(LOOP.format(base=tiny_vlm_path).replace("  refresh: 4\n", "")
                      .replace("max_iterations: 2", "max_iterations: 1").replace("val: 4", "val: 12") +
                      "rl: {algorithm: grpo, steps: 2, prompts_per_step: 2, num_generations: 2, eval_every: 2, "
                      "eval_examples: 4, max_completion_length: 6}\n")
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["iterate", str(recipe), "--run", str(run)])
    assert r.exit_code == 0, r.output
    d = run / "iter-000"
    for name in ("sft-adapter/adapter_config.json", "rl/rl.json", "rl/rl.png", "adapter/adapter_config.json",
                 "metrics.json"):
        assert (d / name).exists(), name
    report = json.loads((d / "rl" / "rl.json").read_text())
    assert Path(report["reward_model"]) == run / "reward-model"
    assert [e["step"] for e in report["evaluations"]] == [0, 2]
    # the held-out questions are not the evaluated ones
    evaluated = {json.loads(line)["example_id"] for line in (d / "val_candidates.jsonl").read_text().splitlines()}
    assert len(evaluated) == 6
    # one stage from the command line
    out = tmp_path / "one"
    r = CliRunner().invoke(cli, ["rl", str(recipe), "--adapter", str(d / "sft-adapter"), "--reward",
                                 str(run / "reward-model"), "--out", str(out), "--algorithm", "rloo",
                                 "--set", "rl.steps=1", "--set", "rl.eval_every=1"])
    assert r.exit_code == 0, r.output
    assert "| step | reward model |" in r.output and (out / "adapter" / "adapter_config.json").exists()
    for bad, words in ((["--set", "rl.beta=-1"], "beta must be >= 0"),
                       (["--set", "rl.algorithm=ppo"], "rl.algorithm: unknown value 'ppo'"),
                       (["--set", "rl.plugins={nope.module:fn: 1.0}"], "rl.plugins")):
        r = CliRunner().invoke(cli, ["rl", str(recipe), "--adapter", str(d / "sft-adapter"), "--reward",
                                     str(run / "reward-model"), "--out", str(tmp_path / "bad"), *bad])
        assert r.exit_code == 2 and words in r.output, (bad, r.output)
    assert not (tmp_path / "bad").exists()
    r = CliRunner().invoke(cli, ["iterate", str(recipe), "--run", str(tmp_path / "nope"),
                                 "--set", "selector.name=critic"])
    assert r.exit_code == 2 and "RL needs a reward model" in r.output


def test_grpo_on_a_hugging_face_vlm(tmp_path, shapes_small):
    """Any local image-text-to-text model: a tiny LLaVA, its processor given the prompt format that
    SFT and evaluation use (the image token, then the text)."""
    from illume_rm.data import load_examples
    from illume_rm.reward import RewardConfig, train_reward
    from illume_rm.train import rl
    from illume_rm.train.lora import load_adapter
    from illume_rm.vlm import load_vlm
    from test_vlm import tiny_llava

    path = tiny_llava(tmp_path / "llava")
    train, val = load_examples(shapes_small, "train"), load_examples(shapes_small, "val")
    sft = _sft(load_vlm(path), train, tmp_path / "sft")
    rows = [(e, Candidate(id=f"{e.id}#{y}", example_id=e.id, answer=e.answer,
                          rationale=e.explanations[0] if y else "nothing at all here and more"), y)
            for e in train[:8] for y in (True, False)]
    train_reward(rows, RewardConfig(epochs=1, batch_size=8, heldout_fraction=0.0), tmp_path / "rm",
                 log=lambda *_: None)  # a cross-encoder: the likelihood reward reads the built-in VLM only
    vlm = load_vlm(path)
    # TRL asks for a generation prompt; a begun reply is continued instead, as vlm/hf.py writes it
    from illume_rm.vlm.hf import chat_messages

    begun = chat_messages("Q: what is it? A: yes, seeing that", has_image=True)
    rendered = rl.trl_processor(vlm).apply_chat_template(begun, tokenize=False, add_generation_prompt=True)
    assert rendered == vlm._render(begun, reply_done=False) and rendered.endswith("ASSISTANT: yes, seeing that")
    cfg = rl.RLConfig(algorithm="grpo", steps=2, prompts_per_step=2, num_generations=2, eval_every=2, eval_examples=2,
                      max_completion_length=5, patience=0, lr=1e-2)
    report = rl.run_rl(vlm, sft, tmp_path / "rm", train, val, cfg, tmp_path / "out", SamplingConfig(max_new_tokens=5),
                       log=lambda *_: None)
    assert [e["step"] for e in report["evaluations"]] == [0, 2] and report["evaluations"][1]["kl"] != 0.0
    again = load_vlm(path)
    load_adapter(again, tmp_path / "out" / "adapter")


def test_rl_settings_of_a_run_without_rl_are_no_difference(tmp_path, tiny_vlm_path):
    """A sweep's base recipe sets rl: for its RL cells; its other cells run none, and their folders,
    made before, are the same runs."""
    from illume_rm.config import load_recipe
    from illume_rm.loop import Run

    recipe = tmp_path / "r.yaml"
    recipe.write_text(LOOP.format(base=tiny_vlm_path))
    Run(load_recipe(str(recipe)), tmp_path / "run", tiny_vlm_path).prepare()
    Run(load_recipe(str(recipe), ["rl.steps=9", "rl.lr=1e-3"]), tmp_path / "run", tiny_vlm_path).prepare()
    with pytest.raises(UserError, match="started with another recipe"):
        Run(load_recipe(str(recipe), ["rl.algorithm=grpo"]), tmp_path / "run", tiny_vlm_path).prepare()


def test_trainer_arguments_turn_checkpointing_off_without_a_deprecation_warning(tmp_path):
    """TRL turns activation checkpointing on by default; the stage turns it off, by the name this
    transformers takes (the old one prints a FutureWarning on every RL stage)."""
    import warnings

    import torch

    from illume_rm.train.rl import RLConfig, _trainer_args

    for algorithm in ("grpo", "rloo"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            args = _trainer_args(RLConfig(algorithm=algorithm), tmp_path / algorithm, 0, torch.device("cpu"))
        assert not args.gradient_checkpointing
        assert not [w for w in caught if "checkpointing" in str(w.message)]
