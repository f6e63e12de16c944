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
    assert "2 steps of 4, fp32" in r.output  # the default precision, said


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
    # a CPU without native bfloat16 emulates it, many times slower: one line says so, and what auto picks
    import torch

    from illume_rm.vlm.base import bf16_native

    assert ("no native bfloat16" in r.output) == (not bf16_native(torch.device("cpu"))), r.output
    assert "steps of 4, bf16 autocast" in r.output


def test_unknown_precision_is_refused_before_any_work(tmp_path):
    r = CliRunner().invoke(cli, ["warmup", "--set", "warmup.precision=fp16", "--out", str(tmp_path / "ck")])
    assert r.exit_code == 2 and "warmup.precision: expected one of auto, fp32, bf16, got 'fp16'" in r.output
    assert not (tmp_path / "ck").exists()


def test_step_shares_that_leave_no_room_are_refused(tmp_path):
    r = CliRunner().invoke(cli, ["warmup", "--set", "warmup.caption_fraction=0.6", "--set",
                                 "warmup.grounding_fraction=0.5", "--out", str(tmp_path / "ck")])
    assert r.exit_code == 2 and "caption_fraction (0.6) and grounding_fraction (0.5)" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "ck").exists()


def _family_examples():
    from illume_rm.records import Example

    fams = ["count"] * 40 + ["compare"] * 40 + ["exist"] * 40
    return [Example(id=str(i), question="q?", answers=["yes"], meta={"family": f}) for i, f in enumerate(fams)]


def test_family_weights_draw_a_family_that_much_more_often():
    import collections
    import random

    import pytest

    from illume_rm.errors import UserError
    from illume_rm.train.warmup import family_weights, weighted_sample

    train = _family_examples()
    assert family_weights(train, None) is None  # no weights: the plain uniform draw
    w = family_weights(train, {"compare": 3, "exist": 0})
    rng, seen = random.Random(0), collections.Counter()
    for _ in range(300):
        batch = weighted_sample(rng, train, w, 8)
        assert len({ex.id for ex in batch}) == 8  # a batch never repeats a question
        seen.update(ex.meta["family"] for ex in batch)
    assert seen["exist"] == 0  # weight 0: never drawn
    assert 2.2 < seen["compare"] / seen["count"] < 3.8  # about 3x (without replacement pulls it below 3)
    with pytest.raises(UserError, match="no training question is of family spatial"):
        family_weights(train, {"spatial": 2})
    with pytest.raises(UserError, match="every question has weight 0"):
        family_weights(train, {"count": 0, "compare": 0, "exist": 0})


def test_constant_schedule_holds_the_learning_rate_and_cosine_decays_it(tiny_vlm_path, monkeypatch):
    import torch

    from illume_rm.train.warmup import WarmupConfig, train_warmup
    from illume_rm.vlm import load_vlm

    seen = []
    step = torch.optim.AdamW.step

    def recording_step(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    train = _family_examples()[:8]
    for schedule in ("constant", "cosine"):
        seen.clear()
        cfg = WarmupConfig(steps=6, batch_size=2, lr=1e-3, warmup_steps=2, caption_fraction=0.0, schedule=schedule)
        train_warmup(load_vlm(tiny_vlm_path), train, cfg, log=lambda s: None)
        if schedule == "constant":  # ramps up over the warm-up steps (no step at 0), then holds
            assert seen == [5e-4] + [1e-3] * 5
        else:  # decays all along, to near the 5% floor
            assert all(a > b for a, b in zip(seen[1:], seen[2:])) and seen[-1] < 1e-4


def test_place_words_and_settings_added_later_keep_old_cache_keys(tiny_vlm_path):
    from illume_rm.config import load_recipe
    from illume_rm.vlm.modeling import grid_place

    assert [grid_place(r, c, 3) for r in range(3) for c in range(3)][:5] == [
        "top left", "top middle", "top right", "middle left", "centre"]
    assert grid_place(0, 3, 4) == "top right" and grid_place(1, 1, 2) == "bottom right"  # other grids by thirds
    # a setting added later leaves the cache keys of recipes that do not set it as they were
    plain = load_recipe(None, [f"model.base={tiny_vlm_path}"])
    assert plain.hash("warmup") == load_recipe(None, ["warmup.schedule=cosine"]).hash("warmup")
    assert plain.hash("warmup") != load_recipe(None, ["warmup.schedule=constant"]).hash("warmup")
    assert plain.hash("warmup") == load_recipe(None, ["warmup.items_per_image=1"]).hash("warmup")
    assert plain.hash("warmup") != load_recipe(None, ["warmup.items_per_image=4"]).hash("warmup")


def test_family_weights_for_a_family_the_data_lacks_are_refused_before_any_work(tiny_vlm_path, tmp_path):
    r = CliRunner().invoke(cli, ["warmup", "--set", f"model.base={tiny_vlm_path}", "--set", "model.image_size=64",
                                 "--set", "data.shapes={train: 6, val: 2, test: 2, image_size: 64}",
                                 "--set", "warmup.family_weights={comparison: 3}", "--out", str(tmp_path / "ck")])
    assert r.exit_code == 2 and "no training question is of family comparison" in r.output
    assert "before" not in r.output and not (tmp_path / "ck").exists()


def test_precision_auto_is_bf16_only_where_the_device_runs_it_natively(monkeypatch, tmp_path):
    """bf16 on a CPU without AVX512-BF16 or AMX is emulated, many times slower; ``auto`` picks fp32
    there and bf16 where it is native. The warm-up trains what it picked, under the cache key of that
    precision named outright (one checkpoint per precision, found again either way)."""
    import torch

    from illume_rm import data, tasks
    from illume_rm.checkpoints import warmup_checkpoint
    from illume_rm.config import load_recipe
    from illume_rm.vlm import base

    trained = []

    def fake_warmup(recipe, train, val, out):  # records what would be trained, leaves a checkpoint
        trained.append(recipe.warmup.precision)
        out.mkdir(parents=True)
        (out / "warmup.json").write_text("{}")

    monkeypatch.setenv("ILLUME_RM_CACHE", str(tmp_path))
    monkeypatch.setattr(tasks, "warmup", fake_warmup)
    monkeypatch.setattr(data, "load_examples", lambda *a, **k: [])
    folders = {}
    for native, picked in ((False, "fp32"), (True, "bf16")):
        monkeypatch.setattr(base, "bf16_native", lambda device, native=native: native)
        assert base.resolve_precision("auto", torch.device("cpu")) == picked
        assert base.resolve_precision("fp32", torch.device("cpu")) == "fp32"
        assert base.resolve_precision("bf16", torch.device("cpu")) == "bf16"  # named: as named, with a warning
        auto = load_recipe("recipes/shapes-warmup.yaml")
        assert auto.warmup.precision == "auto"
        folders[picked] = warmup_checkpoint(auto, log=lambda m: None)
        assert trained[-1] == picked
        seen = []
        assert warmup_checkpoint(load_recipe("recipes/shapes-warmup.yaml", [f"warmup.precision={picked}"]),
                                 log=seen.append) == folders[picked]
        assert "found" in seen[0] and len(trained) == (1 if picked == "fp32" else 2)
    assert folders["fp32"] != folders["bf16"]


def test_draws_by_image_take_up_to_k_items_of_each_image_drawn():
    import collections
    import random

    from illume_rm.train.warmup import sample_by_image

    pool = [(f"img{i}", f"q{j}", " a") for i in range(20) for j in range(i % 5 + 1)]  # 1 to 5 items an image
    pool += [(None, f"text{i}", " a") for i in range(6)]  # without an image: each its own group
    rng, seen = random.Random(0), collections.Counter()
    for _ in range(200):
        batch = sample_by_image(rng, pool, 3, 12)
        assert len(batch) == 12 and len(set(batch)) == 12  # full, and no item twice
        per_image = collections.Counter(img for img, _, _ in batch if img is not None)
        assert max(per_image.values()) <= 3
        # each image drawn gives all its items, up to 3 (only the last one drawn may give fewer)
        short = [img for img, n in per_image.items() if n < min(3, int(img[3:]) % 5 + 1)]
        assert len(short) <= 1
        assert sum(1 for img, _, _ in batch if img is None) <= 12
        seen.update(img for img, _, _ in batch)
    assert len(seen) == 21  # every image and the imageless items are drawn at times
    assert len(sample_by_image(rng, pool[:4], 3, 12)) == 4  # a pool smaller than the batch: all of it


def test_items_per_image_draws_and_shares_and_is_checked(tiny_vlm_path, tmp_path):
    """warmup.items_per_image: a recipe setting (0 and a combination with family_weights refused
    before any work, exit 2); with 2 the warm-up trains with each image's items together and its
    tokens read once, and warmup.json says so."""
    base = ["warmup", "--set", f"model.base={tiny_vlm_path}", "--set", "model.image_size=64",
            "--set", "data.shapes={train: 12, val: 4, test: 2, image_size: 64}"]
    r = CliRunner().invoke(cli, base + ["--set", "warmup.items_per_image=0", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "warmup.items_per_image: at least 1, got 0" in r.output
    r = CliRunner().invoke(cli, base + ["--set", "warmup.items_per_image=2", "--set",
                                        "warmup.family_weights={count: 2}", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "cannot be combined" in r.output and not (tmp_path / "a").exists()
    r = CliRunner().invoke(cli, base + ["--set", "warmup.items_per_image=2", "--set", "warmup.steps=3", "--set",
                                        "warmup.batch_size=4", "--set", "warmup.grounding_fraction=0.5",
                                        "--set", "warmup.caption_fraction=0.2", "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "a" / "warmup.json").read_text())
    assert report["config"]["items_per_image"] == 2 and len(report["losses"]) == 3


def test_warmup_draw_gives_the_batches_the_warmup_trains_on(tiny_vlm_path, shapes_small):
    """``warmup_draw`` (what benchmarks/warmup_floor.py counts) is the warm-up's own sequence of
    batches: captions, grounding and answer-only steps, in training's order."""
    from illume_rm.data import load_examples
    from illume_rm.train.warmup import WarmupConfig, train_warmup, warmup_draw, warmup_items
    from illume_rm.vlm import load_vlm

    train = load_examples(shapes_small, "train")
    cfg = WarmupConfig(steps=8, batch_size=3, caption_fraction=0.3, grounding_fraction=0.3, align_steps=0,
                       family_weights={"count": 2})
    vlm = load_vlm(tiny_vlm_path)
    trained = []
    loss = vlm.loss

    def recording_loss(items, weights=None):
        trained.append(list(items))
        return loss(items, weights)

    vlm.loss = recording_loss
    train_warmup(vlm, train, cfg, seed=3, log=lambda s: None)
    draw = warmup_draw(train, cfg, seed=3)
    assert trained == [draw(step)[0] for step in range(8)]
    _, captions, grounded = warmup_items(train, True, 3)
    kinds = {"caption" if b[0] in captions else "grounding" if b[0] in grounded else "answer" for b in trained}
    assert kinds == {"caption", "grounding", "answer"}
    assert trained != [warmup_draw(train, cfg, seed=4)(step)[0] for step in range(8)]
