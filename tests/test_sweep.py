"""`illume-rm sweep`: a grid of run folders, intervals over seeds, paired differences, curves."""
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from illume_rm.cli import cli
from illume_rm.evaluate.stats import mean_ci, paired_bootstrap, t975, verdict

PLUGINS = Path(__file__).parent / "plugins"

SWEEP = """
name: tiny-sweep
seed: 0
data:
  name: shapes
  shapes: {{train: 12, val: 4, test: 2, image_size: 64}}
model: {{base: "{base}", image_size: 64}}
warmup: {{steps: 2, batch_size: 4}}
sampling: {{samples_per_temperature: 2, max_new_tokens: 8, batch_size: 4, train_examples: 6, eval_examples: 6}}
selector:
  rule: {{kind: threshold, threshold: 0.5}}
  reward: {{epochs: 1, batch_size: 8, heldout_fraction: 0.3}}
finetune: {{steps: 2, batch_size: 4}}
loop: {{max_iterations: 1, patience: 5}}
evaluation: {{scorer: python}}
sweep:
  seeds: [0, 1]
  judges: ["length_scorer:alternate"]
  gold: "length_scorer:alternate"
  budgets: [0.5]
  reward_kinds: [cross-encoder]
  references: [answer-only]
"""


def test_t_quantiles_and_intervals_match_scipy():
    from scipy import stats

    textbook = {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262, 29: 2.045, 120: 1.980}  # printed t tables, 97.5%
    for df, value in textbook.items():
        assert t975(df) == pytest.approx(value, abs=1e-3)
    values = [61.0, 64.5, 59.0, 66.0]
    m, h = mean_ci(values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=m, scale=stats.sem(values))
    assert m == pytest.approx(sum(values) / 4) and (m - h, m + h) == pytest.approx((lo, hi), abs=1e-3)
    assert mean_ci([5.0])[0] == 5.0 and mean_ci([5.0])[1] != mean_ci([5.0])[1]  # one seed: no interval


def test_paired_bootstrap_finds_a_real_difference_and_not_a_spurious_one():
    rng = random.Random(1)
    a = [float(rng.random() < 0.5) for _ in range(400)]
    same = paired_bootstrap(a, a)
    assert same["diff"] == 0 and same["low"] == same["high"] == 0 and verdict(same) == "no clear difference"
    better = [1.0 if x == 0 and rng.random() < 0.4 else x for x in a]  # about +20 points, paired
    res = paired_bootstrap(better, a)
    true = sum(better) / 400 - sum(a) / 400
    # the normal approximation to the paired difference's interval, computed independently
    d = [x - y for x, y in zip(better, a)]
    sd = (sum((v - true) ** 2 for v in d) / (len(d) - 1)) ** 0.5
    assert res["diff"] == pytest.approx(true)
    assert res["low"] == pytest.approx(true - 1.96 * sd / 20, abs=0.01) and res["high"] == pytest.approx(
        true + 1.96 * sd / 20, abs=0.01)
    assert verdict(res) == "gain" and res["p"] < 0.01
    noise = [float(rng.random() < 0.5) for _ in range(400)]
    assert verdict(paired_bootstrap(noise, a)) in ("no clear difference", "gain", "loss")
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 0.0])


@pytest.fixture
def sweep_recipe(tmp_path, tiny_vlm_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.format(base=tiny_vlm_path))
    return path


def test_a_sweep_runs_its_cells_shares_the_base_and_reports_intervals(sweep_recipe, tmp_path):
    out = tmp_path / "sweep"
    r = CliRunner().invoke(cli, ["sweep", str(sweep_recipe), "--out", str(out), "--list"])
    assert r.exit_code == 0, r.output
    names = [line.split("\t")[0] for line in r.output.strip().splitlines()]
    assert names == ["length_scorer_alternate-s0", "reward-cross-encoder-b0.5-s0", "answer-only-s0",
                     "length_scorer_alternate-s1", "reward-cross-encoder-b0.5-s1", "answer-only-s1"]
    r = CliRunner().invoke(cli, ["sweep", str(sweep_recipe), "--out", str(out)])
    assert r.exit_code == 0, r.output
    for name in names:
        assert (out / name / "loop.json").exists(), name
    # one base evaluation, shared by every cell (the same warm-up; cells vary the loop's seed)
    bases = {(out / n / "base" / "metrics.json").read_text() for n in names}
    assert len(bases) == 1
    # the reward loop's seed is half of what the gold loop of its seed spent
    for s in (0, 1):
        gold = json.loads((out / f"length_scorer_alternate-s{s}" / "iter-000" / "selection.json").read_text())
        reward = json.loads((out / f"reward-cross-encoder-b0.5-s{s}" / "iter-000" / "selection.json").read_text())
        assert gold["human_judgements"] == gold["sampled"]
        assert reward["human_judgements"] == max(2, round(0.5 * gold["human_judgements"]))
    # iteration 0's samples are shared by the cells of a seed (the same warm-up model and seed)
    for s in (0, 1):
        gold = (out / f"length_scorer_alternate-s{s}" / "iter-000" / "candidates.jsonl").read_text()
        assert (out / f"reward-cross-encoder-b0.5-s{s}" / "iter-000" / "candidates.jsonl").read_text() == gold
    # the seeds differ where the loop's randomness enters (which questions are sampled)
    first = {json.loads(l)["example_id"] for l in (out / names[0] / "iter-000" / "candidates.jsonl").open()}
    second = {json.loads(l)["example_id"] for l in (out / names[3] / "iter-000" / "candidates.jsonl").open()}
    assert first != second
    report = (out / "sweep.md").read_text()
    assert "| reward-cross-encoder-b0.5 | 2 |" in report and "±" in report
    assert "| reward-cross-encoder-b0.5 - length_scorer_alternate | grounded |" in report
    assert "| length_scorer_alternate - answer-only | accuracy |" in report
    assert "| reward-cross-encoder-b0.5 - answer-only | grounded |" in report  # reward feedback against none
    assert "ROC-AUC" in report and (out / "sweep.png").exists()
    # a rerun runs nothing again; --list says every cell is complete
    done = out / names[1] / "iter-000" / "metrics.json"
    mtime = done.stat().st_mtime_ns
    r = CliRunner().invoke(cli, ["sweep", str(sweep_recipe), "--out", str(out), "--only", "reward-*"])
    assert r.exit_code == 0 and done.stat().st_mtime_ns == mtime
    r = CliRunner().invoke(cli, ["sweep", str(sweep_recipe), "--out", str(out), "--list"])
    assert r.output.count("complete") == 6


@pytest.mark.parametrize("setting, words", [
    ("sweep.reward_kinds=[cross-encodr]", ["sweep.reward_kinds", "cross-encoder"]),
    ("sweep.budgets=[1.5]", ["sweep.budgets", "1.5"]),
    ("sweep.gold=critic", ["sweep.gold", "must be one of sweep.judges"]),
    ("sweep.references=[illume]", ["sweep.references", "answer-only or gt-sft"]),
    ("sweep.judges=[human]", ["not a simulated person"]),
    ("sweep.seeds=[1, 1]", ["appears twice"]),
    ("sweep.colour=1", ["unknown key 'colour'"]),
    ("sweep.rl=[ppo]", ["sweep.rl", "grpo or rloo"]),
    ("sweep.rl_budgets=[0.3]", ["sweep.rl_budgets", "not one of sweep.budgets"]),
])
def test_a_bad_sweep_is_refused_before_any_cell_runs(sweep_recipe, tmp_path, setting, words):
    out = tmp_path / "bad"
    r = CliRunner().invoke(cli, ["sweep", str(sweep_recipe), "--out", str(out), "--set", setting])
    assert r.exit_code == 2, r.output
    for w in words:
        assert w in r.output, (w, r.output)
    assert not out.exists()


def test_only_a_reward_cell_needs_its_gold_loop_first(sweep_recipe, tmp_path):
    out = tmp_path / "part"
    r = CliRunner().invoke(cli, ["sweep", str(sweep_recipe), "--out", str(out), "--only", "reward-*-s1"])
    assert r.exit_code == 2 and "needs the gold loop of seed 1" in r.output and "--only length_scorer_alternate-s1" in r.output
    r = CliRunner().invoke(cli, ["sweep", str(sweep_recipe), "--out", str(out), "--only", "nothing-*"])
    assert r.exit_code == 2 and "no cell matches" in r.output


def test_rl_cells_share_their_sft_cell_and_are_compared_with_it(sweep_recipe, tmp_path):
    """An RL cell is its budget's reward loop with RL after SFT: iteration 0 up to the SFT adapter is the
    SFT cell's (copied), so the pair differs by the RL stage only; the report pairs them."""
    out = tmp_path / "sweep"
    extra = ["--set", "sweep.seeds=[0]", "--set", "sweep.rl=[grpo]", "--set", "sweep.references=[]",
             "--set", "data.shapes.val=12",
             "--set", "rl={steps: 2, prompts_per_step: 2, num_generations: 2, eval_every: 2, eval_examples: 4, "
                      "max_completion_length: 6}"]
    r = CliRunner().invoke(cli, ["sweep", str(sweep_recipe), "--out", str(out), "--list", *extra])
    assert r.exit_code == 0, r.output
    names = [line.split("\t")[0] for line in r.output.strip().splitlines()]
    assert names == ["length_scorer_alternate-s0", "reward-cross-encoder-b0.5-s0", "reward-cross-encoder-b0.5-grpo-s0"]
    r = CliRunner().invoke(cli, ["sweep", str(sweep_recipe), "--out", str(out), *extra])
    assert r.exit_code == 0, r.output
    sft, rl = out / names[1] / "iter-000", out / names[2] / "iter-000"
    for name in ("candidates.jsonl", "judgements.jsonl", "selection.json"):
        assert (rl / name).read_text() == (sft / name).read_text(), name
    assert (rl / "sft-adapter" / "adapter_model.safetensors").read_bytes() == \
        (sft / "adapter" / "adapter_model.safetensors").read_bytes()
    assert (rl / "rl" / "rl.json").exists() and (rl / "metrics.json").exists()
    report = (out / "sweep.md").read_text()
    assert "| reward-cross-encoder-b0.5-grpo - reward-cross-encoder-b0.5 | grounded |" in report
    assert "| reward-cross-encoder-b0.5-grpo vs reward-cross-encoder-b0.5 |" in report  # the oracle's win rate


def test_gt_sft_at_fractions_counts_the_explanations_it_used(sweep_recipe, tmp_path):
    from illume_rm.config import load_recipe
    from illume_rm.data import load_examples

    out = tmp_path / "sweep"
    extra = ["--set", "sweep.seeds=[0]", "--set", "sweep.budgets=[]", "--set", "sweep.references=[]",
             "--set", "sweep.gt_fractions=[0.25, 0.5]"]
    r = CliRunner().invoke(cli, ["sweep", str(sweep_recipe), "--out", str(out), *extra])
    assert r.exit_code == 0, r.output
    report = (out / "sweep.md").read_text()
    n = len([e for e in load_examples(load_recipe(str(sweep_recipe)).data, "train") if e.explanations])
    assert f"| gt-sft-f0.25 | {round(n * 0.25)} |" in report and f"| gt-sft-f0.5 | {round(n * 0.5)} |" in report
    assert "| length_scorer_alternate - gt-sft-f0.5 | grounded |" in report
    assert (out / "sweep.png").exists()


def test_a_cell_that_fails_is_reported_and_the_others_run(sweep_recipe, tmp_path):
    """A reward cell whose seed holds one class cannot train its model: the sweep goes on with the
    other cells, says which failed and why, and tries it again when rerun."""
    out = tmp_path / "sweep"
    extra = ["--set", "sweep.seeds=[0]", "--set", "sweep.budgets=[0.01]", "--set", "sweep.references=[answer-only]"]
    r = CliRunner().invoke(cli, ["sweep", str(sweep_recipe), "--out", str(out), *extra])
    assert r.exit_code == 0, r.output
    assert "cell reward-cross-encoder-b0.01-s0 failed: the training judgements hold only one class" in r.output
    assert (out / "answer-only-s0" / "loop.json").exists()  # run after the failed cell
    report = (out / "sweep.md").read_text()
    assert "Cells that failed" in report and "- reward-cross-encoder-b0.01-s0: the training judgements" in report
    r = CliRunner().invoke(cli, ["sweep", str(sweep_recipe), "--out", str(out), "--list", *extra])
    assert "reward-cross-encoder-b0.01-s0\tfailed: the training judgements hold only one class" in r.output


def test_the_plot_of_data_without_scene_graphs(tmp_path):
    """VQA-X has no scene graphs, so no grounded rate: that panel says so, the others are drawn."""
    from illume_rm.sweep import Cell, plot

    def row(seed, human, budget=None):
        return {"seed": seed, "human": human, "grounded": float("nan"), "CIDEr": 20.0 + seed, "accuracy": 40.0,
                "budget": budget, "agreement": {"roc_auc": 0.7, "accuracy": 0.9, "kappa": 0.1}}

    done = {"critic": [(Cell(f"critic-s{s}", "critic", s, []), row(s, 550), {}) for s in (0, 1)],
            "reward-cross-encoder-b0.1": [(Cell(f"r-s{s}", "reward-cross-encoder-b0.1", s, [], 0.1, "reward"),
                                           row(s, 55, 0.1), {}) for s in (0, 1)]}
    plot(tmp_path / "p.png", done, "critic")
    assert (tmp_path / "p.png").stat().st_size > 10_000
