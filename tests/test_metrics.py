import json
import shutil
from pathlib import Path

import pytest

from illume_rm.data.shapes import ShapesConfig, generate
from illume_rm.evaluate.accuracy import answer_score, chance_by_family
from illume_rm.evaluate.nlg import nlg_scores, rouge_l
from illume_rm.errors import UserError
from illume_rm.records import Example


def test_vqa_accuracy_averages_over_the_ten_leave_one_out_sets():
    # the VQA challenge's definition: min(#humans who said it / 3, 1), averaged over the 10 sets of 9
    # humans. By hand: said by 1 of 10: 9 sets hold 1 match -> 9 x 1/3 / 10 = 0.3; by 2: 2 sets hold 1
    # match, 8 hold 2 -> (2/3 + 8 x 2/3) / 10 = 0.6; by 3: (3 x 2/3 + 7 x 1) / 10 = 0.9; by 4 or more: 1.
    for said_by, expected in [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)]:
        ten = ["giraffe"] * said_by + ["zebra", "horse"] * 5
        assert answer_score("giraffe", ten[:10]) == pytest.approx(expected), said_by
    assert answer_score("the dog", ["dog"]) == 1.0 and answer_score("cat", ["dog"]) == 0.0


@pytest.mark.parametrize("pred, answers, expected", [
    ("Zebra.", ["zebra"] * 10, 1.0),                       # case and a final full stop
    ("Two", ["2"] * 6 + ["3"] * 4, 1.0),                    # number words are digits
    ("none", ["0"] * 10, 1.0),
    ("the living room", ["living room"] * 10, 1.0),        # articles go
    ("living-room", ["living room"] * 9 + ["den"], 1.0),    # a hyphen inside a word is a space
    ("yes!", ["yes"] * 10, 1.0),
    ("isnt", ["isn't"] * 10, 1.0),                          # contractions get their apostrophe
    ("3.5", ["3.5"] * 4 + ["3"] * 6, 1.0),                  # a decimal point stays
    ("1,000", ["1000"] * 10, 1.0),                          # a thousands comma goes
    ("Yes", ["yes", "yes, it is"] + ["no"] * 8, 0.3),       # the others' punctuation only when they disagree
    ("two", ["two"] * 10, 0.0),                             # the official quirk: human answers are not digit-mapped
])
def test_vqa_accuracy_normalises_as_the_official_code(pred, answers, expected):
    assert answer_score(pred, answers) == pytest.approx(expected)


def test_correct_answers_by_protocol():
    from illume_rm.evaluate.accuracy import is_correct, most_common_answer

    ten = ["giraffe"] * 3 + ["zebra"] * 7
    assert most_common_answer(["Two", "2", "3"]) == "2"
    # NLX-GPT's: only the most common human answer counts; e-ViL's: any human's answer
    assert is_correct("zebra", ten) and not is_correct("giraffe", ten)
    assert is_correct("giraffe", ten, "e-vil") and not is_correct("horse", ten, "e-vil")
    assert is_correct("The zebra.", ten)
    with pytest.raises(UserError, match="unknown answer protocol 'vqa'"):
        is_correct("zebra", ten, "vqa")


REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "pycocoevalcap_reference.json").read_text())


@pytest.mark.parametrize("case", REFERENCE["tokenizer"], ids=lambda c: c["text"][:30])
def test_tokenizer_gives_what_the_ptb_tokenizer_leaves(case):
    from illume_rm.evaluate.nlg import tokenize

    assert " ".join(tokenize(case["text"])) == case["pycocoevalcap"]


@pytest.mark.parametrize("name", ["short", "long"])
def test_python_scorer_equals_recorded_pycocoevalcap(name):
    # recorded from pycocoevalcap with Java: three-word hypotheses have no 4-grams, so BLEU-4 is ~0
    # there (an order without n-grams is not a precision of 1)
    case = REFERENCE["sets"][name]
    py = nlg_scores(case["hyps"], REFERENCE["refs"], use_coco=False)
    for key in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"):
        assert py[key] == pytest.approx(case["pycocoevalcap"][key], rel=1e-6, abs=1e-9), key


@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java for pycocoevalcap")
def test_recorded_reference_is_what_pycocoevalcap_gives_here():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    texts = [c["text"] for c in REFERENCE["tokenizer"]]
    live = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    assert [live[i][0] for i in range(len(texts))] == [c["pycocoevalcap"] for c in REFERENCE["tokenizer"]]
    coco = nlg_scores(REFERENCE["sets"]["short"]["hyps"], REFERENCE["refs"], use_coco=True)
    for key, value in REFERENCE["sets"]["short"]["pycocoevalcap"].items():
        assert coco[key] == pytest.approx(value, rel=1e-9), key


@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java for pycocoevalcap")
def test_one_meteor_process_scores_every_set_as_a_fresh_one_does(monkeypatch):
    """METEOR's JVM is started once and kept: each set must still get pycocoevalcap's recorded score,
    whatever was scored before it, and a process that has died is replaced."""
    import illume_rm.evaluate.nlg as nlg

    monkeypatch.setattr(nlg, "_METEOR", None)
    sets = REFERENCE["sets"]

    def meteor(name):
        return nlg_scores(sets[name]["hyps"], REFERENCE["refs"], use_coco=True)["METEOR"]

    try:
        assert meteor("long") == pytest.approx(sets["long"]["pycocoevalcap"]["METEOR"], rel=1e-9)
        proc = nlg._METEOR.meteor_p
        assert meteor("short") == pytest.approx(sets["short"]["pycocoevalcap"]["METEOR"], rel=1e-9)
        assert nlg._METEOR.meteor_p is proc  # the same process scored both
        proc.kill()
        proc.wait()
        assert meteor("long") == pytest.approx(sets["long"]["pycocoevalcap"]["METEOR"], rel=1e-9)
        assert nlg._METEOR.meteor_p is not proc
    finally:
        if nlg._METEOR is not None:
            nlg._close_meteor(nlg._METEOR)


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
