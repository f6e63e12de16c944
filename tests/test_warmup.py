import json

from click.testing import CliRunner

from illume_rm.cli import cli


def test_warmup_trains_saves_and_is_cached(tiny_vlm_path, tmp_path, monkeypatch):
    args = ["warmup", "--set", f"model.base={tiny_vlm_path}", "--set", "model.image_size=64",
            "--set", "data.shapes={train: 20, val: 6, test: 2, image_size: 64}",
            "--set", "warmup.steps=3", "--set", "warmup.batch_size=4", "--set", "warmup.eval_every=2",
            "--out", str(tmp_path / "copy")]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "before" in first.output and "after" in first.output and "chance" in first.output
    report = json.loads((tmp_path / "copy" / "warmup.json").read_text())
    assert report["val_questions"] == 18 and len(report["losses"]) == 3  # 6 images x 3 questions
    # the learning curve: before, every eval_every steps, after
    assert [c["step"] for c in report["curve"]] == [0, 2, 3]
    assert report["curve"][0]["all"] == report["before"]["all"] and report["curve"][-1] == {"step": 3, **report["after"]}
    assert "step 2: val accuracy" in first.output
    assert set(report["after"]) >= {"all"} and (tmp_path / "copy" / "model.safetensors").exists()
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0 and "cached for this recipe" in second.output
    # a checkpoint trained on questions an older generator wrote is not reused
    import illume_rm.data.shapes as shapes

    monkeypatch.setattr(shapes, "GENERATOR_VERSION", shapes.GENERATOR_VERSION + 1)
    third = CliRunner().invoke(cli, args)
    assert third.exit_code == 0 and "cached for this recipe" not in third.output and "after" in third.output
    # the checkpoint loads back as a VLM
    from illume_rm.vlm import load_vlm

    assert load_vlm(tmp_path / "copy").answer.__call__


def test_warmup_on_text_only_data(tiny_vlm_path, tmp_path):
    """Text-only data (as VQA-X without images): no image features, no captions, answer-only."""
    from illume_rm.records import Example, write_jsonl

    for split in ("train", "val"):
        write_jsonl(tmp_path / f"{split}.jsonl", [
            Example(id=f"{split}{i}", question=f"Is {i} even?", answers=["yes" if i % 2 == 0 else "no"],
                    explanations=[f"{i} is {'even' if i % 2 == 0 else 'odd'}"]) for i in range(8)])
    r = CliRunner().invoke(cli, ["warmup", "--set", f"model.base={tiny_vlm_path}", "--set", "data.name=jsonl",
                                 "--data-path", str(tmp_path / "{split}.jsonl"),
                                 "--set", "warmup.steps=2", "--set", "warmup.batch_size=4"])
    assert r.exit_code == 0, r.output
    assert "after" in r.output


def test_warmup_steps_on_grounding_questions_under_bf16(tiny_vlm_path, tmp_path):
    """The three kinds of warm-up step (captions, grounding questions, answer-only questions) under bf16
    autocast; grounding questions come from the data (shapes: what is in each cell, where each object is)."""
    from illume_rm.data import load_examples
    from illume_rm.config import load_recipe
    from illume_rm.train.warmup import warmup_items

    sets = ["--set", f"model.base={tiny_vlm_path}", "--set", "model.image_size=64",
            "--set", "data.shapes={train: 12, val: 4, test: 2, image_size: 64}"]
    recipe = load_recipe(None, [s for s in sets if s != "--set"])
    train = load_examples(recipe.data, "train")
    answers, captions, grounded = warmup_items(train)
    assert len(answers) == 36 and len(captions) == 12
    assert len(grounded) == sum(9 + len(ex.meta["scene"]["objects"]) for ex in train[::3])
    assert ("Q: What is in the centre? A:" in {p for _, p, _ in grounded}
            and all(t.startswith(" ") for _, _, t in grounded))
    r = CliRunner().invoke(cli, ["warmup", *sets, "--set", "warmup.steps=4", "--set", "warmup.batch_size=4",
                                 "--set", "warmup.caption_fraction=0.3", "--set", "warmup.grounding_fraction=0.4",
                                 "--set", "warmup.precision=bf16", "--out", str(tmp_path / "ck")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "ck" / "warmup.json").read_text())
    assert report["config"]["precision"] == "bf16" and all(l == l for l in report["losses"])  # no NaN


def test_unknown_precision_is_refused_before_any_work(tmp_path):
    r = CliRunner().invoke(cli, ["warmup", "--set", "warmup.precision=fp16", "--out", str(tmp_path / "ck")])
    assert r.exit_code == 2 and "warmup.precision: expected one of fp32, bf16, got 'fp16'" in r.output
    assert not (tmp_path / "ck").exists()


def test_step_shares_that_leave_no_room_are_refused(tmp_path):
    r = CliRunner().invoke(cli, ["warmup", "--set", "warmup.caption_fraction=0.6", "--set",
                                 "warmup.grounding_fraction=0.5", "--out", str(tmp_path / "ck")])
    assert r.exit_code == 2 and "caption_fraction (0.6) and grounding_fraction (0.5)" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "ck").exists()
