import json

import pytest

from illume_rm.errors import UserError
from illume_rm.records import Candidate, Example, Judgement, read_jsonl, write_jsonl


def test_round_trip_all_three_types(tmp_path):
    ex = Example(id="e1", question="Is there a red circle?", answers=["yes"], image="/x.png",
                 explanations=["there is a red circle"], meta={"family": "exist", "scene": {"objects": []}})
    cand = Candidate(id="c1", example_id="e1", answer="yes", rationale="there is a red circle",
                     iteration=2, temperature=0.9, logprob=-3.5, model="m")
    judg = Judgement(candidate_id="c1", accepted=True, score=0.8, selector="critic:rougeL>=0.7", time=12.5)
    for cls, rec in ((Example, ex), (Candidate, cand), (Judgement, judg)):
        path = tmp_path / f"{cls.__name__}.jsonl"
        assert write_jsonl(path, [rec, rec]) == 2
        assert read_jsonl(path, cls) == [rec, rec]


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "c.jsonl"
    good = json.dumps({"id": "c1", "example_id": "e1", "answer": "yes", "rationale": "r"})
    path.write_text(good + "\n" + "{not json\n")
    with pytest.raises(UserError, match=rf"{path}:2: malformed JSON"):
        read_jsonl(path, Candidate)


def test_unknown_and_missing_fields_and_wrong_types(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps({"id": "e1", "question": "q", "answers": ["a"], "colour": 1}) + "\n")
    with pytest.raises(UserError, match=r":1: unknown field\(s\) colour"):
        read_jsonl(path, Example)
    path.write_text(json.dumps({"id": "e1", "question": "q"}) + "\n")
    with pytest.raises(UserError, match=r"missing field\(s\) answers"):
        read_jsonl(path, Example)
    path.write_text(json.dumps({"id": "e1", "question": "q", "answers": "yes"}) + "\n")
    with pytest.raises(UserError, match="answers' must be a list of strings"):
        read_jsonl(path, Example)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_jsonl(tmp_path / "nope.jsonl", Example)


def test_write_is_atomic_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [Judgement("c1", True, 1.0, "oracle", 0.0)])
    before = path.read_text()

    class Boom:
        pass

    with pytest.raises(TypeError):
        write_jsonl(path, [Judgement("c2", True, 1.0, "oracle", 0.0), Boom()])
    assert path.read_text() == before  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind


def test_a_resumed_run_removes_what_a_killed_one_left_half_written(tmp_path):
    import os
    import subprocess
    import sys

    from illume_rm.records import atomic_write_text, remove_stale_temps

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / "iter-000").mkdir()
    left = [tmp_path / "iter-000" / f".candidates.jsonl.tmp-{dead}-abc", tmp_path / f".adapter.tmp-{dead}"]
    left[0].write_text("half")
    left[1].mkdir()
    (left[1] / "adapter_model.safetensors").write_text("half")
    mine = tmp_path / f".train.jsonl.tmp-{os.getpid()}-x"  # a write under way in this process: kept
    mine.write_text("writing")
    kept = tmp_path / "notes.tmp-1"  # not hidden: not ours to remove
    kept.write_text("user's")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(left)
    assert not any(p.exists() for p in left) and mine.exists() and kept.exists()
    atomic_write_text(tmp_path / "a.txt", "whole")  # its own temporary name matches what is cleaned
    assert (tmp_path / "a.txt").read_text() == "whole" and not list(tmp_path.glob(".a.txt.*"))
