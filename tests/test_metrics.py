import shutil

import pytest

from illume_rm.data.shapes import ShapesConfig, generate
from illume_rm.evaluate.accuracy import answer_score, chance_by_family
from illume_rm.evaluate.nlg import nlg_scores, rouge_l
from illume_rm.records import Example


def test_vqa_accuracy_and_exact_match():
    ten = ["giraffe"] * 2 + ["zebra"] * 8
    assert answer_score("giraffe", ten) == pytest.approx(2 / 3)
    assert answer_score("Zebra.", ten) == 1.0
    assert answer_score("the dog", ["dog"]) == 1.0 and answer_score("cat", ["dog"]) == 0.0


def test_rouge_l_matches_the_coco_formula():
    # LCS 3 of 4 candidate and 5 reference words: p = .75, r = .6, beta 1.2
    p, r, b = 0.75, 0.6, 1.2
    assert rouge_l("the red circle is", ["the red big circle here"]) == pytest.approx((1 + b * b) * p * r / (r + b * b * p))
    assert rouge_l("", ["x"]) == 0.0
    # ROUGE-L rewards wording, not truth (why the oracle exists)
    assert rouge_l("the square on the right is green", ["the square on the right is gray"]) > 0.8


def test_chance_is_the_majority_training_answer_per_family():
    train = [Example(id=str(i), question="q", answers=[a], meta={"family": "f"}) for i, a in enumerate("aab")]
    val = [Example(id="v1", question="q", answers=["a"], meta={"family": "f"}),
           Example(id="v2", question="q", answers=["b"], meta={"family": "f"})]
    assert chance_by_family(train, val) == {"all": 0.5, "f": 0.5}


@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java for pycocoevalcap")
def test_python_scores_equal_pycocoevalcap():
    examples = generate(ShapesConfig(train=30), "train", None)
    hyps = {e.id: e.explanations[0] for e in examples}
    refs = {e.id: e.explanations[1:] for e in examples}
    coco = nlg_scores(hyps, refs, use_coco=True)
    py = nlg_scores(hyps, refs, use_coco=False)
    assert coco["scorer"] == "pycocoevalcap" and "METEOR" in coco and "METEOR" not in py
    for key in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"):
        assert py[key] == pytest.approx(coco[key], rel=1e-6), key


def test_without_java_a_warning_says_so(monkeypatch):
    import illume_rm.evaluate.nlg as nlg

    monkeypatch.setattr(nlg, "java_available", lambda: False)
    with pytest.warns(UserWarning, match="Java was not found.*METEOR is left out"):
        out = nlg.nlg_scores({"a": "a red circle"}, {"a": ["a red circle"]})
    assert out["scorer"] == "python" and "METEOR" not in out
