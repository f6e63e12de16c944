"""Score the model's own answers and rationales on a split: accuracy, NLG scores in both
protocols (unfiltered, and filtered to correctly answered questions, "correct" as a named
answer protocol says: ``accuracy.PROTOCOLS``) and, where scenes exist, the grounded rate (the
share of rationales the oracle accepts). Candidates of questions outside the split are counted
and named in the notes, never silently dropped."""
from __future__ import annotations

import warnings
from typing import Sequence

from ..data.scene import is_grounded
from ..records import Candidate, Example
from .accuracy import accuracy_by_family, is_correct
from .nlg import nlg_scores

NLG_KEYS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def grounded(ex: Example, rationale: str, answer: str | None = None) -> bool:
    """Every claim true of the scene, and the rationale supports ``answer`` (the candidate's own)."""
    return is_grounded(ex.meta, ex.question, rationale, answer)


def evaluate_candidates(examples: Sequence[Example], candidates: Sequence[Candidate],
                        use_coco: bool | None = None, protocol: str = "nlx-gpt") -> dict:
    by_id = {ex.id: ex for ex in examples}
    cands = [c for c in candidates if c.example_id in by_id]
    outside = len(candidates) - len(cands)
    exs = [by_id[c.example_id] for c in cands]
    preds = [c.answer for c in cands]
    acc = accuracy_by_family(exs, preds)
    refs = {c.example_id: by_id[c.example_id].explanations for c in cands}
    hyps = {c.example_id: c.rationale for c in cands}
    correct = {c.example_id for c, ex in zip(cands, exs) if is_correct(c.answer, ex.answers, protocol)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        unfiltered = nlg_scores(hyps, refs, use_coco)
        filtered = nlg_scores({k: v for k, v in hyps.items() if k in correct}, refs, use_coco) if correct else {}
    notes = sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})
    if outside:
        notes.append(f"{outside} of {len(candidates)} candidates are of questions outside the evaluated "
                     f"examples and were not scored")
    metrics = {
        "n": len(cands),
        "outside": outside,
        "answer_accuracy": acc.get("all", 0.0),
        "accuracy_by_family": {k: v for k, v in acc.items() if k != "all"},
        "unfiltered": unfiltered,
        "filtered": filtered | {"n": len(correct), "protocol": protocol},
        "notes": notes,
    }
    by_family: dict[str, list[bool]] = {}
    for c, ex in zip(cands, exs):
        if "scene" in ex.meta:
            by_family.setdefault(ex.meta.get("family", "all"), []).append(grounded(ex, c.rationale, c.answer))
    if by_family:
        verdicts = [v for vs in by_family.values() for v in vs]
        metrics["grounded_rate"] = sum(verdicts) / len(verdicts)
        metrics["grounded_by_family"] = {k: sum(v) / len(v) for k, v in by_family.items()}
    return metrics


def metrics_table(rows: Sequence[tuple[str, dict]]) -> str:
    """A markdown table: one row per evaluated model."""
    head = ["", "n", "answer acc"] + [f"{k}" for k in NLG_KEYS] + ["grounded", f"{NLG_KEYS[-1]} (filtered)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, m in rows:
        u, f = m.get("unfiltered", {}), m.get("filtered", {})
        cells = [label, str(m.get("n", "")), f"{100 * m.get('answer_accuracy', 0):.1f}"]
        cells += [f"{u[k]:.1f}" if k in u else "–" for k in NLG_KEYS]
        cells.append(f"{100 * m['grounded_rate']:.1f}" if "grounded_rate" in m else "–")
        cells.append(f"{f['CIDEr']:.1f}" if "CIDEr" in f else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", scorer_line(rows)])


def scorer_line(rows: Sequence[tuple[str, dict]]) -> str:
    """Which code computed the table's NLG scores, what is missing, and what "filtered" means."""
    scorers = sorted({m.get("unfiltered", {}).get("scorer", "") for _, m in rows} - {""})
    protocols = sorted({m.get("filtered", {}).get("protocol", "") for _, m in rows} - {""})
    parts = []
    if scorers:
        parts.append("NLG scorer: " + ", ".join(scorers))
        if "python" in scorers:
            parts.append("METEOR left out (pure-Python scorer: no Java)")
    if protocols:
        parts.append("filtered: questions answered correctly under the " + ", ".join(protocols) + " protocol")
    return "; ".join(parts) + "." if parts else ""
