"""report.md (a table per iteration) and curves.png for a run folder."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..records import atomic_write_text
from .runner import NLG_KEYS, metrics_table


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
