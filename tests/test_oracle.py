"""The scene-graph oracle against a careful person's verdicts (tests/data/oracle_cases.yaml, written
by hand before the oracle read them), and against any string at all (hypothesis)."""
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from illume_rm.data.scene import MAX_CHARS, judge
from illume_rm.data.shapes import ShapesConfig, generate

DATA = Path(__file__).parent / "data"
CASES = yaml.safe_load((DATA / "oracle_cases.yaml").read_text())
HELD_OUT = yaml.safe_load((DATA / "oracle_cases_heldout.yaml").read_text())
ELLIPSIS = yaml.safe_load((DATA / "oracle_cases_ellipsis.yaml").read_text())  # counts whose noun is the question's
for key in ("scenes", "questions"):  # one pool of scenes and questions; the later sets join the bar
    CASES[key] |= HELD_OUT[key] | ELLIPSIS[key]
FIRST_SET = len(CASES["cases"])
CASES["cases"] = CASES["cases"] + HELD_OUT["cases"] + ELLIPSIS["cases"]


def _case(case):
    qid, text, want, cls = case[:4]
    q = CASES["questions"][qid]
    answer = case[4] if len(case) > 4 else q["answer"]
    meta = {"scene": {"grid": 3, "objects": CASES["scenes"][q["scene"]]}, "family": q["family"], "focus": q["focus"]}
    return meta, q["q"], text, str(answer), want, cls


def test_the_hand_made_set_is_broad():
    classes = Counter(c[3] for c in CASES["cases"])
    assert FIRST_SET >= 150 and len(CASES["cases"]) - FIRST_SET >= 40 + 25
    assert {"plain", "negation", "lists", "counts", "relations", "synonyms", "hedges", "punctuation", "answers",
            "relevance", "unparsed", "ellipsis"} <= set(classes)
    assert sum(c[2] for c in CASES["cases"]) >= 60 and sum(not c[2] for c in CASES["cases"]) >= 60


def test_false_accept_and_false_reject_rates_under_five_percent():
    """The README's bar: both rates on the whole hand-made set under 5% (all of it, not case by case,
    so that one hard case does not hide the rates)."""
    fa = fr = pos = neg = 0
    wrong = []
    for case in CASES["cases"]:
        meta, q, text, answer, want, cls = _case(case)
        got = judge(meta, q, text, answer).ok
        pos, neg = pos + want, neg + (not want)
        if got != want:
            fa, fr = fa + (not want), fr + want
            wrong.append(f"{'accepted' if got else 'refused'} [{cls}] {q} {answer}: {text}")
    assert fa / neg < 0.05 and fr / pos < 0.05, "\n".join(wrong)


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: f"{c[0]}:{c[1][:40]}")
def test_each_hand_made_case(case):
    meta, q, text, answer, want, _ = _case(case)
    verdict = judge(meta, q, text, answer)
    assert verdict.ok is want, verdict.problems


def test_references_support_their_answer_and_no_other():
    """Every reference the generator writes is grounded for its question's answer, and none is for
    a wrong answer (a yes/no flipped, a count off by one, another colour, size or shape)."""
    from illume_rm.data.scene import COLORS, NUMBERS, SHAPES, SIZES

    def wrong(a):
        if a in ("yes", "no"):
            return "no" if a == "yes" else "yes"
        for pool in (NUMBERS, COLORS, SIZES, SHAPES):
            if a in pool:
                return pool[(pool.index(a) + 1) % len(pool)]
        raise AssertionError(a)

    for ex in generate(ShapesConfig(train=300), "train", None):
        for ref in ex.explanations:
            assert judge(ex.meta, ex.question, ref, ex.answer).ok, (ex.question, ex.answer, ref)
            assert not judge(ex.meta, ex.question, ref, wrong(ex.answer)).ok, (ex.question, ref)


SCENE = {"scene": {"grid": 3, "objects": CASES["scenes"]["A"]}, "family": "count", "focus": [2, 3]}
WORDS = ["the", "a", "no", "there", "is", "are", "and", "not", "red", "blue", "circle", "squares", "two", "3",
         "in", "top", "left", "of", "to", "the", "same", "colour", "as", "both", "it", "only", ",", ";", ".", "'s",
         "-", "nothing", "every", "which", "too", "larger", "than", "directly", "below", "³", "\u00a0", "  "]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(st.sampled_from(WORDS), max_size=25).map(" ".join)))
def test_no_string_crashes_the_oracle(text):
    verdict = judge(SCENE, "How many triangles are there?", text, "two")
    assert isinstance(verdict.ok, bool)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([r for ex in generate(ShapesConfig(train=20), "train", None) for r in ex.explanations]),
       st.integers(0, 60), st.sampled_from(["", " ", "  ", "³", ",", "and", "not", "no", "the", "-", "'", "."]))
def test_mutated_references_never_crash(ref, at, insert):
    text = ref[:at] + insert + ref[at:]
    verdict = judge(SCENE, "Is there a red circle?", text, "yes")
    assert isinstance(verdict.ok, bool)


def test_odd_input_is_refused_up_front():
    # refused before any pattern runs, so nothing can backtrack for long: over MAX_CHARS, or a
    # character outside plain text (any Unicode digit but 0-9)
    for text, reason in [(" " * 5000 + "x", "longer than"), ("a" * (MAX_CHARS + 1), "longer than"),
                         ("there are \u00b3 triangles", "cannot read the character"),
                         ("there are \u0662 triangles", "cannot read the character")]:
        verdict = judge(SCENE, "How many triangles are there?", text, "two")
        assert not verdict.ok and any(reason in p for p in verdict.problems), (text[:20], verdict.problems)
    # a long run of spaces inside an acceptable length, or a non-breaking one, is only a space
    assert judge(SCENE, "How many triangles are there?", "there are two\u00a0triangles", "two").ok
    assert judge(SCENE, "How many triangles are there?", "there are" + " " * 300 + "two triangles", "two").ok
