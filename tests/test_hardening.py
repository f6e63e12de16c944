"""Careless or hostile input to the commands: one line naming what and where, exit status 2, no
traceback, nothing half-written; and no silent acceptance (issue: hardening)."""
import json
import sqlite3

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from illume_rm.cli import cli
from illume_rm.records import Candidate, write_jsonl

SMALL = ["--set", "data.shapes.train=12", "--set", "data.shapes.val=4", "--set", "data.shapes.test=2",
         "--set", "data.shapes.image_size=64"]
EXAMPLE = "shapes-train-00000-q0"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def refused(result, *words):
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for w in words:
        assert w in result.output, (w, result.output)


@pytest.fixture()
def cands(tmp_path):
    path = tmp_path / "cands.jsonl"
    write_jsonl(path, [Candidate(f"c{i}", EXAMPLE, "yes", f"there is a thing {i}") for i in range(3)])
    return path


def select(cands, selector, tmp_path, *extra):
    return run("select", cands, "--selector", selector, "--out", tmp_path / "j.jsonl", *SMALL, *extra)


@pytest.mark.parametrize("source, words", [
    ("def f(examples, candidates:\n    return []\n", ["syntax error", "badmod.py:1"]),
    ("raise RuntimeError('no config here')\n", ["importing badmod failed", "RuntimeError: no config here"]),
    ("import not_a_module_anywhere\n", ["cannot import badmod"]),
    ("class S:\n    def __init__(self):\n        raise ValueError('needs a key')\n"
     "    def score(self, e, c):\n        return []\nf = S\n", ["S() failed", "ValueError: needs a key"]),
    ("import sys\ndef f(examples, candidates):\n    sys.exit(3)\n", ["called exit(3)"]),
    ("def f(examples, candidates):\n    return [float('nan')] * len(candidates)\n", ["NaN for 3 of 3 candidates"]),
])
def test_a_broken_plugin_is_one_line(tmp_path, monkeypatch, cands, source, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "badmod.py").write_text(source)
    import sys
    sys.modules.pop("badmod", None)
    refused(select(cands, "badmod:f", tmp_path), *words)
    assert not (tmp_path / "j.jsonl").exists()


@pytest.mark.parametrize("name", [":fn", ".mod:fn", "mod:fn#x", "mod::fn", "mod:", "a b:c"])
def test_malformed_selector_names(tmp_path, cands, name):
    refused(select(cands, name, tmp_path), "malformed scorer name" if ":" in name else "unknown scorer")


def test_a_comment_in_set_is_not_silently_dropped(tmp_path, cands):
    refused(select(cands, "critic", tmp_path, "--set", "selector.rule.threshold=0.5 #x"), "'#' starts a YAML comment")


def test_malformed_yaml_in_set(tmp_path, cands):
    refused(select(cands, "critic", tmp_path, "--set", "selector.rule={kind: [threshold"), "malformed YAML value")


def test_files_that_are_not_utf8(tmp_path, cands):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"id": "c1", "example_id": "x", "answer": "caf\xe9", "rationale": "r"}\n')
    refused(run("select", bad, "--selector", "critic", "--out", tmp_path / "j.jsonl", *SMALL),
            "latin1.jsonl:1: not UTF-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(b"name: caf\xe9\n")
    refused(run("select", cands, recipe, "--out", tmp_path / "j.jsonl", *SMALL), "r.yaml: not UTF-8")


@pytest.mark.parametrize("setting, words", [
    ("data.shapes.max_objects=12", ["max_objects <= 9"]),
    ("data.shapes.min_objects=0", ["1 <= min_objects"]),
    ("data.shapes.image_size=0", ["image_size must be at least"]),
    ("data.shapes.train=-5", ["data.shapes.train"]),
    ("data.shapes.questions_per_image=0", ["questions_per_image"]),
])
def test_out_of_range_generator_settings(setting, words):
    refused(run("data", "show", "shapes", *SMALL, "--set", setting), *words)


def test_a_corrupt_annotation_store(tmp_path):
    (tmp_path / "annotations.sqlite").write_bytes(b"this is not a database" * 100)
    refused(run("annotate", tmp_path, "--status"), "annotations.sqlite is not a readable annotation store")


def test_two_candidates_sharing_an_id(tmp_path):
    path = tmp_path / "dup.jsonl"
    write_jsonl(path, [Candidate("same", EXAMPLE, "yes", "a"), Candidate("same", EXAMPLE, "yes", "b")])
    refused(run("select", path, "--selector", "critic", "--out", tmp_path / "j.jsonl", *SMALL),
            "candidates 1 and 2 share the id 'same'")


def test_an_output_path_under_a_file(tmp_path, cands):
    (tmp_path / "afile").write_text("x")
    refused(run("select", cands, "--selector", "critic", "--out", tmp_path / "afile" / "j.jsonl", *SMALL),
            "afile is a file, not a folder")


def test_a_candidate_about_an_unknown_example(tmp_path):
    path = tmp_path / "c.jsonl"
    write_jsonl(path, [Candidate("c1", EXAMPLE, "yes", "a"), Candidate("c2", "no-such-example", "yes", "b")])
    refused(run("select", path, "--selector", "critic", "--out", tmp_path / "j.jsonl", *SMALL),
            "1 of 2 candidates are about examples the data lacks", "no-such-example")
    assert not (tmp_path / "j.jsonl").exists()


def test_a_second_candidates_file_with_the_same_name(tmp_path):
    recipe = tmp_path / "small.yaml"
    recipe.write_text("data:\n  shapes: {train: 12, val: 4, test: 2, image_size: 64}\n")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_jsonl(a / "batch.jsonl", [Candidate("c1", EXAMPLE, "yes", "one")])
    write_jsonl(b / "batch.jsonl", [Candidate("c9", EXAMPLE, "yes", "nine")])
    run_dir = tmp_path / "run"
    first = run("annotate", run_dir, "--candidates", a / "batch.jsonl", "--recipe", recipe, "--status")
    assert first.exit_code == 0, first.output
    again = run("annotate", run_dir, "--candidates", a / "batch.jsonl", "--recipe", recipe, "--status")
    assert again.exit_code == 0, again.output  # the same file again: nothing new
    refused(run("annotate", run_dir, "--candidates", b / "batch.jsonl", "--recipe", recipe, "--status"),
            "a batch named 'batch' already holds other candidates")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_in_jsonl_and_recipes_never_trace_back(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "c.jsonl").write_bytes(data)
    (tmp / "r.yaml").write_bytes(data)
    for args in (["select", tmp / "c.jsonl", "--selector", "critic", "--out", tmp / "j.jsonl", *SMALL],
                 ["select", tmp / "c.jsonl", tmp / "r.yaml", "--out", tmp / "j.jsonl", *SMALL]):
        r = run(*args)
        assert r.exit_code in (0, 2), (r.exit_code, r.output, repr(r.exception))
        assert "Traceback" not in r.output


@pytest.mark.parametrize("setting, words", [
    ("selector.name=oracel", ["selector.name", "unknown scorer 'oracel'", "critic, oracle, answer"]),
    ("finetune.mode=ilume", ["finetune.mode", "illume, gt-sft, answer-only"]),
    ("loop.metric=cider", ["loop.metric", "CIDEr"]),
    ("selector.rule.kind=top", ["selector.rule.kind", "threshold, adaptive, topk"]),
    ("selector.reward.kind=bert", ["selector.reward.kind", "cross-encoder"]),
    ("selector.require=[answr]", ["selector.require[0]"]),
])
def test_a_typo_in_the_recipe_is_refused_before_any_work(tmp_path, setting, words):
    run_dir = tmp_path / "run"
    refused(run("iterate", "recipes/shapes-critic.yaml", "--run", run_dir, *SMALL, "--set", setting), *words)
    assert not run_dir.exists()  # no recipe.yaml written, no warm-up, nothing sampled


def test_meteor_as_the_loop_metric_needs_the_coco_scorer(tmp_path):
    refused(run("iterate", "recipes/shapes-critic.yaml", "--run", tmp_path / "run", *SMALL,
                "--set", "loop.metric=METEOR", "--set", "evaluation.scorer=python"), "METEOR needs pycocoevalcap")
