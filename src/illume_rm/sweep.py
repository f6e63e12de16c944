"""`illume-rm sweep RECIPE`: human against reward feedback as a budget curve, over seeds.

A recipe's ``sweep:`` section declares a grid; each cell is an ordinary run folder under
``runs/<name>/<cell>``:

- ``judges`` (e.g. oracle, critic, a plugin): the loop with that simulated person judging everything,
  at every seed: the full human budget. ``gold`` (one of them) is the reference the reward loops are
  measured against, and the judge of their seeds.
- ``budgets`` x ``reward_kinds``: the reward loop whose seed judgements are that fraction of what the
  gold loop of the same seed spent (its human judgements), judged by ``gold``.
- ``references``: fine-tuning modes run once per seed (``answer-only``, ``gt-sft``); ``gt_fractions``:
  GT-SFT at these fractions of the written explanations.

Cells vary the loop's seed (sampling, fine-tuning), not the warm-up: all share the base recipe's
warm-up checkpoint and its base evaluation (computed once, copied). The sweep resumes like a run,
and ``--only PATTERN`` runs some cells, so a sweep can be spread over machines. ``sweep.md`` and
``sweep.png`` come from whatever cells are complete.
"""
from __future__ import annotations

import fnmatch
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import UserError
from .records import Candidate, copy_tree_atomic, read_jsonl, write_json

Log = Callable[[str], None]


@dataclass
class SweepConfig:
    seeds: list[int] = field(default_factory=lambda: [0])
    judges: list[str] = field(default_factory=list)   # loops judged wholly by a simulated person (oracle, critic)
    gold: str = "oracle"                    # the reference loop, and the judge of the reward loops' seeds
    budgets: list[float] = field(default_factory=list)  # reward seeds as fractions of the gold loop's judgements
    reward_kinds: list[str] = field(default_factory=lambda: ["cross-encoder"])
    references: list[str] = field(default_factory=list)  # fine-tuning modes once per seed: answer-only, gt-sft
    gt_fractions: list[float] = field(default_factory=list)  # gt-sft at these fractions of the explanations
    # RL after SFT (rl.algorithm) at these budgets: the reward loop of the same budget and seed, then RL
    # against its reward model; its SFT stage is the SFT cell's (copied, not recomputed)
    rl: list[str] = field(default_factory=list)          # grpo, rloo
    rl_budgets: list[float] = field(default_factory=list)  # which of `budgets` (none given: all)

    def empty(self) -> bool:
        return not (self.judges or self.budgets or self.references or self.gt_fractions)

    def check(self) -> None:
        from .config import _check_judge
        from .reward import KINDS
        from .train.finetune import MODES

        for i, j in enumerate(self.judges):
            if j in ("human", "reward"):
                raise UserError(f"sweep.judges[{i}]: '{j}' is not a simulated person (use critic, oracle or a plugin)")
            _check_judge(f"sweep.judges[{i}]", j, people=False)
        if not self.seeds:
            raise UserError("sweep.seeds: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"sweep.seeds: a seed appears twice ({self.seeds})")
        for b in self.budgets:
            if not 0 < b < 1:
                raise UserError(f"sweep.budgets: {b} is not a fraction between 0 and 1 (1 is the gold loop itself, "
                                "which runs anyway)")
        if self.budgets and self.gold not in self.judges:
            raise UserError(f"sweep.gold: '{self.gold}' must be one of sweep.judges ({', '.join(self.judges)}): "
                            "the budgets are fractions of what its loop spends")
        for k in self.reward_kinds:
            if k not in KINDS:
                raise UserError(f"sweep.reward_kinds: unknown value '{k}' (choose one of {', '.join(KINDS)})")
        for m in self.references:
            if m not in MODES or m == "illume":
                raise UserError(f"sweep.references: unknown value '{m}' (choose answer-only or gt-sft)")
        for f in self.gt_fractions:
            if not 0 < f <= 1:
                raise UserError(f"sweep.gt_fractions: {f} is not a fraction in (0, 1]")
        from .train.rl import RL_ALGORITHMS

        for a in self.rl:
            if a not in RL_ALGORITHMS:
                raise UserError(f"sweep.rl: unknown value '{a}' (choose {' or '.join(RL_ALGORITHMS)})")
        if self.rl and not self.budgets:
            raise UserError("sweep.rl: RL runs against the reward loops' models; give sweep.budgets")
        for b in self.rl_budgets:
            if b not in self.budgets:
                raise UserError(f"sweep.rl_budgets: {b} is not one of sweep.budgets ({self.budgets})")


@dataclass
class Cell:
    name: str          # e.g. reward-cross-encoder-b0.05-s1
    group: str         # the name without the seed
    seed: int
    overrides: list[str]
    budget: float | None = None   # reward cells: the fraction of the gold loop's judgements
    kind: str = "loop"            # loop (a judge), reward, reference
    sft_of: str | None = None     # RL cells: the SFT cell whose iteration-0 stages they share


def _num(x: float) -> str:
    return f"{x:g}"


def cells(cfg: SweepConfig) -> list[Cell]:
    out = []
    for s in cfg.seeds:
        for j in cfg.judges:
            group = j.replace(":", "_")
            out.append(Cell(f"{group}-s{s}", group, s, [f"seed={s}", f"selector.name={json.dumps(j)}"]))
        for kind in cfg.reward_kinds if cfg.budgets else []:
            for b in cfg.budgets:
                group = f"reward-{kind}-b{_num(b)}"
                out.append(Cell(f"{group}-s{s}", group, s, [
                    f"seed={s}", "selector.name=reward", f"selector.seed_selector={json.dumps(cfg.gold)}",
                    f"selector.reward.kind={kind}"], budget=b, kind="reward"))
                for algo in cfg.rl if (not cfg.rl_budgets or b in cfg.rl_budgets) else []:
                    out.append(Cell(f"{group}-{algo}-s{s}", f"{group}-{algo}", s, [*out[-1].overrides,
                                    f"rl.algorithm={algo}"], budget=b, kind="reward", sft_of=f"{group}-s{s}"))
        for m in cfg.references:
            out.append(Cell(f"{m}-s{s}", m, s, [f"seed={s}", f"finetune.mode={m}"], kind="reference"))
        for f in cfg.gt_fractions:
            group = f"gt-sft-f{_num(f)}"
            out.append(Cell(f"{group}-s{s}", group, s, [f"seed={s}", "finetune.mode=gt-sft",
                                                          f"finetune.gt_fraction={f}"], kind="reference"))
    return out


def pick(all_cells: list[Cell], only: tuple[str, ...]) -> list[Cell]:
    if not only:
        return all_cells
    chosen = [c for c in all_cells if any(fnmatch.fnmatchcase(c.name, p) for p in only)]
    if not chosen:
        raise UserError(f"--only {' '.join(only)}: no cell matches (cells: {', '.join(c.name for c in all_cells)})")
    return chosen


def _rl_base(group: str) -> str | None:
    """An RL group's SFT group (reward-KIND-bB-grpo -> reward-KIND-bB), else None."""
    from .train.rl import RL_ALGORITHMS

    for algo in RL_ALGORITHMS:
        if group.startswith("reward-") and group.endswith(f"-{algo}"):
            return group[: -len(algo) - 1]
    return None


def _gold(cfg: SweepConfig, seed: int) -> str:
    return f"{cfg.gold.replace(':', '_')}-s{seed}"


def human_spent(run_dir: Path) -> int:
    from .evaluate.report import run_summary

    return run_summary(run_dir)["human_judgements"]


def run_sweep(recipe_path: str, overrides: list[str], out: Path, only: tuple[str, ...] = (),
              log: Log = print) -> list[Cell]:
    """Run (or resume) the sweep's cells; returns the cells asked for."""
    from .checkpoints import warmup_checkpoint
    from .config import load_recipe
    from .loop import Run

    base = load_recipe(recipe_path, overrides).check()
    cfg = base.sweep
    if cfg.empty():
        raise UserError(f"{recipe_path} has no sweep to run (add a 'sweep:' section)")
    cfg.check()
    grid = cells(cfg)
    todo = pick(grid, only)
    recipes = {}
    for c in todo:  # every cell's recipe resolved and checked before any runs
        recipes[c.name] = load_recipe(recipe_path, [*overrides, *c.overrides, "sweep={}", "variants={}"]).check()
    # cells of budgets need their seed's gold loop first: complete, or among the cells to run
    order = sorted(todo, key=lambda c: (c.kind == "reward", c.sft_of is not None))
    names = {c.name for c in todo}
    for c in order:
        gold = _gold(cfg, c.seed)
        if c.kind == "reward" and gold not in names and not (out / gold / "loop.json").exists():
            raise UserError(f"cell {c.name} needs the gold loop of seed {c.seed} ({gold}) first: "
                            f"run it (--only {gold}) or drop --only")
    warm = warmup_checkpoint(base, log=log)
    out.mkdir(parents=True, exist_ok=True)
    for k, c in enumerate(order):
        r = recipes[c.name]
        folder = out / c.name
        if c.kind == "reward":
            n = max(2, round(c.budget * human_spent(out / _gold(cfg, c.seed))))
            r.selector.seed_judgements = n
        r.name = f"{base.name}-{c.name}"
        log(f"== cell {k + 1}/{len(order)}: {c.name}" + (f" ({r.selector.seed_judgements} seed judgements)"
                                                         if c.kind == "reward" else ""))
        run = Run(r, folder, warm, log=log)
        run.prepare()
        (folder / FAILED).unlink(missing_ok=True)  # a cell that failed before is tried again
        _share_base(out, folder)
        _share_first_samples(out, folder)
        if c.sft_of:
            _share_sft(out / c.sft_of, folder)
        try:
            run.run()
        except UserError as exc:  # what this cell's data gives (e.g. a seed of one class), not bad input:
            log(f"cell {c.name} failed: {exc}")  # the other cells still run, and the report names it
            write_json(folder / FAILED, {"reason": str(exc)})
    return todo


FAILED = "failed.json"


def failure(folder: Path) -> str | None:
    """Why a cell failed in its last attempt, or None."""
    f = folder / FAILED
    return json.loads(f.read_text())["reason"] if f.exists() else None


def _share_base(out: Path, folder: Path) -> None:
    """The base evaluation (the warm-up model on val) is the same for every cell of one warm-up: copy one
    already made (from a cell that started from the same warm-up checkpoint)."""
    if (folder / "base" / "metrics.json").exists():
        return
    mine = (folder / "warm-up.txt").read_text()
    for other in sorted(out.glob("*/base/metrics.json")):
        src = other.parent
        if src.parent == folder or (src.parent / "warm-up.txt").read_text() != mine:
            continue
        copy_tree_atomic(src, folder / "base")
        return


SFT_STAGE = ("candidates.jsonl", "seed_judgements.jsonl", "refresh_judgements.jsonl", "judgements.jsonl",
             "counts.json", "written.jsonl", "train.jsonl", "selection.json")


def _share_sft(src: Path, folder: Path) -> None:
    """An RL cell's iteration 0 up to its SFT adapter is its SFT cell's (same recipe but rl, same seed):
    copy the samples, the verdicts, the reward model and the adapter (as sft-adapter) when that cell
    has them, so the pair differs only by the RL stage."""
    from .records import atomic_write_text

    mine, theirs = folder / "iter-000", src / "iter-000"
    if (mine / "sft-adapter").exists() or not (theirs / "adapter" / "adapter_config.json").exists():
        return
    if (folder / "warm-up.txt").read_text() != (src / "warm-up.txt").read_text():
        return
    mine.mkdir(parents=True, exist_ok=True)
    for name in SFT_STAGE:
        if (theirs / name).exists() and not (mine / name).exists():
            atomic_write_text(mine / name, (theirs / name).read_text(encoding="utf-8"))
    if (src / "reward-model").is_dir() and not (folder / "reward-model").exists():
        copy_tree_atomic(src / "reward-model", folder / "reward-model")
    copy_tree_atomic(theirs / "adapter", mine / "sft-adapter")


def _sampling_key(folder: Path) -> str | None:
    """What iteration 0's samples depend on: the warm-up checkpoint and the recipe's seed, data, model
    and sampling sections."""
    from .config import load_recipe

    if not (folder / "recipe.yaml").exists() or not (folder / "warm-up.txt").exists():
        return None
    r = load_recipe(str(folder / "recipe.yaml")).to_dict()
    return json.dumps([(folder / "warm-up.txt").read_text(), r["seed"], r["data"], r["model"], r["sampling"],
                       r["finetune"]["mode"] == "illume"], sort_keys=True)


def _share_first_samples(out: Path, folder: Path) -> None:
    """Iteration 0 samples from the warm-up model with the loop's seed: the same candidates for every
    cell of one seed. Copy them from a cell that has them (the judges differ; the samples do not)."""
    target = folder / "iter-000" / "candidates.jsonl"
    mine = _sampling_key(folder)
    if target.exists() or mine is None:
        return
    for other in sorted(out.glob("*/iter-000/candidates.jsonl")):
        cell = other.parent.parent
        if cell == folder or _sampling_key(cell) != mine:
            continue
        from .records import atomic_write_text

        atomic_write_text(target, other.read_text(encoding="utf-8"))
        return


# -- the report ----------------------------------------------------------------------------
def _final(run_dir: Path) -> tuple[str, Path] | None:
    """The last evaluated stage of a run: (label, its folder)."""
    stages = [d for d in sorted(run_dir.glob("iter-*")) if (d / "metrics.json").exists()]
    if not stages:
        return None
    return stages[-1].name, stages[-1]


def per_question(folder: Path, examples: dict) -> dict[str, dict[str, float]]:
    """Per val question of a stage: grounded (0/1, the oracle's verdict where scenes exist) and answer score."""
    from .evaluate.accuracy import answer_score
    from .evaluate.runner import grounded

    out = {}
    for c in read_jsonl(folder / "val_candidates.jsonl", Candidate):
        ex = examples.get(c.example_id)
        if ex is None:
            continue
        row = {"accuracy": answer_score(c.answer, ex.answers)}
        if "scene" in ex.meta:
            row["grounded"] = float(grounded(ex, c.rationale, c.answer))
        out[c.example_id] = row
    return out


def _reward_agreement(run_dir: Path, examples: dict, gold: str) -> dict | None:
    """The reward model's verdicts on iteration 0's unseen candidates against the gold judge's."""
    from .records import Judgement
    from .reward import agreement
    from .selectors import make_scorer

    d = run_dir / "iter-000"
    if not (d / "judgements.jsonl").exists():
        return None
    seed = {j.candidate_id for j in read_jsonl(d / "seed_judgements.jsonl", Judgement)} if (
        d / "seed_judgements.jsonl").exists() else set()
    machine = [j for j in read_jsonl(d / "judgements.jsonl", Judgement) if j.candidate_id not in seed]
    if not machine:
        return None
    by_id = {c.id: c for c in read_jsonl(d / "candidates.jsonl", Candidate)}
    cands = [by_id[j.candidate_id] for j in machine]
    labels = [s >= 0.5 for s in make_scorer(gold).score(examples, cands)]
    model = json.loads((run_dir / "reward-model" / "reward.json").read_text())
    return agreement(labels, [j.score for j in machine], model["threshold"])


def report(recipe_path: str, overrides: list[str], out: Path, log: Log = print) -> str:
    """sweep.md and sweep.png from the complete cells."""
    from .config import load_recipe
    from .data import load_examples
    from .evaluate.report import run_summary
    from .evaluate.stats import mean_ci, paired_bootstrap, verdict
    from .records import atomic_write_text
    from .train.finetune import gt_count

    base = load_recipe(recipe_path, overrides)
    cfg = base.sweep
    examples = {ex.id: ex for ex in load_examples(base.data, "val")}
    train: dict | None = None
    written: list | None = None
    done: dict[str, list[tuple[Cell, dict, dict]]] = {}
    for c in cells(cfg):
        folder = out / c.name
        final = _final(folder) if (folder / "loop.json").exists() else None
        if final is None:
            continue
        summary = run_summary(folder)
        m = summary["history"][-1][1]
        if c.group.startswith("gt-sft-f") and written is None:
            written = load_examples(base.data, "train")
        row = {"seed": c.seed, "human": summary["human_judgements"], "grounded": 100 * m.get("grounded_rate", float("nan")),
               "CIDEr": m["unfiltered"].get("CIDEr", float("nan")), "accuracy": 100 * m["answer_accuracy"],
               "questions": per_question(final[1], examples), "budget": c.budget}
        if c.group.startswith("gt-sft-f"):  # the written explanations it trained on (finetune.gt_items)
            row["written"] = gt_count(written, float(c.group[len("gt-sft-f"):]))
        if c.kind == "reward":
            if train is None:
                train = {ex.id: ex for ex in load_examples(base.data, "train")}
            row["agreement"] = _reward_agreement(folder, train, cfg.gold)
        done.setdefault(c.group, []).append((c, row, summary))
    failed = [(c.name, why) for c in cells(cfg) if (why := failure(out / c.name))]
    if not done:
        raise UserError(f"no cell of the sweep in {out} is complete yet (run `illume-rm sweep {recipe_path}`)")
    lines = [f"# Sweep {base.name}", "",
             f"Seeds {cfg.seeds}; val questions per run: {base.sampling.eval_examples or 'all'}; the last iteration "
             "of each run. Mean over seeds with its 95% interval (Student's t; a lone seed has none).", "",
             "| run | seeds | human judgements | grounded % | CIDEr | answer accuracy % |", "|---|---|---|---|---|---|"]

    def fmt(vals, digits: int = 1):
        vals = [v for v in vals if not math.isnan(v)]
        if not vals:
            return "n/a"  # e.g. grounded rate on data without scene graphs
        m, h = mean_ci(vals)
        return f"{m:.{digits}f}" if math.isnan(h) else f"{m:.{digits}f} ± {h:.{digits}f}"

    for group, rows in done.items():
        rs = [r for _, r, _ in rows]
        lines.append(f"| {group} | {len(rs)} | {fmt([r['human'] for r in rs])} | {fmt([r['grounded'] for r in rs])} | "
                     f"{fmt([r['CIDEr'] for r in rs])} | {fmt([r['accuracy'] for r in rs])} |")
    agree = [(g, rows) for g, rows in done.items() if g.startswith("reward-")]
    if agree:
        lines += ["", f"The reward model against the gold judge ({cfg.gold}) on iteration 0's candidates it did not "
                  "see (its verdicts at its fitted threshold):", "",
                  "| run | seed judgements | ROC-AUC | accuracy | Cohen's kappa |", "|---|---|---|---|---|"]
        for g, rows in agree:
            ag = [r["agreement"] for _, r, _ in rows if r.get("agreement")]
            seeds_n = [s["human_judgements"] for _, _, s in rows]
            if ag:
                lines.append(f"| {g} | {fmt(seeds_n)} | {fmt([a['roc_auc'] for a in ag], 3)} | "
                             f"{fmt([a['accuracy'] for a in ag], 3)} | {fmt([a['kappa'] for a in ag], 3)} |")
    gt = sorted((g for g in done if g.startswith("gt-sft-f")), key=lambda g: float(g[len("gt-sft-f"):]))
    if gt:
        gold_rows = [r for _, r, _ in done.get(cfg.gold.replace(":", "_"), [])]
        lines += ["", "GT-SFT at fractions of the written explanations (each question's explanation written by a "
                  "person), against the gold loop's human judgements (selections among sampled rationales):", "",
                  "| run | explanations written | grounded % | CIDEr | answer accuracy % |", "|---|---|---|---|---|"]
        if gold_rows:
            lines.append(f"| {cfg.gold} loop | 0 ({fmt([r['human'] for r in gold_rows])} judgements) | "
                         f"{fmt([r['grounded'] for r in gold_rows])} | {fmt([r['CIDEr'] for r in gold_rows])} | "
                         f"{fmt([r['accuracy'] for r in gold_rows])} |")
        for g in gt:
            rs = [r for _, r, _ in done[g]]
            lines.append(f"| {g} | {rs[0]['written']} | {fmt([r['grounded'] for r in rs])} | "
                         f"{fmt([r['CIDEr'] for r in rs])} | {fmt([r['accuracy'] for r in rs])} |")
    # paired differences, over (seed, question), against the gold loop and the controls
    gold_group = cfg.gold.replace(":", "_")
    pairs = [(g, gold_group) for g in done if g.startswith("reward-")]
    pairs += [(g, _rl_base(g)) for g in done if _rl_base(g)]  # RL after SFT against SFT alone, same budget
    pairs += [(g, "answer-only") for g in done if g.startswith("reward-") and "answer-only" in done]  # every reward loop against the control
    pairs += [(j.replace(":", "_"), ref) for j in cfg.judges for ref in ("answer-only", "gt-sft") if ref in done]
    pairs += [(gold_group, g) for g in done if g.startswith("gt-sft-f")]  # ILLUME against GT-SFT at each fraction
    diffs, wins_lines = [], []
    for a, b in pairs:
        if a not in done or b not in done:
            continue
        by_seed = {r["seed"]: r["questions"] for _, r, _ in done[b]}
        for metric in ("grounded", "accuracy"):
            xs, ys = [], []
            for _, r, _ in done[a]:
                other = by_seed.get(r["seed"])
                if other is None:
                    continue
                for q, v in r["questions"].items():
                    if q in other and metric in v and metric in other[q]:
                        xs.append(100 * v[metric])
                        ys.append(100 * other[q][metric])
            if xs:
                res = paired_bootstrap(xs, ys)
                diffs.append(f"| {a} - {b} | {metric} | {res['diff']:+.1f} | [{res['low']:+.1f}, {res['high']:+.1f}] | "
                             f"{res['p']:.3f} | {res['n']} | {verdict(res)} |")
                if metric == "grounded":  # the oracle's preference, question by question
                    wins = sum(x > y for x, y in zip(xs, ys))
                    losses = sum(x < y for x, y in zip(xs, ys))
                    wins_lines.append(f"| {a} vs {b} | {wins} | {losses} | {len(xs) - wins - losses} | "
                                      f"{100 * (wins + 0.5 * (len(xs) - wins - losses)) / len(xs):.1f} |")
    if diffs:
        lines += ["", "Differences, paired by seed and val question (bootstrap over the pairs, 2,000 resamples): "
                  "a gain or a loss only where the interval leaves out zero.", "",
                  "| difference | metric | mean (points) | 95% interval | p | pairs | verdict |", "|---|---|---|---|---|---|---|"]
        lines += diffs
    if wins_lines:
        lines += ["", "Win rate judged by the oracle: per (seed, val question), a win where only the first run's "
                  "rationale is grounded, a loss where only the second's is; win rate = (wins + ties / 2) / pairs.",
                  "", "| pair | wins | losses | ties | win rate % |", "|---|---|---|---|---|"]
        lines += wins_lines
    if failed:
        lines += ["", "Cells that failed (left out of every row above):", ""]
        lines += [f"- {name}: {reason}" for name, reason in failed]
    text = "\n".join(lines) + "\n\n![the sweep](sweep.png)\n"
    atomic_write_text(out / "sweep.md", text)
    plot(out / "sweep.png", done, gold_group)
    return text


def plot(path: Path, done: dict, gold_group: str) -> None:
    """Grounded rate, CIDEr and accuracy against human judgements spent (log x): one line per reward
    kind over its budgets, the gold loop and the references as horizontal lines, GT-SFT against the
    explanations it used; and the reward model's ROC-AUC against the gold judge by seed size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .evaluate.stats import mean_ci

    metrics = ("grounded", "CIDEr", "accuracy")
    fig, all_axes = plt.subplots(1, 4, figsize=(20, 4.2))
    axes, agree_ax = all_axes[:3], all_axes[3]
    kinds: dict[str, list[tuple[float, dict]]] = {}
    for group, rows in done.items():
        if group.startswith("reward-"):
            kind = re.sub(r"-b[0-9.]+(?:e-?[0-9]+)?(?=-|$)", "", group, count=1)  # reward-KIND[-ALGO]: one line each
            kinds.setdefault(kind, []).append((rows[0][1]["budget"], rows))
    from matplotlib.ticker import NullFormatter

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    others = [g for g in done if not g.startswith(("reward-", "gt-sft-f"))]
    gt = sorted((g for g in done if g.startswith("gt-sft-f")), key=lambda g: done[g][0][1]["written"])
    titles = {"grounded": "grounded rate (%)", "CIDEr": "CIDEr", "accuracy": "answer accuracy (%)"}
    for ax, metric in zip(axes, metrics):
        if all(math.isnan(r[metric]) for rows in done.values() for _, r, _ in rows):
            ax.set_title(titles[metric])  # e.g. the grounded rate of data without scene graphs
            ax.text(0.5, 0.5, "no values\n(the oracle needs scene graphs)" if metric == "grounded" else "no values",
                    ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        if gt:  # GT-SFT against the explanations people wrote for it (another kind of human effort)
            ms = [mean_ci([r[metric] for _, r, _ in done[g]]) for g in gt]
            ax.errorbar([done[g][0][1]["written"] for g in gt], [m for m, _ in ms],
                        yerr=[0 if math.isnan(h) else h for _, h in ms], marker="x", linestyle=":", capsize=3,
                        color="gray", label="GT-SFT (x: explanations written)")
        for n, (kind, points) in enumerate(sorted(kinds.items())):
            points.sort(key=lambda p: p[0])
            xs = [mean_ci([r["human"] for _, r, _ in rows])[0] for _, rows in points]
            ms = [mean_ci([r[metric] for _, r, _ in rows]) for _, rows in points]
            ax.errorbar(xs, [m for m, _ in ms], yerr=[0 if math.isnan(h) else h for _, h in ms], marker="o",
                        capsize=3, label=kind, color=colours[n % len(colours)])
        for n, group in enumerate(others):
            rows = done[group]
            m, h = mean_ci([r[metric] for _, r, _ in rows])
            colour = "black" if group == gold_group else colours[(len(kinds) + n) % len(colours)]
            ax.axhline(m, linestyle="-" if group == gold_group else "--", linewidth=1, color=colour,
                       label=f"{group} ({mean_ci([r['human'] for _, r, _ in rows])[0]:.0f} human judgements)")
            if not math.isnan(h):
                ax.axhspan(m - h, m + h, color=colour, alpha=0.08)
            gold_x = mean_ci([r["human"] for _, r, _ in rows])[0]
            if group == gold_group and gold_x > 0:
                ax.errorbar([gold_x], [m], yerr=[0 if math.isnan(h) else h], marker="s", color="black", capsize=3)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("human judgements spent (GT-SFT: explanations written)" if gt else "human judgements spent")
        ax.set_title(titles[metric])
    next((ax for ax in axes if ax.lines), axes[0]).legend(fontsize=7)
    # the reward model's agreement with the gold judge on the candidates it did not see, by seed size
    for n, (kind, points) in enumerate(sorted(kinds.items())):
        if kind.endswith(("-grpo", "-rloo")):
            continue  # the same reward models as their SFT cells'
        xs, ys, hs = [], [], []
        for _, rows in sorted(points, key=lambda p: p[0]):
            aucs = [r["agreement"]["roc_auc"] for _, r, _ in rows if r.get("agreement")]
            if aucs:
                m, h = mean_ci(aucs)
                xs.append(mean_ci([r["human"] for _, r, _ in rows])[0])
                ys.append(m)
                hs.append(0 if math.isnan(h) else h)
        if xs:
            agree_ax.errorbar(xs, ys, yerr=hs, marker="o", capsize=3, label=kind, color=colours[n % len(colours)])
    agree_ax.axhline(0.5, linestyle=":", color="gray", linewidth=1)
    if len(agree_ax.lines) > 1:  # more than the chance line
        agree_ax.set_xscale("log")
        agree_ax.xaxis.set_minor_formatter(NullFormatter())
    agree_ax.set_xlabel("seed judgements (the reward model's training set)")
    agree_ax.set_title("reward model vs gold: ROC-AUC, unseen candidates")
    if len(agree_ax.lines) > 1:  # a labelled line besides the chance line
        agree_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
