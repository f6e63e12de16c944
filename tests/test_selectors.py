import sys
from pathlib import Path

import pytest

from illume_rm.errors import UserError
from illume_rm.records import Candidate, Example
from illume_rm.sampling import clean_rationale, sample_candidates, SamplingConfig
from illume_rm.selectors import RougeCritic, Rule, SceneOracle, Selector, make_scorer

sys.path.insert(0, str(Path(__file__).parent / "plugins"))


def cand(i, ex_id, text, answer="yes"):
    return Candidate(id=f"c{i}", example_id=ex_id, answer=answer, rationale=text)


def test_rules():
    cands = [cand(i, "e", "x") for i in range(5)]
    scores = [0.9, 0.5, 0.3, 0.65, 0.1]
    assert Rule("threshold", threshold=0.6).apply(scores, cands)[0] == [True, False, False, True, False]
    acc, t = Rule("adaptive", threshold=0.7, min_accept=3, floor=0.0).apply(scores, cands)
    assert acc == [True, True, False, True, False] and t == 0.5  # the highest threshold accepting 3
    acc, t = Rule("adaptive", threshold=0.7, min_accept=3, floor=0.6).apply(scores, cands)
    assert t == 0.6 and sum(acc) == 2  # never below the floor
    acc, t = Rule("adaptive", threshold=0.7, min_accept=1).apply(scores, cands)
    assert t == 0.7 and acc == [True, False, False, False, False]  # never above ILLUME's 0.7
    two = [cand(0, "a", "x"), cand(1, "a", "y"), cand(2, "b", "z")]
    assert Rule("topk", k=1, floor=0.2).apply([0.3, 0.5, 0.1], two)[0] == [False, True, False]


def test_critic_and_oracle_disagree_where_they_should():
    scene = {"grid": 3, "objects": [
        {"shape": "square", "color": "gray", "size": "large", "row": 1, "col": 2},
        {"shape": "circle", "color": "red", "size": "small", "row": 0, "col": 0}]}
    ex = Example(id="e", question="What color is the square?", answers=["gray"],
                 explanations=["the square is gray", "there is a gray square in the middle right",
                               "the square is a large gray square"],
                 meta={"scene": scene, "focus": [0], "family": "query"})
    texts = ["the square on the right is green",   # ROUGE-L likes it; false
             "the square is gray",                 # true and on topic
             "the red circle is in the top left"]  # true, but not about the square
    cands = [cand(i, "e", t, "gray") for i, t in enumerate(texts)]
    critic = RougeCritic().score({"e": ex}, cands)
    oracle = SceneOracle().score({"e": ex}, cands)
    assert critic[0] > 0.5 and oracle == [0.0, 1.0, 0.0]
    # a true rationale for another answer than the candidate's is not accepted
    assert SceneOracle().score({"e": ex}, [cand(9, "e", "the square is gray", "red")]) == [0.0]
    j = Selector(SceneOracle(), Rule("threshold", threshold=0.5)).select({"e": ex}, cands)
    assert [x.accepted for x in j] == [False, True, False] and j[0].selector == "oracle>=0.5"


def test_selectors_combine_with_gates():
    ex = Example(id="e", question="Is there a red circle?", answers=["yes"], explanations=["there is a red circle"])
    cands = [Candidate(id="c0", example_id="e", answer="yes", rationale="there is a red circle"),
             Candidate(id="c1", example_id="e", answer="no", rationale="there is a red circle")]
    alone = Selector(RougeCritic(), Rule("threshold", threshold=0.7)).select({"e": ex}, cands)
    assert [j.accepted for j in alone] == [True, True]
    both = Selector(RougeCritic(), Rule("threshold", threshold=0.7), gates=[make_scorer("answer")]).select({"e": ex}, cands)
    assert [j.accepted for j in both] == [True, False] and both[0].selector == "critic:rougeL>=0.7&answer"


def test_oracle_needs_scenes():
    ex = Example(id="e", question="q", answers=["a"])
    with pytest.raises(UserError, match="needs scene graphs"):
        SceneOracle().score({"e": ex}, [cand(0, "e", "x")])


def test_plugin_scorers_from_a_separate_module():
    ex = Example(id="e", question="q", answers=["a"])
    cands = [cand(0, "e", "one two three"), cand(1, "e", "a b c d e f g h i j")]
    scorer = make_scorer("length_scorer:ten_words")
    assert scorer.name == "plugin:length_scorer:ten_words"
    assert scorer.score({"e": ex}, cands)[1] == 1.0
    for spec, message in [("length_scorer:broken", "failed: RuntimeError: boom"),
                          ("length_scorer:short", "returned 1 scores for 2 candidates")]:
        with pytest.raises(UserError, match=message):
            Selector(make_scorer(spec), Rule()).select({"e": ex}, cands)
    with pytest.raises(UserError, match="cannot import"):
        make_scorer("no_such_module:x")
    with pytest.raises(UserError, match="unknown scorer"):
        make_scorer("nonsense")


def test_clean_rationale():
    assert clean_rationale(" the circle is red. Q: what") == "the circle is red"
    assert clean_rationale("seeing that there are two squares\nQ:") == "there are two squares"
    assert clean_rationale("it is 2.5 wide, and blue.") == "it is 2.5 wide, and blue"


def test_sampler_gives_k_per_temperature_deduplicated(tiny_vlm_path, shapes_small):
    from illume_rm.data import load_examples
    from illume_rm.vlm import load_vlm

    vlm = load_vlm(tiny_vlm_path)
    exs = load_examples(shapes_small, "train")[:5]
    cfg = SamplingConfig(samples_per_temperature=3, max_new_tokens=6, batch_size=2)
    cands = sample_candidates(vlm, exs, cfg, iteration=1, model_name="tiny", progress=False)
    assert len({c.id for c in cands}) == len(cands)
    per = {}
    for c in cands:
        per.setdefault(c.example_id, []).append(c)
        assert c.answer == next(e.answer for e in exs if e.id == c.example_id)  # gold answer in the prompt
        assert c.iteration == 1 and c.temperature in (0.3, 0.9) and c.logprob <= 0
    assert set(per) <= {e.id for e in exs}
    for rows in per.values():
        assert len(rows) <= 6 and len({r.rationale for r in rows}) == len(rows)
    again = sample_candidates(vlm, exs, cfg, iteration=1, model_name="tiny", progress=False)
    assert again == cands  # a seed makes it repeatable
