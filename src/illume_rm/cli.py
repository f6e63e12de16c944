"""The `illume-rm` command."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .errors import Pending, UserError


class Group(click.Group):
    """Bad input anywhere below prints one line naming what and where, and exits 2. Work that
    waits for people prints what is pending and how to go on, and exits 0."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """As click's, but a command run by several processes ends its process with ``os._exit``
        once its work is written and its process group torn down (``_invoke_distributed``): gloo's
        threads have aborted a serving process (SIGABRT, "terminate called without an active
        exception") during interpreter finalisation even after ``destroy_process_group``, rarely
        (once in CI; not reproduced here in 45 launches), which turned a finished command into a
        failed one. Nothing is left for finalisation to do: the command's files are closed by then
        (records are written whole and renamed, ``records.atomic_write_text``; nothing appends), and
        the standard streams and logging are flushed first.

        Freed memory stays in the process for its next step (``memory.keep_freed_memory``)."""
        from .memory import keep_freed_memory

        keep_freed_memory()
        if not standalone_mode or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            super().main(args, prog_name, complete_var, standalone_mode, **extra)
            code = 0
        except SystemExit as exc:
            code = exc.code
            if code is not None and not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code or 0)

    def invoke(self, ctx):
        try:
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # several processes (torchrun, accelerate launch)
                return self._invoke_distributed(ctx)
            return super().invoke(ctx)
        except Pending as exc:
            click.echo(str(exc))
            ctx.exit(exc.exit_code)
        except UserError as exc:
            if os.environ.get("RANK", "0") == "0":  # with several processes, the first one says it
                click.echo(f"illume-rm: error: {exc}", err=True)
            ctx.exit(exc.exit_code)

    def _invoke_distributed(self, ctx):
        """The main process runs the command and hands its heavy stages to all (``illume_rm.tasks``);
        the others serve them. Processes started with different commands are refused before any work."""
        from .distributed import processes

        procs = processes()
        orderly = False  # True once every process is known to be past its last collective
        try:
            commands = procs.gather(sys.argv[1:])
            orderly = True  # a refusal below is raised by every process at the same point
            if any(c != commands[0] for c in commands):
                differ = next(i for i, c in enumerate(commands) if c != commands[0])
                raise UserError(f"the {procs.world} processes were started with different commands (process 0: "
                                f"{' '.join(commands[0])!r}; process {differ}: {' '.join(commands[differ])!r})")
            name = commands[0][0] if commands[0] else ""
            procs.fsdp  # an FSDP or DeepSpeed config's options that are not honoured: refused here, on every process
            procs.deepspeed
            if name in SINGLE_PROCESS:
                raise UserError(f"`illume-rm {name}` runs in one process ({SINGLE_PROCESS[name]}); start it without "
                                "torchrun / accelerate launch")
            orderly = False
            if not procs.is_main:
                procs.serve()
                orderly = True
                return None
            click.echo(f"illume-rm: {procs.world} processes on {procs.device} (process 0 runs `{name}` and shares "
                       "its sampling, evaluation and training out)", err=True)
            try:
                result = super().invoke(ctx)
            except (UserError, Pending, click.exceptions.Exit):
                procs.stop()
                orderly = True
                raise
            procs.stop()
            orderly = True
            return result
        finally:
            # an unexpected error may leave the others inside a collective: no barrier then; they fail
            # on the closed connection rather than wait for a message that will not come
            procs.close(orderly)


# commands that several processes do not share, and why
SINGLE_PROCESS = {
    "rl": "RL through TRL is not shared out among processes here",
    "annotate": "one web server",
    "train-reward": "transformers' Trainer and the reward models' own loops are not shared out among processes here",
}


@click.group(cls=Group)
@click.version_option(package_name="illume-rm")
def cli() -> None:
    """illume-rm: align VLM rationales with human intent (ILLUME), with a learned reward model."""


def recipe_options(f):
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a recipe field, e.g. --set warmup.steps=50 (repeatable).")(f)
    f = click.option("--images", type=str, default=None, help="Image folder for NLX-GPT data (VQA-X, ...).")(f)
    f = click.option("--data-path", type=str, default=None, help="Dataset file or folder (VQA-X JSON, JSONL).")(f)
    f = click.option("--whole-file", is_flag=True, expose_value=False, is_eager=False,
                     callback=lambda ctx, _param, value: ctx.meta.__setitem__("whole_file", value),
                     help="A single --data-path file is the split asked for, whole (e.g. an official test "
                          "file as --split test), instead of being split 80/10/10 by example id.")(f)
    return f


def _overrides(overrides, data_path=None, images=None) -> list[str]:
    """--set overrides plus those that --data-path and --images stand for."""
    extra = list(overrides)
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get("whole_file"):
        extra.append("data.whole_file=true")
    if data_path:
        extra.append(f"data.path={json.dumps(data_path)}")
    if images:
        extra.append(f"data.images={json.dumps(images)}")
    return extra


def _recipe(path, overrides, data_path=None, images=None):
    from .config import load_recipe

    return load_recipe(path, _overrides(overrides, data_path, images)).check()


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
def base_vlm(recipe, path=None):
    from .checkpoints import base_vlm as open_base

    return open_base(recipe, path, log=lambda m: click.echo(m, err=True))


def warmup_checkpoint(recipe) -> Path:
    from .checkpoints import warmup_checkpoint as cached

    return cached(recipe, log=click.echo)


def reward_vlm(recipe, kind: str):
    from .checkpoints import reward_vlm as vlm_for

    return vlm_for(recipe, kind)


@cli.command()
@click.argument("recipe", required=False, type=str)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Also copy the checkpoint here (it is cached either way).")
@click.option("--upper-bound", is_flag=True,
              help="Also train the same LM on the recipe's question steps with each scene given as text "
                   "(as long again as the warm-up's question steps; stored with the checkpoint).")
@recipe_options
def warmup(recipe, out, upper_bound, data_path, images, overrides):
    """Teach the built-in VLM to see and answer (captions, grounding questions, answer-only; never
    explanations).

    RECIPE is a YAML file (default: the embedded defaults, i.e. recipes/shapes-warmup.yaml).
    Prints val answer accuracy before and after per question family, beside chance and the controls:
    with each image swapped for another scene's, grounding questions, and (--upper-bound) the scene as text.
    """
    import shutil

    from .train.warmup import format_controls

    r = _recipe(recipe, overrides, data_path, images)
    ckpt = warmup_checkpoint(r)
    if not (ckpt / "warmup.json").exists():  # a pretrained model, used as it is
        click.echo(f"nothing to warm up: {ckpt} is a pretrained model; `iterate` starts from it")
        return
    report = json.loads((ckpt / "warmup.json").read_text())
    from .checkpoints import add_controls

    report = add_controls(r, ckpt, report, upper_bound, log=click.echo)  # those it lacks; none when complete
    click.echo(f"\nval answer accuracy ({report['val_questions']} questions; "
               f"warm-up trained for {report['train_seconds'] / 60:.1f} min)")
    click.echo(format_controls(report))
    if out:
        shutil.copytree(ckpt, out, dirs_exist_ok=True)
        click.echo(f"checkpoint copied to {out}")
    click.echo(f"checkpoint: {ckpt}")


# -- the ILLUME stages -------------------------------------------------------------------
def _examples_by_id(recipe, splits=("train", "val", "test")):
    from .data import load_examples

    out = {}
    for split in splits:
        out.update({ex.id: ex for ex in load_examples(recipe.data, split)})
    return out


def _checkpoint(recipe, checkpoint) -> str:
    """The VLM folder a command reads: --checkpoint, or the recipe's warm-up (trained when missing);
    checked here, before any process is handed work."""
    from .vlm import require_checkpoint

    return str(require_checkpoint(checkpoint)) if checkpoint else str(warmup_checkpoint(recipe))


def _adapter(adapter) -> str | None:
    from .train.lora import require_adapter

    return str(require_adapter(adapter)) if adapter else None


def _read_candidates(path):
    from .records import Candidate, read_jsonl

    cands = read_jsonl(path, Candidate)
    if not cands:
        raise UserError(f"{path} holds no candidates")
    seen: dict[str, int] = {}
    for n, c in enumerate(cands, 1):
        if c.id in seen:
            raise UserError(f"{path}: candidates {seen[c.id]} and {n} share the id '{c.id}' (ids must be unique)")
        seen[c.id] = n
    return cands


model_options = [
    click.option("--checkpoint", type=str, default=None,
                 help="VLM folder (default: this recipe's warm-up checkpoint, trained when missing)."),
    click.option("--adapter", type=str, default=None, help="LoRA adapter folder to put on the VLM."),
]


def with_model(f):
    for opt in reversed(model_options):
        f = opt(f)
    return f


@cli.command()
@click.argument("recipe", required=False)
@click.option("--split", default="train", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="candidates.jsonl to write.")
@click.option("--evaluation", is_flag=True, help="The model's own answer, then one greedy rationale (as evaluate).")
@with_model
@recipe_options
def sample(recipe, split, out, evaluation, checkpoint, adapter, data_path, images, overrides):
    """Sample rationales: K per temperature per example, the gold answer in the prompt."""
    from .data import load_examples
    from .records import write_jsonl
    from . import tasks
    from .sampling import pick_examples

    r = _recipe(recipe, overrides, data_path, images)
    examples = load_examples(r.data, split)
    ckpt, adapter = _checkpoint(r, checkpoint), _adapter(adapter)
    if evaluation:
        n = r.sampling.eval_examples
        cands = tasks.explain(r, ckpt, adapter, examples if n is None else examples[:n])
    else:
        cands = tasks.sample(r, ckpt, adapter, pick_examples(examples, r.sampling.train_examples, r.seed), seed=r.seed)
    click.echo(f"wrote {write_jsonl(out, cands)} candidates to {out}")


@cli.command()
@click.argument("candidates", type=str)
@click.argument("recipe", required=False)
@click.option("--selector", "selector_name", default=None,
              help="critic, oracle, answer, human, reward (the reward loop's judge), reward:FOLDER or package.module:name.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="judgements.jsonl to write.")
@click.option("--run", "run_dir", default=None, type=click.Path(file_okay=False),
              help="Run folder where a judge keeps its state (people's page, seed judgements, reward models); "
                   "default: the folder of --out.")
@click.option("--iteration", type=click.IntRange(min=0), default=0, show_default=True,
              help="The iteration these candidates belong to (the reward loop seeds at 0, refreshes later).")
@recipe_options
def select(candidates, recipe, selector_name, out, run_dir, iteration, data_path, images, overrides):
    """Judge CANDIDATES (JSONL) with any judge; writes judgements. With the run folder and iteration of
    an `iterate` run, it gives the verdicts `iterate` gives there."""
    from .errors import Pending
    from .records import write_jsonl
    from .selectors import JudgeContext, make_judge

    extra = [f"selector.name={json.dumps(selector_name)}"] if selector_name else []
    r = _recipe(recipe, [*overrides, *extra], data_path, images)
    cands = _read_candidates(candidates)
    judge = make_judge(r.selector, seed=r.seed)
    run = Path(run_dir) if run_dir else Path(out).resolve().parent
    if run.exists() and not run.is_dir():
        raise UserError(f"--run {run} is a file, not a folder")
    ctx = JudgeContext(run, iteration, r, load_vlm=lambda: base_vlm(r, str(warmup_checkpoint(r))),
                       command=f"illume-rm select {candidates} ...")
    verdicts = judge.judge(_examples_by_id(r), cands, ctx)
    if verdicts.pending:
        raise Pending(verdicts.pending)
    write_jsonl(out, verdicts.judgements)
    accepted = sum(j.accepted for j in verdicts.judgements)
    threshold = "" if verdicts.threshold is None else f" (threshold {verdicts.threshold:.3f})"
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(verdicts.by_kind.items()))
    click.echo(f"{judge.name}: accepted {accepted} of {len(verdicts.judgements)}{threshold}; by kind: {kinds}; "
               f"human judgements {verdicts.people}; wrote {out}")
    if verdicts.written:
        written = Path(out).with_name(Path(out).stem + "-written.jsonl")
        write_jsonl(written, verdicts.written)
        click.echo(f"{len(verdicts.written)} rationales people wrote themselves (accepted): {written}")


@cli.command()
@click.argument("recipe", required=False)
@click.option("--accepted", type=str, default=None, help="Accepted candidates (a run's train.jsonl) for mode illume.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Adapter folder to write.")
@click.option("--checkpoint", type=str, default=None, help="VLM folder (default: the recipe's warm-up checkpoint).")
@recipe_options
def finetune(recipe, accepted, out, checkpoint, data_path, images, overrides):
    """LoRA fine-tuning: ILLUME (accepted rationales + answer-only), gt-sft, or the answer-only control."""
    from .data import load_examples
    r = _recipe(recipe, overrides, data_path, images)
    cands = _read_candidates(accepted) if accepted else []
    if r.finetune.mode == "illume" and not cands:
        raise UserError("mode illume needs --accepted FILE (accepted candidates); or set finetune.mode")
    from . import tasks

    tasks.finetune(r, _checkpoint(r, checkpoint), load_examples(r.data, "train"), cands, seed=r.seed, out=out)
    click.echo(f"adapter saved to {out}")


@cli.command()
@click.argument("recipe", required=False)
@click.option("--adapter", required=True, type=str, help="The SFT adapter RL starts from (and stays near: KL).")
@click.option("--reward", "reward_dir", required=True, type=str,
              help="Reward-model folder (from train-reward, or a reward loop's reward-model/).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write: adapter/ (the best held-out evaluation's), rl.json, rl.png.")
@click.option("--algorithm", type=click.Choice(["grpo", "rloo"]), default=None,  # = train.rl.RL_ALGORITHMS
              help="Default: the recipe's rl.algorithm, or grpo where it is none.")
@click.option("--checkpoint", type=str, default=None, help="VLM folder (default: the recipe's warm-up checkpoint).")
@recipe_options
def rl(recipe, adapter, reward_dir, out, algorithm, checkpoint, data_path, images, overrides):
    """RL from an SFT adapter against a reward model (TRL's GRPO or RLOO), measured on held-out val.

    Every rl.eval_every steps: the reward model's score, the oracle's grounded rate (the gold judge),
    answer accuracy and KL to the start; stops early when the gold judge stops improving. Resumes
    from TRL's last checkpoint when rerun with the same --out.
    """
    from .data import load_examples
    from .train.rl import heldout_val, run_rl

    extra = [f"rl.reward_model={json.dumps(reward_dir)}"]
    if algorithm:
        extra.append(f"rl.algorithm={algorithm}")
    r = _recipe(recipe, [*overrides, *extra], data_path, images)
    if r.rl.algorithm == "none":
        r.rl.algorithm = "grpo"
    warm = Path(checkpoint) if checkpoint else warmup_checkpoint(r)
    from .tasks import open_model

    vlm = open_model(r, str(warm))
    val = load_examples(r.data, "val")
    report = run_rl(vlm, Path(adapter), Path(reward_dir), load_examples(r.data, "train"),
                    heldout_val(val, r.sampling.eval_examples, r.rl.eval_examples), r.rl, Path(out), r.sampling,
                    seed=r.seed, log=click.echo, data_key=r.hash("data"), warm_up=warm)
    click.echo(f"\n{report['algorithm']} on {r.rl.eval_examples} held-out val questions ({report['stopped']}):")
    click.echo("| step | reward model | gold grounded | answer accuracy | KL | rationale words |")
    click.echo("|---|---|---|---|---|---|")
    for e in report["evaluations"]:
        gold = "n/a" if e["gold"] is None else f"{e['gold']:.3f}"
        click.echo(f"| {e['step']} | {e['reward']:.3f} | {gold} | {e['accuracy']:.3f} | {e['kl']:.3f} | {e['length']:.1f} |")
    click.echo(f"adapter (step {report['best_step']}) saved to {Path(out) / 'adapter'}; plot {Path(out) / 'rl.png'}")


@cli.command()
@click.argument("recipe", required=False)
@click.option("--split", default="val", show_default=True)
@click.option("--candidates", "cands_path", type=str, default=None,
              help="Score these candidates (from sample --evaluation) instead of generating.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="metrics.json to write.")
@with_model
@recipe_options
def evaluate(recipe, split, cands_path, out, checkpoint, adapter, data_path, images, overrides):
    """Answer accuracy, BLEU-4 / METEOR / ROUGE-L / CIDEr (unfiltered and filtered) and the grounded rate."""
    from .data import load_examples
    from .evaluate.runner import evaluate_candidates, metrics_table
    from .records import write_json

    r = _recipe(recipe, overrides, data_path, images)
    examples = load_examples(r.data, split)
    n = r.sampling.eval_examples
    examples = examples if n is None else examples[:n]
    if cands_path:
        cands = _read_candidates(cands_path)
    else:
        from . import tasks

        cands = tasks.explain(r, _checkpoint(r, checkpoint), _adapter(adapter), examples)
    metrics = evaluate_candidates(examples, cands, r.use_coco(), r.evaluation.protocol)
    for note in metrics["notes"]:
        click.echo(f"warning: {note}", err=True)
    click.echo(metrics_table([(cands_path or adapter or checkpoint or "warm-up", metrics)]))
    if out:
        write_json(out, metrics)
        click.echo(f"wrote {out}")


@cli.command()
@click.argument("recipe", required=False)
@click.option("--run", "run_dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (default: runs/<recipe name>).")
@click.option("--selector", "selector_name", default=None,
              help="Who selects (the recipe's selector.name): critic, oracle, human (people in `annotate`), "
                   "reward (a reward model trained on seed judgements), reward:FOLDER, or package.module:name.")
@recipe_options
def iterate(recipe, run_dir, selector_name, data_path, images, overrides):
    """The ILLUME loop: sample, select, fine-tune, evaluate; resumable; writes report.md and curves.png.

    With --selector human (or reward with human seeds) it stops when people's judgements are needed,
    says how many and how to give them (`illume-rm annotate`), and continues when rerun.
    """
    from .loop import Run

    extra = [f"selector.name={json.dumps(selector_name)}"] if selector_name else []
    r = _recipe(recipe, [*overrides, *extra], data_path, images)
    folder = Path(run_dir or Path("runs") / r.name)
    run = Run(r, folder, warmup_checkpoint(r))
    run.run()
    click.echo((folder / "report.md").read_text())
    click.echo(f"report: {folder / 'report.md'}  plot: {folder / 'curves.png'}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but the loopback needs a token (printed at start).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", default=None, help="The token to require (default: generated when --host is not loopback).")
@click.option("--reward", "reward_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Reward model folder: its scores are shown as pre-ticked suggestions (people can hide them).")
@click.option("--hide-suggestions", is_flag=True, help="Never send the reward model's scores to the page.")
@click.option("--candidates", "cands_path", default=None,
              help="Add these candidates (JSONL) as a batch named after the file, then serve.")
@click.option("--recipe", "recipe_path", default=None,
              help="With --candidates: the recipe whose data they are about (default: RUN_DIR/recipe.yaml).")
@click.option("--judges", default=1, show_default=True, type=click.IntRange(1, 50),
              help="With --candidates: people per question.")
@click.option("--status", is_flag=True, help="Print progress and agreement, then exit.")
@click.option("--export", "export_dir", default=None, type=click.Path(file_okay=False),
              help="Write judgements.jsonl and candidates.jsonl (with people's own rationales) there, then exit.")
def annotate(run_dir, host, port, token, reward_dir, hide_suggestions, cands_path, recipe_path, judges, status,
             export_dir):
    """Serve the annotation page for RUN_DIR's pending questions (people pick acceptable rationales).

    Tasks come from `iterate --selector human` (or reward with human seeds), or from --candidates.
    Judgements are stored in RUN_DIR/annotations.sqlite as they are submitted.
    """
    from .annotate.server import serve
    from .annotate.store import Store

    run = Path(run_dir)
    if not run.is_dir() and not cands_path:
        raise UserError(f"run folder {run} does not exist")
    if cands_path:
        from .config import load_recipe

        recipe_file = recipe_path or run / "recipe.yaml"
        if not Path(recipe_file).exists():
            raise UserError(f"--candidates needs the data they are about: {recipe_file} does not exist (give --recipe)")
        r = load_recipe(str(recipe_file))
        cands = _read_candidates(cands_path)
        n = Store.of_run(run).add_batch(Path(cands_path).stem, _examples_by_id(r), cands, k=judges)
        click.echo(f"batch {Path(cands_path).stem}: {n} questions")
    store = Store.of_run(run, must_exist=True)
    if reward_dir and not hide_suggestions:
        from .checkpoints import suggest

        suggest(store, run, Path(reward_dir), log=click.echo)
    if status or export_dir:
        _annotation_status(store)
        if export_dir:
            _export_annotations(store, Path(export_dir))
        return
    if not any(p.pending for p in store.progress()):
        click.echo("nothing is pending: every question has its judgements (see --status, --export)")
    serve(store, host, port, token, show_suggestions=not hide_suggestions, log=click.echo)


def _annotation_status(store) -> None:
    from .evaluate.report import people_table

    click.echo(people_table(store.path.parent))


def _export_annotations(store, out: Path) -> None:
    from .records import write_jsonl

    judgements, cands = [], []
    for batch in store.batches():
        shown = store.candidates(batch)
        j, written = store.judgements(batch, shown)
        judgements += j
        cands += shown + written
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "candidates.jsonl", cands)
    write_jsonl(out / "judgements.jsonl", judgements)
    click.echo(f"wrote {len(judgements)} judgements of {len(cands)} candidates to {out}/judgements.jsonl and "
               f"{out}/candidates.jsonl (for `illume-rm train-reward --candidates ... --judgements ...`)")


@cli.command("train-reward")
@click.argument("recipe", required=False)
@click.option("--candidates", "cands_path", required=True, help="candidates.jsonl the judgements are about.")
@click.option("--judgements", "judg_path", required=True, help="judgements.jsonl (people, critic or oracle).")
@click.option("--kind", type=click.Choice(["cross-encoder", "image-aware", "pairwise", "scene-text", "vlm-likelihood"]),
              default=None,
              help="Default: the recipe's selector.reward.kind (cross-encoder).")
@click.option("--limit", type=int, default=None,
              help="Train on this many judgements (a random sample); the rest are scored as unseen candidates.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Reward-model folder to write.")
@recipe_options
def train_reward_cmd(recipe, cands_path, judg_path, kind, limit, out, data_path, images, overrides):
    """Train a rationale reward model on judgements; prints held-out agreement and the threshold."""
    import random

    from .records import Judgement, read_jsonl
    from .reward import labelled_rows, seed_agreement, train_reward

    extra = [f"selector.reward.kind={kind}"] if kind else []
    r = _recipe(recipe, [*overrides, *extra], data_path, images)
    judgements = read_jsonl(judg_path, Judgement)
    if not judgements:
        raise UserError(f"{judg_path} holds no judgements")
    rest = []
    if limit is not None and limit < len(judgements):
        picked = set(random.Random(r.seed).sample(range(len(judgements)), limit))
        rest = [j for k, j in enumerate(judgements) if k not in picked]
        judgements = [j for k, j in enumerate(judgements) if k in picked]
    examples, cands = _examples_by_id(r), _read_candidates(cands_path)
    rows = labelled_rows(examples, cands, judgements)
    vlm = reward_vlm(r, r.selector.reward.kind)
    report = train_reward(rows, r.selector.reward, out, vlm=vlm,
                          origin={"data": r.hash("data"), "data_name": r.data.name})
    how, held = seed_agreement(report)
    if held:
        folds = f"{r.selector.reward.threshold_folds} folds, " if how == "out-of-fold" else ""
        click.echo(f"\n{how} agreement ({folds}{held['n']} judgements, {held['positives']} accepted), "
                   f"threshold {report['threshold']:.3f} (target precision {r.selector.reward.target_precision}):")
        click.echo(_agreement_table(held))
    if rest:  # the judgements left out by --limit: candidates the model never saw
        from .records import write_json
        from .reward import load_reward, score_unseen

        report.update(score_unseen(load_reward(out, vlm=vlm), examples, labelled_rows(examples, cands, rest)))
        write_json(Path(out) / "reward.json", report)
        m = report["rest"]
        click.echo(f"\nthe {m['n']} judgements left out by --limit ({m['positives']} accepted):")
        click.echo(_agreement_table(m))
    click.echo(f"reward model saved to {out} (use it with --set selector.name=reward:{out})")


def _agreement_table(m: dict) -> str:
    return ("| accuracy | ROC-AUC | F1 | Cohen's kappa | precision | recall |\n|---|---|---|---|---|---|\n"
            f"| {m['accuracy']:.3f} | {m['roc_auc']:.3f} | {m['f1']:.3f} | {m['kappa']:.3f} | "
            f"{m['precision']:.3f} | {m['recall']:.3f} |")


@cli.command()
@click.argument("runs", nargs=-1)
@click.option("--recipe", "recipe_path", default=None,
              help="Run (or resume) each of this recipe's variants into runs/<name>-<variant> first.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for compare.md and compare.png (default: print only; with --recipe: runs/<name>).")
@recipe_options
def compare(runs, recipe_path, out, data_path, images, overrides):
    """Runs side by side: final val metrics, human judgements spent, reward-model agreement; a plot."""
    from .evaluate.report import compare_runs

    runs = list(runs)
    if recipe_path:
        from .config import variant_recipes
        from .loop import Run

        extra = _overrides(overrides, data_path, images)
        for name, r in variant_recipes(recipe_path, extra):
            click.echo(f"== variant {name}: runs/{r.name}")
            Run(r, Path("runs") / r.name, warmup_checkpoint(r)).run()
            runs.append(str(Path("runs") / r.name))
        out = out or str(Path("runs") / _recipe(recipe_path, extra).name)
    if not runs:
        raise UserError("name run folders to compare, or --recipe with variants")
    for r in runs:
        if not Path(r).is_dir():
            raise UserError(f"run folder {r} does not exist")
    click.echo(compare_runs([Path(r) for r in runs], Path(out) if out else None))
    if out:
        click.echo(f"wrote {Path(out) / 'compare.md'} and {Path(out) / 'compare.png'}")


@cli.command()
@click.argument("recipe")
@click.option("--only", multiple=True, help="Run only the cells whose names match this pattern (fnmatch; "
              "repeatable), e.g. --only 'oracle-*' --only '*-s0'. The report covers every complete cell.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder of the cells, sweep.md and sweep.png (default: runs/<recipe name>).")
@click.option("--report-only", is_flag=True, help="Write the report from the complete cells; run nothing.")
@click.option("--list", "list_cells", is_flag=True, help="List the cells (and whether each is complete); run nothing.")
@recipe_options
def sweep(recipe, only, out, report_only, list_cells, data_path, images, overrides):
    """Human against reward feedback over a grid of seeds, budgets and judges (the recipe's `sweep:`
    section): each cell a run folder; means with 95% intervals over seeds, paired bootstrap
    differences, and the budget curves (sweep.md, sweep.png)."""
    from . import sweep as sw

    extra = _overrides(overrides, data_path, images)
    r = _recipe(recipe, overrides, data_path, images)
    if r.sweep.empty():
        raise UserError(f"{recipe} has no sweep to run (add a 'sweep:' section)")
    r.sweep.check()
    folder = Path(out) if out else Path("runs") / r.name
    if list_cells:
        for c in sw.pick(sw.cells(r.sweep), only):
            why = sw.failure(folder / c.name)
            done = ("complete" if (folder / c.name / "loop.json").exists()
                    else f"failed: {why}" if why else "to run")
            click.echo(f"{c.name}\t{done}")
        return
    if not report_only:
        sw.run_sweep(recipe, extra, folder, only, log=click.echo)
    click.echo(sw.report(recipe, extra, folder, log=click.echo))
    click.echo(f"wrote {folder / 'sweep.md'} and {folder / 'sweep.png'}")


main = cli

if __name__ == "__main__":  # pragma: no cover
    cli()
