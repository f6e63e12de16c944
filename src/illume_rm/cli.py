"""The `illume-rm` command."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .errors import UserError


class Group(click.Group):
    """Bad input anywhere below prints one line naming what and where, and exits 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"illume-rm: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=Group)
@click.version_option(package_name="illume-rm")
def cli() -> None:
    """illume-rm: align VLM rationales with human intent (ILLUME), with a learned reward model."""


def recipe_options(f):
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a recipe field, e.g. --set warmup.steps=50 (repeatable).")(f)
    f = click.option("--images", type=str, default=None, help="Image folder for NLX-GPT data (VQA-X, ...).")(f)
    f = click.option("--data-path", type=str, default=None, help="Dataset file or folder (VQA-X JSON, JSONL).")(f)
    return f


def _recipe(path, overrides, data_path=None, images=None):
    from .config import load_recipe

    extra = list(overrides)
    if data_path:
        extra.append(f"data.path={json.dumps(data_path)}")
    if images:
        extra.append(f"data.images={json.dumps(images)}")
    return load_recipe(path, extra)


# -- data -------------------------------------------------------------------------------
@cli.group(cls=Group)
def data() -> None:
    """Look at and export the datasets."""


@data.command("show")
@click.argument("name")
@click.option("--split", default="train", show_default=True)
@click.option("-n", "count", default=3, show_default=True, help="How many examples.")
@recipe_options
def data_show(name, split, count, data_path, images, overrides):
    """Print a few examples of dataset NAME (shapes, easy-vqa, vqa-x, act-x, esnlive, jsonl)."""
    from .data import load_examples

    recipe = _recipe(None, [f"data.name={name}", *overrides], data_path, images)
    examples = load_examples(recipe.data, split)
    click.echo(f"{name} / {split}: {len(examples)} examples")
    for ex in examples[:count]:
        click.echo(f"\n[{ex.id}] {ex.question}")
        click.echo(f"  answer: {ex.answer}" + (f"   (all: {', '.join(ex.answers)})" if len(ex.answers) > 1 else ""))
        click.echo(f"  image: {ex.image or '(none: text-only)'}")
        for e in ex.explanations:
            click.echo(f"  because: {e}")
        if "caption" in ex.meta:
            click.echo(f"  caption: {ex.meta['caption']}")


@data.command("export")
@click.argument("name")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--split", default="train", show_default=True)
@recipe_options
def data_export(name, out, split, data_path, images, overrides):
    """Write dataset NAME's SPLIT as JSONL of Examples to OUT."""
    from .data import load_examples
    from .records import write_jsonl

    recipe = _recipe(None, [f"data.name={name}", *overrides], data_path, images)
    n = write_jsonl(out, load_examples(recipe.data, split))
    click.echo(f"wrote {n} examples to {out}")


# -- warm-up ----------------------------------------------------------------------------
def warmup_checkpoint(recipe, log=click.echo) -> Path:
    """The cached warm-up checkpoint for this recipe, trained when missing."""
    from .data import load_examples
    from .paths import cache_dir
    from .train.warmup import run_warmup
    from .vlm import load_vlm

    out = cache_dir() / "warmup" / f"{recipe.name}-{recipe.hash('seed', 'data', 'model', 'warmup')}"
    if (out / "warmup.json").exists():
        log(f"warm-up checkpoint found (cached for this recipe): {out}")
        return out
    train, val = load_examples(recipe.data, "train"), load_examples(recipe.data, "val")
    vlm = load_vlm(recipe.model.base, device=recipe.model.device, image_size=recipe.model.image_size)
    vlm.features.get([e.image for e in train + val if e.image], progress=True)
    run_warmup(vlm, train, val, recipe.warmup, out, seed=recipe.seed, log=log)
    return out


@cli.command()
@click.argument("recipe", required=False, type=str)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Also copy the checkpoint here (it is cached either way).")
@recipe_options
def warmup(recipe, out, data_path, images, overrides):
    """Teach the built-in VLM to see and answer (captions + answer-only; never explanations).

    RECIPE is a YAML file (default: the embedded defaults, i.e. recipes/shapes-warmup.yaml).
    Prints val answer accuracy before and after, per question family, beside chance.
    """
    import shutil

    from .train.warmup import format_table

    r = _recipe(recipe, overrides, data_path, images)
    ckpt = warmup_checkpoint(r)
    report = json.loads((ckpt / "warmup.json").read_text())
    click.echo(f"\nval answer accuracy ({report['val_questions']} questions; "
               f"warm-up trained for {report['train_seconds'] / 60:.1f} min)")
    click.echo(format_table(report["before"], report["after"], report["chance"]))
    if out:
        shutil.copytree(ckpt, out, dirs_exist_ok=True)
        click.echo(f"checkpoint copied to {out}")
    click.echo(f"checkpoint: {ckpt}")


main = cli

if __name__ == "__main__":  # pragma: no cover
    cli()
