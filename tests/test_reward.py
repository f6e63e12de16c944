import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import load_diagnostic

from illume_rm.cli import cli
from illume_rm.errors import UserError
from illume_rm.data.shapes import ShapesConfig, generate
from illume_rm.records import Candidate, Judgement, read_jsonl, write_jsonl
from illume_rm.reward import RewardConfig, load_reward, train_reward
from illume_rm.reward.evaluation import ABSTAIN, agreement, threshold_for_precision
from illume_rm.selectors.base import Rule

sys.path.insert(0, str(Path(__file__).parent / "plugins"))

NONSENSE = ["it has a long neck", "the sky is blue today", "because it is raining", "a dog runs on the beach"]


def judged_rows(n_examples=24):
    examples = generate(ShapesConfig(train=n_examples // 3 + 1), "train", None)[:n_examples]
    rows = []
    for k, ex in enumerate(examples):
        good = Candidate(id=f"{ex.id}#g", example_id=ex.id, answer=ex.answer, rationale=ex.explanations[k % 3])
        bad = Candidate(id=f"{ex.id}#b", example_id=ex.id, answer=ex.answer, rationale=NONSENSE[k % 4])
        rows += [(ex, good, True), (ex, bad, False)]
    return examples, rows


def test_agreement_metrics_and_threshold():
    labels = [True, True, False, False, True]
    probs = [0.9, 0.8, 0.7, 0.2, 0.4]
    m = agreement(labels, probs, 0.5)
    assert m["accuracy"] == pytest.approx(0.6) and m["roc_auc"] == pytest.approx(5 / 6)
    assert set(m) >= {"f1", "kappa", "precision", "recall"}
    assert threshold_for_precision(labels, probs, 1.0) == 0.8  # the lowest threshold with precision 1


def test_threshold_abstains_where_no_threshold_reaches_the_target_precision():
    # the most likely is false: precision 0/1, 1/2, 1/3, 2/4 at the four thresholds, never 0.9
    labels, probs = [False, True, False, True], [0.9, 0.8, 0.7, 0.6]
    t = threshold_for_precision(labels, probs, 0.9)
    assert t == ABSTAIN and t > 1.0  # not 0.5, which accepted half of them at precision 0.5
    assert agreement(labels, probs, t)["recall"] == 0.0
    assert Rule("threshold", threshold=t).apply([1.0, 0.99, 0.5], [None] * 3)[0] == [False, False, False]
    assert threshold_for_precision([False, False], [0.9, 0.1], 0.9) == ABSTAIN  # no positives
    assert threshold_for_precision(labels, probs, 0.5) == 0.6  # a reachable target keeps the lowest threshold


def test_a_reward_model_that_cannot_reach_the_target_precision_accepts_nothing(tmp_path):
    # every rationale judged twice, once accepted and once not: no threshold's precision exceeds 0.5
    examples, rows = judged_rows(12)
    twins = [(ex, c, not y) for ex, c, y in rows]
    lines = []
    report = train_reward(rows + twins, RewardConfig(epochs=1, batch_size=8, lr=1e-4, target_precision=0.9),
                          tmp_path / "rm", log=lines.append)
    assert report["abstains"] and report["threshold"] == ABSTAIN
    assert any("accepts nothing" in line and "target_precision" in line for line in lines)
    scorer = load_reward(tmp_path / "rm")
    assert scorer.threshold == ABSTAIN
    probs = scorer.score({ex.id: ex for ex in examples}, [c for _, c, _ in rows])
    assert not any(p >= scorer.threshold for p in probs)


def test_cross_encoder_learns_to_prefer_accepted_rationales(tmp_path):
    examples, rows = judged_rows()
    cfg = RewardConfig(epochs=6, batch_size=8, lr=1e-4, heldout_fraction=0.25)
    report = train_reward(rows, cfg, tmp_path / "rm", log=lambda *_: None)
    assert report["heldout"]["n"] > 0 and report["train_judgements"] + report["heldout"]["n"] == len(rows)
    scorer = load_reward(tmp_path / "rm")
    assert scorer.name == "reward:rm" and scorer.threshold == report["threshold"]
    by_id = {ex.id: ex for ex in examples}
    probs = scorer.score(by_id, [c for _, c, _ in rows])
    good = [p for p, (_, _, y) in zip(probs, rows) if y]
    bad = [p for p, (_, _, y) in zip(probs, rows) if not y]
    assert sum(good) / len(good) > sum(bad) / len(bad) + 0.2
    saved = json.loads((tmp_path / "rm" / "reward.json").read_text())
    assert {"accuracy", "roc_auc", "f1", "kappa"} <= set(saved["heldout"])


def test_pairwise_bradley_terry_with_trl(tmp_path):
    examples, rows = judged_rows()
    report = train_reward(rows, RewardConfig(kind="pairwise", epochs=3, batch_size=8, lr=1e-4), tmp_path / "bt",
                          log=lambda *_: None)
    scorer = load_reward(tmp_path / "bt")
    probs = scorer.score({ex.id: ex for ex in examples}, [c for _, c, _ in rows])
    good = [p for p, (_, _, y) in zip(probs, rows) if y]
    bad = [p for p, (_, _, y) in zip(probs, rows) if not y]
    assert report["kind"] == "pairwise" and sum(good) / len(good) > sum(bad) / len(bad)
    assert report["heldout"]["roc_auc"] > 0.5


def test_image_aware_reward_uses_the_images(tmp_path, tiny_vlm_path, shapes_small):
    from illume_rm.data import load_examples
    from illume_rm.vlm import load_vlm

    vlm = load_vlm(tiny_vlm_path)
    exs = load_examples(shapes_small, "train")[:12]
    rows = []
    for k, ex in enumerate(exs):
        rows.append((ex, Candidate(id=f"{ex.id}#g", example_id=ex.id, answer=ex.answer, rationale=ex.explanations[0]), True))
        rows.append((ex, Candidate(id=f"{ex.id}#b", example_id=ex.id, answer=ex.answer, rationale=NONSENSE[k % 4]), False))
    report = train_reward(rows, RewardConfig(kind="image-aware", epochs=2, batch_size=8), tmp_path / "ia", vlm=vlm,
                          log=lambda *_: None)
    scorer = load_reward(tmp_path / "ia", vlm=vlm)
    probs = scorer.score({ex.id: ex for ex in exs}, [c for _, c, _ in rows])
    assert len(probs) == len(rows) and all(0.0 <= p <= 1.0 for p in probs)
    assert report["kind"] == "image-aware" and (tmp_path / "ia" / "fusion_head.safetensors").exists()
    # the same words about another image score differently: the score reads the image
    from dataclasses import replace

    swapped = {ex.id: replace(ex, image=exs[(k + 1) % len(exs)].image) for k, ex in enumerate(exs)}
    moved = scorer.score(swapped, [c for _, c, _ in rows])
    assert max(abs(a - b) for a, b in zip(probs, moved)) > 1e-4
    # it owns its image encoder: loaded without the VLM, it reads images at the size it was trained with
    alone = load_reward(tmp_path / "ia")
    assert alone.score({ex.id: ex for ex in exs}, [c for _, c, _ in rows[:4]]) == pytest.approx(probs[:4], abs=1e-5)
    assert json.loads((tmp_path / "ia" / "image_encoder.json").read_text()) == {
        "image_size": vlm.processor.image_size, "image_grid": vlm.model.config.image_grid}


def test_train_reward_command_and_bad_input(tmp_path, shapes_small):
    from illume_rm.data import load_examples

    exs = load_examples(shapes_small, "train")
    cands, judgements = [], []
    for k, ex in enumerate(exs[:16]):
        for tag, text, ok in (("g", ex.explanations[0], True), ("b", NONSENSE[k % 4], False)):
            cands.append(Candidate(id=f"{ex.id}#{tag}", example_id=ex.id, answer=ex.answer, rationale=text))
            judgements.append(Judgement(candidate_id=f"{ex.id}#{tag}", accepted=ok, score=float(ok), selector="oracle"))
    write_jsonl(tmp_path / "c.jsonl", cands)
    write_jsonl(tmp_path / "j.jsonl", judgements)
    shape_args = ["--set", "data.shapes={train: 40, val: 10, test: 10, image_size: 64}",
                  "--set", "selector.reward.epochs=1"]
    r = CliRunner().invoke(cli, ["train-reward", "--candidates", str(tmp_path / "c.jsonl"), "--judgements",
                                 str(tmp_path / "j.jsonl"), "--out", str(tmp_path / "rm"), *shape_args])
    assert r.exit_code == 0, r.output
    assert "ROC-AUC" in r.output and (tmp_path / "rm" / "reward.json").exists()
    r = CliRunner().invoke(cli, ["train-reward", "--candidates", str(tmp_path / "c.jsonl"), "--judgements",
                                 str(tmp_path / "j.jsonl"), "--limit", "20", "--out", str(tmp_path / "rm3"), *shape_args])
    assert r.exit_code == 0, r.output
    assert "the 12 judgements left out by --limit" in r.output
    assert json.loads((tmp_path / "rm3" / "reward.json").read_text())["rest"]["n"] == 12
    write_jsonl(tmp_path / "j2.jsonl", [Judgement(candidate_id="nope", accepted=True, score=1.0, selector="x")])
    r = CliRunner().invoke(cli, ["train-reward", "--candidates", str(tmp_path / "c.jsonl"), "--judgements",
                                 str(tmp_path / "j2.jsonl"), "--out", str(tmp_path / "rm2"), *shape_args])
    assert r.exit_code == 2 and "unknown candidate nope" in r.output
    r = CliRunner().invoke(cli, ["select", str(tmp_path / "c.jsonl"), "--selector", "reward:" + str(tmp_path / "gone"),
                                 "--out", str(tmp_path / "x.jsonl"), *shape_args])
    assert r.exit_code == 2 and "gone holds no trained reward model" in r.output  # refused when the recipe is checked


LOOP = """
name: tiny-reward
seed: 0
data:
  name: shapes
  shapes: {{train: 12, val: 4, test: 2, image_size: 64}}
model: {{base: "{base}", image_size: 64}}
warmup: {{steps: 2, batch_size: 4}}
sampling: {{samples_per_temperature: 2, max_new_tokens: 8, batch_size: 4, train_examples: 8, eval_examples: 6}}
selector:
  name: reward
  seed_selector: "length_scorer:alternate"
  seed_judgements: 10
  refresh: 4
  reward: {{epochs: 1, batch_size: 8, heldout_fraction: 0.2}}
finetune: {{steps: 2, batch_size: 4}}
loop: {{max_iterations: 2, patience: 5}}
evaluation: {{scorer: python}}
"""


def test_reward_loop_spends_only_the_seed_judgements(tmp_path, tiny_vlm_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(LOOP.format(base=tiny_vlm_path))
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["iterate", str(recipe), "--run", str(run)])
    assert r.exit_code == 0, r.output
    first = json.loads((run / "iter-000" / "selection.json").read_text())
    assert first["judgements_by_kind"]["plugin"] == 10  # the human budget, spent once
    assert first["judgements_by_kind"]["reward"] == first["sampled"] - 10
    assert first["human_judgements"] == 10
    # active learning: 4 more where the model is least sure (the alternating seed keeps both classes)
    second = json.loads((run / "iter-001" / "selection.json").read_text())
    assert second["judgements_by_kind"]["plugin"] == 4 and second["human_judgements"] == 4
    assert second["judgements_by_kind"]["reward"] == second["sampled"] - 4
    assert (run / "reward-model-001" / "reward.json").exists()
    assert (run / "reward-model" / "reward.json").exists()
    # `select` with the reward loop's judge gives the verdicts `iterate` gave, from a fresh folder too
    fresh = tmp_path / "fresh"
    (fresh / "iter-000").mkdir(parents=True)
    shutil.copy(run / "iter-000" / "candidates.jsonl", fresh / "iter-000" / "candidates.jsonl")
    r = CliRunner().invoke(cli, ["select", str(fresh / "iter-000" / "candidates.jsonl"), str(recipe),
                                 "--selector", "reward", "--run", str(fresh), "--iteration", "0",
                                 "--out", str(tmp_path / "again.jsonl")])
    assert r.exit_code == 0, r.output
    assert "human judgements 10" in r.output
    given = {j.candidate_id: (j.accepted, round(j.score, 4)) for j in read_jsonl(run / "iter-000" / "judgements.jsonl", Judgement)}
    again = {j.candidate_id: (j.accepted, round(j.score, 4)) for j in read_jsonl(tmp_path / "again.jsonl", Judgement)}
    assert again == given
    r = CliRunner().invoke(cli, ["compare", str(run), "--out", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    assert "| run |" in r.output and "| run | " in (tmp_path / "cmp" / "compare.md").read_text()
    assert (tmp_path / "cmp" / "compare.png").exists()
    assert "| 14 |" in r.output  # the human judgements column of the reward run
    r = CliRunner().invoke(cli, ["compare", str(tmp_path / "not-a-run")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_compare_runs_a_recipes_variants_from_one_warm_up(tmp_path, tiny_vlm_path, monkeypatch):
    recipe = tmp_path / "cmp.yaml"
    recipe.write_text(LOOP.format(base=tiny_vlm_path).replace("name: tiny-reward", "name: tiny-cmp")
                      .replace("  refresh: 4\n", "").replace("max_iterations: 2", "max_iterations: 1") + """
variants:
  critic: ["selector.name=critic", "selector.rule={kind: adaptive, threshold: 0.7, min_accept: 3, floor: 0.0}"]
  reward: []
""")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["compare", "--recipe", str(recipe)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "runs" / "tiny-cmp-critic" / "report.md").exists()
    assert (tmp_path / "runs" / "tiny-cmp-reward" / "reward-model" / "reward.json").exists()
    table = (tmp_path / "runs" / "tiny-cmp" / "compare.md").read_text()
    assert "| tiny-cmp-critic |" in table and "| tiny-cmp-reward |" in table
    # the critic loop's human judgements are all it sampled; the reward loop's only its seed
    critic_sampled = json.loads((tmp_path / "runs" / "tiny-cmp-critic" / "iter-000" / "selection.json").read_text())["sampled"]
    assert f"| {critic_sampled} | 0 |" in table and "| 10 | " in table


class _Recorder:
    """A stand-in reward model that remembers the examples it trained on, refuses to score a candidate of
    one of them, and scores accepted rationales above rejected ones except on the ``backwards`` examples."""
    trained: list = []
    backwards: set = set()

    def __init__(self):
        self.threshold, self.seen = 0.5, set()

    @classmethod
    def new(cls, cfg):
        return cls()

    def fit(self, rows, cfg, vlm=None):
        self.seen = {ex.id for ex, _, _ in rows}
        _Recorder.trained.append(self.seen)

    def predict(self, examples, candidates, vlm=None):
        assert not {c.example_id for c in candidates} & self.seen, "scored an example it trained on"
        good = [c.id.endswith("#g") for c in candidates]
        return [(0.2 if g else 0.7) if c.example_id in self.backwards else (0.8 if g else 0.3)
                for c, g in zip(candidates, good)]

    def save(self, path):
        (path / "recorder.txt").write_text("fake")


def test_the_threshold_can_come_from_out_of_fold_scores_on_every_judgement(tmp_path, monkeypatch):
    """threshold_folds k: each judgement is scored by a model that never saw its example (folds by
    example), the threshold is the lowest reaching the target precision on those scores, and the model
    saved is trained on every judgement (none held out)."""
    import illume_rm.reward.training as training

    monkeypatch.setitem(training.CLASSES, "cross-encoder", _Recorder)
    examples, rows = judged_rows()
    _Recorder.trained, _Recorder.backwards = [], {ex.id for ex in examples[::4]}
    report = train_reward(rows, RewardConfig(threshold_folds=4, target_precision=0.9), tmp_path / "rm",
                          log=lambda *_: None)
    assert len(_Recorder.trained) == 5  # four folds, then the model on everything
    ids = {ex.id for ex in examples}
    assert _Recorder.trained[-1] == ids and report["train_judgements"] == len(rows) and "heldout" not in report
    assert all(len(ids - seen) == 6 for seen in _Recorder.trained[:4])  # 24 examples, 6 a fold
    assert set.union(*[ids - seen for seen in _Recorder.trained[:4]]) == ids  # every example scored once
    # one example in four is scored backwards (accepted 0.2, rejected 0.7), the rest right (0.8, 0.3)
    cv = report["crossval"]
    assert cv["n"] == len(rows) and cv["positives"] == 24
    assert report["threshold"] == pytest.approx(0.8)  # precision 18/18 at 0.8, 18/24 at 0.7
    assert cv["precision"] == 1.0 and cv["recall"] == pytest.approx(18 / 24)
    assert json.loads((tmp_path / "rm" / "reward.json").read_text())["threshold"] == pytest.approx(0.8)


def test_a_fold_with_one_class_is_refused(tmp_path, monkeypatch):
    """One accepted judgement in all: the fold that holds it leaves the others with none."""
    import illume_rm.reward.training as training

    monkeypatch.setitem(training.CLASSES, "cross-encoder", _Recorder)
    examples, rows = judged_rows()
    one = [(ex, c, y and ex.id == examples[0].id) for ex, c, y in rows]
    with pytest.raises(UserError, match="judgements of fold [1-4] of 4 hold only one class"):
        train_reward(one, RewardConfig(threshold_folds=4), tmp_path / "rm", log=lambda *_: None)


def test_likelihood_diagnostic_separates_ranking_within_a_question_from_ranking_across_questions(tmp_path, capsys):
    """diagnostics/likelihood_judge.py, on verdicts written by hand: within each question the true
    rationale is the more likely one, but the two questions sit at different levels (question b's
    false rationale is more likely than question a's true one), so the global ROC-AUC is below 1 and
    the within-question share is exactly 1; a third question with one verdict only adds no pair."""
    mod = load_diagnostic("likelihood_judge")
    rows = [("a", "a1", -9.0, True), ("a", "a2", -12.0, False), ("a", "a3", -11.0, False),
            ("b", "b1", -3.0, True), ("b", "b2", -5.0, False), ("c", "c1", -4.0, True)]
    write_jsonl(tmp_path / "c.jsonl", [Candidate(id=i, example_id=q, answer="x", rationale=f"it is {i}", logprob=lp)
                                       for q, i, lp, _ in rows])
    write_jsonl(tmp_path / "j.jsonl", [Judgement(candidate_id=i, accepted=ok, score=float(ok), selector="person")
                                       for _, i, _, ok in rows])
    mod.main([str(tmp_path / "c.jsonl"), str(tmp_path / "j.jsonl"), "--splits", "2", "--seed-size", "0.5"])
    out = capsys.readouterr().out
    assert "no training: 0.889" in out  # 8 of the 9 (true, false) pairs in order: a1 (-9) is below b2 (-5)
    assert "in 1.000 of 3 pairs (2 questions with both)" in out
    # one pair out of order within a question shows
    rows[1] = ("a", "a2", -8.0, False)
    write_jsonl(tmp_path / "c.jsonl", [Candidate(id=i, example_id=q, answer="x", rationale=f"it is {i}", logprob=lp)
                                       for q, i, lp, _ in rows])
    mod.main([str(tmp_path / "c.jsonl"), str(tmp_path / "j.jsonl"), "--splits", "2", "--seed-size", "0.5"])
    assert "in 0.667 of 3 pairs" in capsys.readouterr().out


@pytest.mark.parametrize("question, answer, rationale, expected", [
    # a careful reader's verdicts: does the rationale use the question's and the answer's words?
    ("What size is the blue circle?", "large", "it's in the top left", (0.0, 0.0)),  # true, beside the point
    ("What size is the blue circle?", "large", "a large blue circle in the top left", (1.0, 1.0)),
    ("What size is the blue circle?", "large", "it's a small blue circle", (1.0, 0.0)),  # the object, not the answer
    ("How many circles are there?", "two", "two circles, one in the top left", (1.0, 1.0)),  # plural read as singular
    ("How many circles are there?", "two", "one circle in the centre", (1.0, 0.0)),
    ("Is there a red object?", "yes", "a small green square", (0.0, 0.0)),  # yes/no: no answer words
    ("Is there a red object?", "yes", "a small red square in the centre", (1.0, 0.0)),
    ("What color is the glass?", "clear", "the glass is clear", (1.0, 1.0)),  # "glass" keeps its double s
    ("Is the object in the top left the same color as the one in the centre?", "no",
     "the top left is red and the centre is blue", (1.0, 0.0)),
    # lexical, not semantic: a racket is the reason for tennis, and shares no word with the question
    ("What sport is being played?", "tennis", "the man is holding a racket", (0.0, 0.0)),
])
def test_relevance_features_read_whether_a_rationale_uses_its_question_and_answer(question, answer, rationale, expected):
    from illume_rm.reward.relevance import relevance

    assert relevance(question, answer, rationale) == pytest.approx(expected)


def test_likelihood_model_saved_before_the_relevance_features_still_loads(tmp_path):
    """A likelihood.json of three features (written until 2026-12-01) opens with those three; one whose
    weights do not match its features is refused in one line."""
    from illume_rm.reward.models import LikelihoodReward

    (tmp_path / "likelihood.json").write_text(json.dumps({
        "features": ["logprob", "logprob per token", "tokens"], "weights": [1.0, 0.5, -0.1], "bias": 0.2,
        "mean": [-5.0, -1.0, 5.0], "scale": [2.0, 0.5, 2.0]}))
    old = LikelihoodReward.load(tmp_path, threshold=0.4)
    assert old.names == LikelihoodReward.LIKELIHOOD and old.threshold == 0.4
    current = LikelihoodReward()
    assert current.names == LikelihoodReward.FEATURES and len(current.names) == 5
    (tmp_path / "likelihood.json").write_text(json.dumps({
        "features": ["logprob", "logprob per token", "tokens"], "weights": [1.0, 0.5], "bias": 0.2,
        "mean": [-5.0, -1.0, 5.0], "scale": [2.0, 0.5, 2.0]}))
    with pytest.raises(UserError, match="2 weights for 3 features"):
        LikelihoodReward.load(tmp_path, threshold=0.4)
    with pytest.raises(UserError, match="unknown feature"):
        LikelihoodReward(names=("logprob", "colour of the sky"))
    (tmp_path / "likelihood.json").write_text('{"features": ["logprob"], "weights": [1.0]')
    with pytest.raises(UserError, match="likelihood.json: not a vlm-likelihood reward model"):
        LikelihoodReward.load(tmp_path, threshold=0.4)
    (tmp_path / "likelihood.json").write_text('{"features": ["logprob"], "weights": [1.0], "mean": [0.0]}')
    with pytest.raises(UserError, match="not a vlm-likelihood reward model .KeyError: 'bias'"):
        LikelihoodReward.load(tmp_path, threshold=0.4)


def test_likelihood_diagnostic_compares_the_relevance_features_given_the_recipe(tmp_path, capsys):
    """With --recipe, the diagnostic reads each candidate's question and adds the relevance features:
    here the accepted rationales restate their question's words and the rejected ones do not, while
    the log-probabilities say nothing (alternating), so relevance ranks perfectly and the likelihood
    near chance; a candidate of an example the recipe's data lacks is refused."""
    from illume_rm.data import DataConfig, load_examples

    mod = load_diagnostic("likelihood_judge")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndata:\n  name: shapes\n  shapes: {train: 20, val: 4, test: 4, image_size: 64}\n")
    examples = load_examples(DataConfig(name="shapes", shapes=ShapesConfig(train=20, val=4, test=4, image_size=64)),
                             "train")[:30]
    cands, verdicts = [], []
    for k, ex in enumerate(examples):
        for ok in (True, False):
            restated = ex.question.rstrip("?")
            text = restated if ok else " ".join("nothing" for _ in restated.split())  # as many words
            cands.append(Candidate(id=f"{ex.id}#{ok}", example_id=ex.id, answer=ex.answer, rationale=text,
                                   logprob=-5.0 - (k + ok) % 2))
            verdicts.append(Judgement(candidate_id=f"{ex.id}#{ok}", accepted=ok, score=float(ok), selector="person"))
    write_jsonl(tmp_path / "c.jsonl", cands)
    write_jsonl(tmp_path / "j.jsonl", verdicts)
    mod.main([str(tmp_path / "c.jsonl"), str(tmp_path / "j.jsonl"), "--splits", "3", "--seed-size", "0.3",
              "--recipe", str(recipe)])
    out = capsys.readouterr().out
    relevance = float(out.split("in rationale]: ROC-AUC ")[1].split()[0])
    assert relevance > 0.95  # ties only where a question has no content words ("How many objects are there?")
    likelihood = float(out.split("likelihood [log-probability, per word, words]: ROC-AUC ")[1].split()[0])
    assert likelihood < 0.8  # alternating log-probabilities, the same lengths: near chance
    write_jsonl(tmp_path / "c.jsonl", cands + [Candidate(id="x#1", example_id="elsewhere-1", answer="a",
                                                         rationale="b", logprob=-1.0)])
    write_jsonl(tmp_path / "j.jsonl", verdicts + [Judgement(candidate_id="x#1", accepted=True, score=1.0,
                                                            selector="person")])
    with pytest.raises(UserError, match="not in .*r.yaml's data, e.g. elsewhere-1"):
        mod.main([str(tmp_path / "c.jsonl"), str(tmp_path / "j.jsonl"), "--splits", "3", "--recipe", str(recipe)])


def test_threshold_diagnostic_pool_threshold_keeps_the_largest_set_expected_at_the_target():
    """diagnostics/reward_threshold.py's calibrated rule, by hand: with the identity calibration
    (a=1, b=0) each score is its own chance, so the set above a threshold is expected at the mean of
    its scores; tied scores go in or out together."""
    mod = load_diagnostic("reward_threshold")
    same = (1.0, 0.0)
    # running means 0.99, 0.97, 0.9467, 0.835, 0.688: the largest set at >= 0.9 is the top three
    assert mod.pool_threshold([0.5, 0.99, 0.1, 0.9, 0.95], same, 0.9) == pytest.approx(0.9)
    assert mod.pool_threshold([0.5, 0.99, 0.1, 0.9, 0.95], same, 0.98) == pytest.approx(0.99)
    assert mod.pool_threshold([0.5, 0.99, 0.1], same, 0.995) == ABSTAIN
    # 0.99 and 0.85 average 0.92, but the second 0.85 comes in with the first: 0.897 < 0.9
    assert mod.pool_threshold([0.99, 0.85, 0.85], same, 0.9) == pytest.approx(0.99)
    assert mod.pool_threshold([], same, 0.9) == ABSTAIN


def test_threshold_diagnostic_calibration_is_platt_scaling():
    """Without the prior the fit is a logistic regression on the scores' logits (scikit-learn's,
    unregularised, as the independent reference); with Platt's prior targets a perfectly separated
    seed of 5 accepted judgements cannot claim more than about 6/7, so 0.9 precision is not expected."""
    from sklearn.linear_model import LogisticRegression

    mod = load_diagnostic("reward_threshold")
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.3
    probs = 1 / (1 + np.exp(-(rng.normal(size=200) + 1.5 * labels - 0.5)))
    a, b = mod.calibration(labels, probs, prior=False)
    ref = LogisticRegression(C=1e12, max_iter=10000).fit(mod._logit(probs)[:, None], labels)
    assert a == pytest.approx(ref.coef_[0][0], rel=1e-3) and b == pytest.approx(ref.intercept_[0], rel=1e-3, abs=1e-3)
    seed = [True] * 5 + [False] * 20
    scores = [0.9] * 5 + [0.1] * 20
    cal = mod.calibration(seed, scores)
    assert mod.calibrated([0.9], cal)[0] == pytest.approx(6 / 7, abs=1e-3)
    assert mod.pool_threshold([0.9] * 10 + [0.1] * 40, cal, 0.9) == ABSTAIN
    hard = mod.calibration(seed, scores, prior=False)
    assert mod.calibrated([0.9], hard)[0] > 0.99
    assert mod.pool_threshold([0.9] * 10 + [0.1] * 40, hard, 0.9) == pytest.approx(0.9)
