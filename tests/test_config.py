"""Recipes: `extends`, and cache keys that name what shapes the cached thing (and nothing else)."""
from pathlib import Path

import pytest

from illume_rm.config import load_recipe
from illume_rm.errors import UserError

RECIPES = Path(__file__).parent.parent / "recipes"


def warm_key(r):
    return r.hash("seed", "data", "model", "warmup")


def test_a_loop_recipe_names_its_warm_up_recipe(tmp_path):
    warm = tmp_path / "warm.yaml"
    warm.write_text("name: w\nseed: 3\ndata: {name: shapes, shapes: {train: 50, val: 5}}\n"
                    "warmup: {steps: 7, lora: {r: 4}}\n")
    sub = tmp_path / "loops"
    sub.mkdir()
    loop = sub / "loop.yaml"
    loop.write_text("name: l\nextends: ../warm.yaml\nwarmup: {lora: {alpha: 9}}\nselector: {name: oracle}\n")
    r = load_recipe(str(loop))
    assert (r.name, r.seed, r.data.shapes.train, r.data.shapes.val) == ("l", 3, 50, 5)
    assert (r.warmup.steps, r.warmup.lora.r, r.warmup.lora.alpha) == (7, 4, 9)  # sections merge key by key
    assert r.selector.name == "oracle"
    assert load_recipe(str(loop), ["warmup.steps=8"]).warmup.steps == 8  # --set still wins


def test_extends_errors_name_the_file(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("extends: b.yaml\n")
    b.write_text("extends: a.yaml\n")
    with pytest.raises(UserError, match="cycle"):
        load_recipe(str(a))
    a.write_text("extends: gone.yaml\n")
    with pytest.raises(UserError, match=r"gone.yaml does not exist \(extended by .*a.yaml\)"):
        load_recipe(str(a))
    a.write_text("extends: [1]\n")
    with pytest.raises(UserError, match="extends: expected the path"):
        load_recipe(str(a))
    b.write_text("warmup: {stepz: 1}\n")
    a.write_text("extends: b.yaml\n")
    with pytest.raises(UserError, match="unknown key 'stepz'"):
        load_recipe(str(a))


def test_the_shipped_loop_recipes_share_their_warm_up():
    demo = warm_key(load_recipe(str(RECIPES / "shapes-warmup.yaml")))
    for name in ("shapes-critic", "shapes-oracle", "shapes-compare", "shapes-gt-sft", "shapes-answer-only",
                 "shapes-sweep", "shapes-critic-seeds"):
        assert "extends: shapes-" in (RECIPES / f"{name}.yaml").read_text()
        assert warm_key(load_recipe(str(RECIPES / f"{name}.yaml"))) == demo, name
    full = warm_key(load_recipe(str(RECIPES / "shapes-warmup-full.yaml")))
    assert warm_key(load_recipe(str(RECIPES / "shapes-critic-full.yaml"))) == full


def test_the_seeds_recipe_is_the_demo_loop_at_three_loop_seeds():
    """`recipes/shapes-critic-seeds.yaml` (README, "Fine-tuning under bf16"): its sweep's cells are the
    demo's critic loop at seeds 0-2, nothing else changed."""
    from illume_rm.sweep import cells

    seeds = load_recipe(str(RECIPES / "shapes-critic-seeds.yaml")).check()
    assert [(c.name, c.overrides) for c in cells(seeds.sweep)] == [
        (f"critic-s{s}", [f"seed={s}", 'selector.name="critic"']) for s in (0, 1, 2)]
    demo = load_recipe(str(RECIPES / "shapes-critic.yaml")).check()
    cell = load_recipe(str(RECIPES / "shapes-critic-seeds.yaml"), ["seed=1", "sweep={}"]).check()
    demo.seed, demo.name = 1, cell.name
    assert cell == demo


def test_the_warm_up_key_leaves_out_where_it_runs_and_what_is_measured():
    base = load_recipe(None)
    same = ["model.device=cpu", "warmup.eval_examples=50", "warmup.eval_every=10", "model.precision=bf16"]
    for item in same:
        assert warm_key(load_recipe(None, [item])) == warm_key(base), item
    for item in ["model.image_grid=2", "model.image_size=128", "warmup.steps=3", "seed=1", "data.shapes.train=10"]:
        assert warm_key(load_recipe(None, [item])) != warm_key(base), item


def test_image_features_are_cached_per_grid(tmp_path, shapes_small):
    """The same weights pooled to another grid compute features of the new shape instead of loading
    the old ones (the cache is keyed by the grid)."""
    from illume_rm.data import load_examples
    from illume_rm.vlm import load_vlm
    from illume_rm.vlm.weights import build_tiny

    images = [e.image for e in load_examples(shapes_small, "val")[:2]]
    two = load_vlm(build_tiny(tmp_path / "g2", image_grid=2))
    three = load_vlm(build_tiny(tmp_path / "g3", image_grid=3))
    assert two.features.get(images).shape[1] == 4
    assert three.features.get(images).shape[1] == 9
    folder = str(Path(images[0]).parent)
    assert two.features._file(folder) != three.features._file(folder)
    again = load_vlm(tmp_path / "g2")
    assert again.features.get(images).shape[1] == 4 and again.features._file(folder).exists()  # from disk


def test_floats_written_without_a_dot_are_floats(tmp_path):
    """YAML 1.1 reads `lr: 1e-4` as a string; a recipe means the number."""
    p = tmp_path / "r.yaml"
    p.write_text("finetune: {lr: 1e-4}\nrl: {lr: 3E-5}\n")
    r = load_recipe(str(p))
    assert r.finetune.lr == 1e-4 and r.rl.lr == 3e-5
    assert load_recipe(str(p), ["rl.lr=2e-6"]).rl.lr == 2e-6
    p.write_text("finetune: {lr: fast}\n")
    with pytest.raises(UserError, match="finetune.lr"):
        load_recipe(str(p))


def test_the_rl_section_keeps_old_keys():
    """A recipe without rl: keeps its run and cache keys (the section hashes only when set)."""
    r = load_recipe(str(RECIPES / "shapes-critic.yaml"))
    with_rl = load_recipe(str(RECIPES / "shapes-critic.yaml"), ["rl.steps=5"])
    from illume_rm.config import _hashable

    assert "rl" not in _hashable(r) and "rl" in _hashable(with_rl) and r.hash() != with_rl.hash()
    assert r.hash("seed", "data", "model", "warmup") == with_rl.hash("seed", "data", "model", "warmup")


def test_one_fold_for_the_reward_threshold_is_refused():
    from click.testing import CliRunner

    from illume_rm.cli import cli

    for bad in ("1", "-2"):
        with pytest.raises(UserError, match="selector.reward.threshold_folds: .*at least 2"):
            load_recipe(None, [f"selector.reward.threshold_folds={bad}"]).check()
    assert load_recipe(None, ["selector.reward.threshold_folds=5"]).check().selector.reward.threshold_folds == 5
    r = CliRunner().invoke(cli, ["train-reward", "--candidates", "c.jsonl", "--judgements", "j.jsonl", "--out", "rm",
                                 "--set", "selector.reward.threshold_folds=1"])
    assert r.exit_code == 2 and "threshold_folds: 1" in r.output, r.output


@pytest.mark.parametrize("key", ["batch_size", "eval_batch_size"])
def test_a_sampling_batch_of_no_questions_is_refused_before_any_work(key, tmp_path):
    from click.testing import CliRunner

    from illume_rm.cli import cli

    r = CliRunner().invoke(cli, ["sample", "--set", f"sampling.{key}=0", "--evaluation", "--out", str(tmp_path / "c.jsonl")])
    assert r.exit_code == 2, r.output
    assert f"sampling.{key}: 0" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "c.jsonl").exists()
