import json
from click.testing import CliRunner

from illume_rm.cli import cli
from illume_rm.records import Example, read_jsonl, write_jsonl

from conftest import FIXTURES


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result


def test_data_show_and_export(tmp_path):
    r = run("data", "show", "shapes", "--split", "val", "-n", "2", "--set", "data.shapes.val=5",
            "--set", "data.shapes.image_size=64")
    assert r.exit_code == 0, r.output
    assert "shapes / val: " in r.output and "because: " in r.output and "image: /" in r.output
    out = tmp_path / "val.jsonl"
    r = run("data", "export", "vqa-x", str(out), "--split", "train", "--data-path", str(FIXTURES / "nlx_vqa_small.json"))
    assert r.exit_code == 0, r.output
    exported = read_jsonl(out, Example)
    assert exported and exported[0].explanations


def test_dataset_path_that_does_not_exist(tmp_path):
    r = run("data", "show", "vqa-x", "--data-path", str(tmp_path / "missing.json"))
    assert r.exit_code == 2
    assert "missing.json does not exist" in r.output and "Traceback" not in r.output


def test_malformed_jsonl_line(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [Example(id="a", question="q?", answers=["yes"])])
    with path.open("a") as fh:
        fh.write('{"id": "b", "question": \n')
    r = run("data", "show", "jsonl", "--data-path", str(path))
    assert r.exit_code == 2
    assert f"{path}:2: malformed JSON" in r.output


def test_missing_image(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [Example(id="a", question="q?", answers=["yes"], image=str(tmp_path / "gone.png"))])
    r = run("data", "show", "jsonl", "--data-path", str(tmp_path / "{split}.jsonl"))
    assert r.exit_code == 2
    assert "example a: image" in r.output and "gone.png does not exist" in r.output


def test_unknown_recipe_key_and_missing_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("warmup:\n  stepz: 3\n")
    r = run("warmup", str(recipe))
    assert r.exit_code == 2 and "unknown key 'stepz'" in r.output and str(recipe) in r.output
    r = run("warmup", "--set", "warmup.steps=many")
    assert r.exit_code == 2 and "warmup.steps: expected int" in r.output
    r = run("warmup", str(tmp_path / "nope.yaml"))
    assert r.exit_code == 2 and "nope.yaml does not exist" in r.output


def test_missing_checkpoint(tmp_path):
    r = run("warmup", "--set", f"model.base={tmp_path / 'no-model'}")
    assert r.exit_code == 2 and "no-model does not exist" in r.output


def _vqax_candidates(tmp_path):
    from illume_rm.records import Candidate

    path = tmp_path / "cands.jsonl"
    write_jsonl(path, [Candidate(id="c1", example_id="vqa-x-1001", answer="giraffe", rationale="it has a long neck"),
                       Candidate(id="c2", example_id="vqa-x-1002", answer="yes", rationale="the man is standing")])
    return path


def test_evaluate_a_data_path_needs_a_dataset_that_reads_files(tmp_path):
    r = run("evaluate", "--data-path", str(FIXTURES / "nlx_vqa_small.json"), "--candidates",
            str(_vqax_candidates(tmp_path)))
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "dataset is 'shapes', which reads no file" in r.output and "data.name=vqa-x" in r.output


def test_evaluate_a_whole_file_as_the_test_split_and_count_what_is_left_out(tmp_path):
    cands = str(_vqax_candidates(tmp_path))
    common = ["--set", "data.name=vqa-x", "--data-path", str(FIXTURES / "nlx_vqa_small.json"), "--split", "test",
              "--candidates", cands, "--set", "evaluation.scorer=python"]
    whole = run("evaluate", *common, "--whole-file", "--out", str(tmp_path / "m.json"))
    assert whole.exit_code == 0, whole.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n"] == 2 and metrics["outside"] == 0
    # NLX-GPT's protocol: "giraffe" is the most common answer of 1001, "yes" is not 1002's ("no")
    assert metrics["filtered"] == metrics["filtered"] | {"n": 1, "protocol": "nlx-gpt"}
    assert "filtered: questions answered correctly under the nlx-gpt protocol" in whole.output
    assert "METEOR left out" in whole.output
    split = run("evaluate", *common, "--out", str(tmp_path / "m2.json"))
    assert split.exit_code == 0, split.output
    assert "is one file, split 80/10/10 by example id" in split.output
    metrics = json.loads((tmp_path / "m2.json").read_text())
    assert metrics["n"] + metrics["outside"] == 2
    assert any("outside the evaluated examples and were not scored" in n for n in metrics["notes"])
