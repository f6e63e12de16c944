"""report.md (a table per iteration) and curves.png for a run folder."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..records import atomic_write_text
from .runner import metrics_table


def selection_table(run_dir: Path) -> str:
    rows = ["| iteration | sampled | accepted | threshold | new | in train | judgements by kind |", "|---|---|---|---|---|---|---|"]
    found = False
    for d in sorted(run_dir.glob("iter-*")):
        f = d / "selection.json"
        if not f.exists():
            continue
        found = True
        s = json.loads(f.read_text())
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(s.get("judgements_by_kind", {}).items()))
        rows.append(f"| {d.name} | {s['sampled']} | {s['accepted']} | {s['threshold']:.3f} | {s['new']} | "
                    f"{s['total']} | {kinds} |")
    return "\n".join(rows) if found else ""


def _printable(text: str) -> str:
    import unicodedata

    return "".join(ch if unicodedata.category(ch)[0] != "C" else ascii(ch)[1:-1] for ch in text)


def people_table(run_dir: Path) -> str:
    """The annotation page's batches: judgements in, pending, and the people's agreement."""
    if not (run_dir / "annotations.sqlite").exists():
        return ""
    from ..annotate.store import Store

    store = Store.of_run(run_dir)
    rows = ["| batch | questions | rationales | people per question | judgements in | pending | closed by skips | "
            "people | judged by 2+ | Fleiss' kappa | Cohen's kappa (mean over pairs) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in store.progress():
        a = store.agreement(p.name)
        rows.append(f"| {p.name} | {p.questions} | {p.rationales} | {p.k} | {p.done} | {p.pending} | {p.closed} | "
                    f"{a['annotators']} | {a['items_with_2_or_more']} | {a['fleiss_kappa']:.3f} | {a['cohen_kappa_mean']:.3f} |")
    # names are printed as data: a control character (a terminal escape) shows as its escape code
    people = ", ".join(f"{_printable(name)} ({n})" for name, n in store.annotators().items())
    return "\n".join(rows) + (f"\n\nQuestions judged, by person: {people}" if people else "")


def plot_curves(path: Path, history: Sequence[tuple[str, dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label.split(" ")[0] for label, _ in history]
    series = {
        "answer accuracy (%)": [100 * m.get("answer_accuracy", 0) for _, m in history],
        "ROUGE-L": [m["unfiltered"].get("ROUGE-L", float("nan")) for _, m in history],
        "CIDEr": [m["unfiltered"].get("CIDEr", float("nan")) for _, m in history],
    }
    if all("grounded_rate" in m for _, m in history):
        series["grounded rate (%)"] = [100 * m["grounded_rate"] for _, m in history]
    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3.2))
    for ax, (name, ys) in zip(axes, series.items()):
        ax.plot(range(len(ys)), ys, marker="o")
        ax.set_xticks(range(len(ys)), labels, rotation=30, fontsize=8)
        ax.set_title(name)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write_report(run_dir: Path, history: Sequence[tuple[str, dict]], reason: str | None, recipe=None) -> str:
    lines = [f"# Run `{run_dir.name}`", ""]
    if recipe is not None:
        lines += [f"Data: `{recipe.data.name}`; selector: `{recipe.selector.name}` "
                  f"({recipe.selector.rule.describe()}); fine-tuning: `{recipe.finetune.mode}`.", ""]
    n = history[0][1].get("n", "?")
    lines += [f"Val metrics on {n} questions: the model's own answer, then its rationale for it. "
              f"NLG scores are x100 and unfiltered; the last column is CIDEr on correctly answered questions only.", "",
              metrics_table(history), ""]
    sel = selection_table(run_dir)
    if sel:
        lines += ["## Selection", "", sel, ""]
    people = people_table(run_dir)
    if people:
        lines += ["## People (annotation page)", "", people, ""]
    notes = sorted({note for _, m in history for note in m.get("notes", [])})
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if reason:
        lines += [f"Stopped: {reason}.", ""]
    lines += ["![curves](curves.png)", ""]
    text = "\n".join(lines)
    atomic_write_text(run_dir / "report.md", text)
    plot_curves(run_dir / "curves.png", history)
    return text


def run_summary(run_dir: Path) -> dict:
    """What `compare` shows of one run folder."""
    if not (run_dir / "base" / "metrics.json").exists():
        from ..errors import UserError

        raise UserError(f"{run_dir} is not a run folder (no base/metrics.json; run `illume-rm iterate` first)")
    history = [("base", json.loads((run_dir / "base" / "metrics.json").read_text()))]
    human = machine = 0
    for d in sorted(run_dir.glob("iter-*")):
        if (d / "metrics.json").exists():
            history.append((d.name, json.loads((d / "metrics.json").read_text())))
        sel = d / "selection.json"
        if sel.exists():
            s = json.loads(sel.read_text())
            kinds = s.get("judgements_by_kind", {})
            machine += kinds.get("reward", 0)
            # the judge's own count of the human budget (a version before it: all but the reward model's)
            human += s["human_judgements"] if "human_judgements" in s else sum(kinds.values()) - kinds.get("reward", 0)
    reward = None
    models = sorted(run_dir.glob("reward-model*/reward.json"))  # the seed model, then any refreshed ones
    if models:
        from ..reward.evaluation import seed_agreement

        reward = seed_agreement(json.loads(models[-1].read_text()))[1]
    return {"name": run_dir.name, "history": history, "human_judgements": human, "reward_judgements": machine,
            "reward_heldout": reward}


def compare_runs(run_dirs: Sequence[Path], out: Path | None = None) -> str:
    """A table of the runs' final val metrics, the human judgements each spent, and the reward model's
    agreement with its held-out judgements; and a plot of the metrics per iteration."""
    runs = [run_summary(Path(d)) for d in run_dirs]
    head = ["run", "iterations", "answer acc", "ROUGE-L", "CIDEr", "grounded", "human judgements",
            "reward judgements", "reward acc / AUC (held-out)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        label, m = r["history"][-1]
        u = m["unfiltered"]
        rh = r["reward_heldout"]
        cells = [r["name"], str(len(r["history"]) - 1), f"{100 * m['answer_accuracy']:.1f}",
                 f"{u.get('ROUGE-L', float('nan')):.1f}", f"{u.get('CIDEr', float('nan')):.1f}",
                 f"{100 * m['grounded_rate']:.1f}" if "grounded_rate" in m else "–",
                 str(r["human_judgements"]), str(r["reward_judgements"]),
                 f"{rh['accuracy']:.3f} / {rh['roc_auc']:.3f}" if rh else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "compare.md", "# Comparison\n\n" + table + "\n\n![curves](compare.png)\n")
        _plot_compare(out / "compare.png", runs)
    return table


def _plot_compare(path: Path, runs: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("CIDEr", lambda m: m["unfiltered"].get("CIDEr", float("nan"))),
            ("ROUGE-L", lambda m: m["unfiltered"].get("ROUGE-L", float("nan"))),
            ("grounded rate (%)", lambda m: 100 * m.get("grounded_rate", float("nan"))),
            ("answer accuracy (%)", lambda m: 100 * m.get("answer_accuracy", float("nan")))]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for ax, (name, get) in zip(axes, keys):
        for r in runs:
            ys = [get(m) for _, m in r["history"]]
            ax.plot(range(len(ys)), ys, marker="o", label=f"{r['name']} ({r['human_judgements']} human)")
        ax.set_title(name)
        ax.set_xlabel("iteration (0 = warm-up)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
