"""One door for every judge: the loop and `illume-rm select` only call `judge(examples, candidates, ctx)`."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from illume_rm.cli import cli
from illume_rm.config import SelectorConfig
from illume_rm.records import Candidate, Example, Judgement, read_jsonl
from illume_rm.selectors import (JUDGES, SCORERS, HumanJudge, Judge, JudgeContext, RewardLoopJudge, Rule, Selector,
                                 Verdicts, make_judge)

from test_loop import RECIPE

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture
def recipe(tmp_path, tiny_vlm_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE.format(base=tiny_vlm_path))
    return path


def test_every_built_in_judge_is_a_judge():
    for name in [*SCORERS, *JUDGES]:
        cfg = SelectorConfig(name=name, seed_selector="oracle")
        judge = make_judge(cfg)
        assert isinstance(judge, Judge), name
    assert isinstance(make_judge(SelectorConfig(name="human")), HumanJudge)
    reward = make_judge(SelectorConfig(name="reward", seed_selector="critic"))
    assert isinstance(reward, RewardLoopJudge) and reward.seed.kind == "critic"


def test_verdicts_count_by_kind_and_the_human_budget():
    ex = Example(id="e", question="What colour is the circle?", answers=["red"], explanations=["the circle is red"])
    cands = [Candidate(id=f"c{i}", example_id="e", answer="red", rationale=r)
             for i, r in enumerate(["the circle is red", "it is blue", "the circle is red and round"])]
    critic = make_judge(SelectorConfig(name="critic", rule=Rule("threshold", threshold=0.7)))
    v = critic.judge({"e": ex}, cands, None)
    assert [j.accepted for j in v.judgements] == [True, False, True]
    assert v.by_kind == {"critic": 3} and v.people == 3  # the critic simulates a person: the human budget
    gate = make_judge(SelectorConfig(name="answer", rule=Rule("threshold", threshold=0.5)))
    assert gate.judge({"e": ex}, cands, None).people == 0  # a check of the answer is no person's judgement
    both = v + Verdicts([], {"reward": 2}, 0)
    assert both.by_kind == {"critic": 3, "reward": 2} and both.people == 3


def test_a_plugin_counts_as_a_person_only_when_it_says_so(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    ex = Example(id="e", question="q?", answers=["a"], explanations=["x"])
    cands = [Candidate(id="c", example_id="e", answer="a", rationale="one two")]
    v = make_judge(SelectorConfig(name="length_scorer:ten_words", rule=Rule("threshold", threshold=0.0))).judge(
        {"e": ex}, cands, None)
    assert v.by_kind == {"plugin": 1} and v.people == 0

    class Person:
        name, people = "me", True

        def score(self, examples, candidates):
            return [1.0] * len(candidates)

    v = Selector(Person(), Rule("threshold", threshold=0.5)).judge({"e": ex}, cands)
    assert v.by_kind == {"plugin": 1} and v.people == 1


def test_a_new_judge_needs_only_the_registry(recipe, tmp_path, monkeypatch):
    """A judge added to JUDGES runs in `iterate`, and its own accounting reaches selection.json."""
    calls = []

    class Coin:
        name = kind = "coin"

        def judge(self, examples, candidates, ctx):
            calls.append((ctx.run_dir, ctx.iteration))
            js = [Judgement(candidate_id=c.id, accepted=k % 2 == 0, score=float(k % 2 == 0), selector="coin")
                  for k, c in enumerate(candidates)]
            return Verdicts(js, {"coin": len(js)}, people=len(js))

    monkeypatch.setitem(JUDGES, "coin", lambda cfg, seed: Coin())
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["iterate", str(recipe), "--run", str(run), "--set", "selector.name=coin",
                                 "--set", "loop.max_iterations=1"])
    assert r.exit_code == 0, r.output
    assert calls == [(run, 0)]
    selection = json.loads((run / "iter-000" / "selection.json").read_text())
    assert selection["judgements_by_kind"] == {"coin": selection["sampled"]}
    assert selection["human_judgements"] == selection["sampled"]
    assert selection["accepted"] == (selection["sampled"] + 1) // 2


def test_people_leave_pending_work_and_nothing_is_written(recipe, tmp_path):
    cands = tmp_path / "c.jsonl"
    r = CliRunner().invoke(cli, ["sample", str(recipe), "--out", str(cands)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "j.jsonl"
    r = CliRunner().invoke(cli, ["select", str(cands), str(recipe), "--selector", "human", "--out", str(out)])
    assert r.exit_code == 0 and "waiting for people" in r.output and "illume-rm annotate" in r.output
    assert "illume-rm select" in r.output  # rerun the command that asked
    assert not out.exists()
    assert (tmp_path / "annotations.sqlite").exists()  # the page's store, in the folder of --out


def test_the_reward_judge_is_not_its_own_seed(recipe, tmp_path):
    r = CliRunner().invoke(cli, ["select", str(tmp_path / "c.jsonl"), str(recipe), "--selector", "reward",
                                 "--set", "selector.seed_selector=reward", "--out", str(tmp_path / "j.jsonl")])
    assert r.exit_code == 2 and "seed_selector" in r.output


def test_human_judge_pending_then_verdicts(tmp_path, shapes_small):
    from illume_rm.annotate.store import Store
    from illume_rm.data import load_examples

    train = load_examples(shapes_small, "train")[:2]
    by_id = {e.id: e for e in train}
    cands = [Candidate(id=f"{e.id}-{k}", example_id=e.id, answer=e.answer, rationale=f"reason {k}")
             for e in train for k in range(2)]
    ctx = JudgeContext(tmp_path, 0)
    v = HumanJudge(1).judge(by_id, cands, ctx)
    assert v.pending and "2 judgement(s) pending in batch iter-000" in v.pending and not v.judgements
    store = Store.of_run(tmp_path)
    for _ in range(2):
        task = store.next_task("ann")
        store.submit(task["task"], "ann", [task["candidates"][0]["id"]])
    v = HumanJudge(1).judge(by_id, cands, ctx)
    assert v.pending is None and v.by_kind == {"human": 4} and v.people == 4
    assert sum(j.accepted for j in v.judgements) == 2
    assert (tmp_path / "agreement-iter-000.json").exists()


def test_select_with_a_saved_reward_model_that_reads_the_warm_up_vlm(recipe, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    cands, judged = tmp_path / "c.jsonl", tmp_path / "j.jsonl"
    assert CliRunner().invoke(cli, ["sample", str(recipe), "--out", str(cands)]).exit_code == 0
    r = CliRunner().invoke(cli, ["select", str(cands), str(recipe), "--selector", "length_scorer:alternate",
                                 "--set", "selector.rule={kind: threshold, threshold: 0.5}", "--out", str(judged)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["train-reward", str(recipe), "--candidates", str(cands), "--judgements", str(judged),
                                 "--kind", "vlm-likelihood", "--out", str(tmp_path / "rm"),
                                 "--set", "selector.reward.heldout_fraction=0.3"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "r.jsonl"
    r = CliRunner().invoke(cli, ["select", str(cands), str(recipe), "--selector", f"reward:{tmp_path / 'rm'}",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    verdicts = read_jsonl(out, Judgement)
    assert len(verdicts) == len(read_jsonl(cands, Candidate)) and "by kind: reward" in r.output
    assert len({round(j.score, 6) for j in verdicts}) > 1  # scores from the model, not a constant
