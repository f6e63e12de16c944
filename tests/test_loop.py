import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from illume_rm.cli import cli
from illume_rm.records import Candidate, Judgement, read_jsonl

RECIPE = """
name: tiny-loop
seed: 0
data:
  name: shapes
  shapes: {{train: 12, val: 4, test: 2, image_size: 64}}
model: {{base: "{base}", image_size: 64}}
warmup: {{steps: 2, batch_size: 4}}
sampling: {{samples_per_temperature: 2, max_new_tokens: 8, batch_size: 4, train_examples: 8, eval_examples: 6}}
selector:
  name: critic
  rule: {{kind: adaptive, threshold: 0.7, min_accept: 3, floor: 0.0}}
finetune: {{steps: 2, batch_size: 4}}
loop: {{max_iterations: 2, patience: 5}}
evaluation: {{scorer: python}}
"""


@pytest.fixture()
def recipe(tmp_path, tiny_vlm_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE.format(base=tiny_vlm_path))
    return path


def counts(run: Path) -> dict:
    out = {}
    for d in sorted(run.glob("iter-*")):
        for name in ("candidates.jsonl", "judgements.jsonl", "train.jsonl", "val_candidates.jsonl"):
            cls = Judgement if name.startswith("judgements") else Candidate
            recs = read_jsonl(d / name, cls)
            ids = [getattr(r, "id", None) or r.candidate_id for r in recs]
            assert len(ids) == len(set(ids)), f"duplicate ids in {d / name}"
            out[f"{d.name}/{name}"] = len(recs)
    return out


def test_iterate_writes_the_run_folder_and_report(recipe, tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["iterate", str(recipe), "--run", str(run)])
    assert r.exit_code == 0, r.output
    for name in ("recipe.yaml", "report.md", "curves.png", "loop.json", "base/metrics.json"):
        assert (run / name).exists(), name
    for i in (0, 1):
        d = run / f"iter-{i:03d}"
        assert (d / "adapter" / "adapter_config.json").exists()
        m = json.loads((d / "metrics.json").read_text())
        assert {"answer_accuracy", "unfiltered", "filtered", "grounded_rate"} <= set(m)
    # accepted rationales accumulate
    first = read_jsonl(run / "iter-000" / "train.jsonl", Candidate)
    second = read_jsonl(run / "iter-001" / "train.jsonl", Candidate)
    assert first and [c.id for c in second[: len(first)]] == [c.id for c in first]
    report = (run / "report.md").read_text()
    assert "| iter-001 |" in report and "## Selection" in report
    assert "reached 2 iteration(s)" in json.loads((run / "loop.json").read_text())["stopped"]
    # a rerun redoes nothing and changes nothing
    before = counts(run)
    mtime = (run / "iter-001" / "metrics.json").stat().st_mtime_ns
    assert CliRunner().invoke(cli, ["iterate", str(recipe), "--run", str(run)]).exit_code == 0
    assert counts(run) == before and (run / "iter-001" / "metrics.json").stat().st_mtime_ns == mtime


def test_killed_in_the_middle_of_a_stage_then_resumed(recipe, tmp_path):
    reference = tmp_path / "reference"
    assert CliRunner().invoke(cli, ["iterate", str(recipe), "--run", str(reference)]).exit_code == 0
    run = tmp_path / "killed"
    exe = Path(sys.executable).parent / "illume-rm"
    proc = subprocess.Popen([str(exe), "iterate", str(recipe), "--run", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 300
    # kill as soon as the first stage of iteration 0 is written: the next stage is then under way
    while not (run / "iter-000" / "candidates.jsonl").exists():
        assert proc.poll() is None and time.time() < deadline, "iterate ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "loop.json").exists()
    r = CliRunner().invoke(cli, ["iterate", str(recipe), "--run", str(run)])
    assert r.exit_code == 0, r.output
    assert counts(run) == counts(reference)
    assert not list(run.rglob("*.tmp*"))  # what the killed process left half-written is gone


def test_bad_inputs_exit_2(recipe, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text() + "\nloop_extra: 1\n")
    r = CliRunner().invoke(cli, ["iterate", str(bad), "--run", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown key 'loop_extra'" in r.output
    r = CliRunner().invoke(cli, ["evaluate", str(recipe), "--checkpoint", str(tmp_path / "gone")])
    assert r.exit_code == 2 and "gone does not exist" in r.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = CliRunner().invoke(cli, ["select", str(empty), str(recipe), "--out", str(tmp_path / "j.jsonl")])
    assert r.exit_code == 2 and "holds no candidates" in r.output
    assert not (tmp_path / "j.jsonl").exists()


def test_a_custom_scorer_from_a_separate_module_runs_in_iterate(recipe, tmp_path, monkeypatch):
    plugins = Path(__file__).parent / "plugins"
    monkeypatch.syspath_prepend(str(plugins))
    run = tmp_path / "custom"
    r = CliRunner().invoke(cli, ["iterate", str(recipe), "--run", str(run), "--set", "loop.max_iterations=1",
                                 "--set", "selector.name=length_scorer:ten_words",
                                 "--set", "selector.rule={kind: topk, k: 1, floor: 0.0}"])
    assert r.exit_code == 0, r.output
    judgements = read_jsonl(run / "iter-000" / "judgements.jsonl", Judgement)
    assert judgements and {j.selector for j in judgements} == {"plugin:length_scorer:ten_words" + "top1>=0"}
    selection = json.loads((run / "iter-000" / "selection.json").read_text())
    assert selection["judgements_by_kind"] == {"plugin": len(judgements)}
    assert selection["accepted"] == selection["examples_with_accepted"]  # top-1 per question


def test_a_run_folder_belongs_to_one_warm_up_checkpoint(recipe, tmp_path):
    from illume_rm.config import load_recipe
    from illume_rm.errors import UserError
    from illume_rm.loop import Run

    r = load_recipe(str(recipe))
    Run(r, tmp_path / "run", tmp_path / "warm-a").prepare()
    Run(r, tmp_path / "run", tmp_path / "warm-a").prepare()  # the same start: resumes
    with pytest.raises(UserError, match="another warm-up checkpoint"):
        Run(r, tmp_path / "run", tmp_path / "warm-b").prepare()
    # a run started before model.cell_places existed (its recipe.yaml lacks the key) was laid out
    # "before": it continues with that layout and is refused with today's default
    import yaml

    old = tmp_path / "old-run"
    Run(load_recipe(str(recipe), ["model.cell_places=before"]), old, tmp_path / "warm-a").prepare()
    saved = yaml.safe_load((old / "recipe.yaml").read_text())
    assert saved["model"].pop("cell_places") == "before"
    (old / "recipe.yaml").write_text(yaml.safe_dump(saved))
    Run(load_recipe(str(recipe), ["model.cell_places=before"]), old, tmp_path / "warm-a").prepare()
    with pytest.raises(UserError, match="another recipe"):
        Run(load_recipe(str(recipe), ["model.cell_places=around"]), old, tmp_path / "warm-a").prepare()
    # results from a version that did not record its warm-up start are not taken as this start's
    (tmp_path / "run" / "warm-up.txt").unlink()
    (tmp_path / "run" / "iter-000").mkdir()
    with pytest.raises(UserError, match="not the warm-up checkpoint they started from"):
        Run(r, tmp_path / "run", tmp_path / "warm-a").prepare()
    assert not (tmp_path / "run" / "warm-up.txt").exists()  # nothing written


def test_sample_select_finetune_evaluate_by_hand(recipe, tmp_path, tiny_vlm_path):
    """The stages one command at a time, as a user scripting the loop does: each reads the last's file."""
    def cli_ok(*args):
        r = CliRunner().invoke(cli, [str(a) for a in args])
        assert r.exit_code == 0, r.output
        return r.output

    base = ["--checkpoint", tiny_vlm_path]
    cands = tmp_path / "cands.jsonl"
    out = cli_ok("sample", recipe, "--out", cands, *base)
    sampled = read_jsonl(cands, Candidate)
    assert f"wrote {len(sampled)} candidates" in out and len(sampled) == 8 * 2 * 2  # 8 questions x 2 temps x 2
    judged = tmp_path / "judgements.jsonl"
    cli_ok("select", cands, recipe, "--selector", "critic", "--out", judged)
    judgements = read_jsonl(judged, Judgement)
    assert [j.candidate_id for j in judgements] == [c.id for c in sampled]
    accepted_ids = {j.candidate_id for j in judgements if j.accepted}
    accepted = tmp_path / "accepted.jsonl"
    from illume_rm.records import write_jsonl

    write_jsonl(accepted, [c for c in sampled if c.id in accepted_ids])
    adapter = tmp_path / "adapter"
    cli_ok("finetune", recipe, "--accepted", accepted, "--out", adapter, *base)
    assert (adapter / "adapter_config.json").exists()
    metrics = tmp_path / "m.json"
    out = cli_ok("evaluate", recipe, "--adapter", adapter, "--out", metrics, *base)
    m = json.loads(metrics.read_text())
    assert m["n"] == 6 and "grounded_rate" in m and "NLG scorer: python" in out


@pytest.mark.parametrize("mode, explained", [("gt-sft", True), ("answer-only", False)])
def test_the_baseline_and_the_control_train_once(recipe, tmp_path, mode, explained):
    """gt-sft trains on the reference explanations, answer-only on answers alone; one fine-tuning each."""
    run = tmp_path / mode
    r = CliRunner().invoke(cli, ["iterate", str(recipe), "--run", str(run), "--set", f"finetune.mode={mode}"])
    assert r.exit_code == 0, r.output
    assert (run / "iter-000" / "adapter" / "adapter_config.json").exists() and not (run / "iter-001").exists()
    assert "reached 1 iteration(s)" in json.loads((run / "loop.json").read_text())["stopped"]
    line = next(x for x in r.output.splitlines() if x.startswith(f"fine-tuning ({mode})"))
    n_explained = int(line.split(": ")[1].split()[0])
    assert (n_explained > 0) is explained, line


def test_patience_stops_the_loop_when_the_metric_stalls(recipe, tmp_path, monkeypatch):
    """loop.patience: stop after that many iterations without a new best of loop.metric."""
    import illume_rm.evaluate.report as report
    from illume_rm.config import load_recipe
    from illume_rm.loop import Run

    r = load_recipe(str(recipe), ["loop.max_iterations=6", "loop.patience=2", "loop.metric=ROUGE-L"])
    run = Run(r, tmp_path / "run", tmp_path / "warm", log=lambda s: None)
    values = iter([12.0, 11.0, 11.5, 30.0, 40.0])  # best at iteration 0, then two without a new best
    ran = []

    def iteration(i):
        ran.append(i)
        return {"unfiltered": {"ROUGE-L": next(values)}}, None

    monkeypatch.setattr(run, "evaluate_stage", lambda *a, **k: {"unfiltered": {"ROUGE-L": 10.0}})
    monkeypatch.setattr(run, "iteration", iteration)
    monkeypatch.setattr(report, "write_report", lambda *a, **k: None)
    history = run.run()
    assert ran == [0, 1, 2] and len(history) == 4
    stopped = json.loads((tmp_path / "run" / "loop.json").read_text())
    assert stopped == {"stopped": "val ROUGE-L has not improved for 2 iteration(s)", "iterations": 3}
