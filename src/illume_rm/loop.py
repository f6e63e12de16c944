"""The ILLUME iteration controller over a run folder.

    runs/NAME/
      recipe.yaml                 the resolved recipe
      warm-up.txt                 the warm-up checkpoint it started from
      base/                       the warm-up model's own answers and rationales on val ("iteration 0")
      iter-000/
        candidates.jsonl          rationales sampled on train (gold answers in the prompt)
        judgements.jsonl          the judge's verdicts (selectors: judge(examples, candidates, ctx))
        counts.json               the judge's accounting: judgements by kind, how many were the human budget
        seed_judgements.jsonl     (selector reward) the seed judge's verdicts: refresh_judgements.jsonl later
        written.jsonl             (selector human) rationales people wrote themselves, accepted
        train.jsonl               accepted rationales so far (they accumulate over iterations)
        selection.json            counts: sampled, accepted, new, threshold, judgements by selector kind
        adapter/                  LoRA adapter (PEFT save_pretrained), trained from the warm-up model
        sft-adapter/, rl/         (rl.algorithm grpo|rloo) the SFT adapter, then RL from it: rl/rl.json
                                  (held-out reward, gold, KL per evaluation), rl/rl.png; adapter/ is RL's
        val_candidates.jsonl      its own answers and rationales on val
        metrics.json
      annotations.sqlite          (selector human, or reward with human seeds) the annotation page's store
      reward-model[-NNN]/         (selector reward) the reward model the judge trained (and retrained)
      agreement-BATCH.json        agreement between the people who judged a batch (Fleiss', Cohen's kappa)
      report.md  curves.png

Every stage writes its output atomically and is skipped when the output is
there, so a killed run continues where it stopped without redoing finished
stages or duplicating records. Iteration i samples with the model of
iteration i-1 (the warm-up model for i = 0).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .config import Recipe, load_recipe, recipe_yaml
from .data import load_examples
from .errors import Pending, UserError
from .evaluate.runner import evaluate_candidates
from .records import (Candidate, Judgement, atomic_write_text, copy_tree_atomic, read_jsonl, remove_stale_temps,
                      write_json, write_jsonl)
from . import tasks
from .sampling import pick_examples
from .selectors import JudgeContext, make_judge

Log = Callable[[str], None]


def _compared(recipe: Recipe) -> dict:
    """What makes two recipes the same run: the resolved recipe, less the settings of a stage it does not
    run (the RL section when rl.algorithm is none)."""
    d = recipe.to_dict()
    if d["rl"]["algorithm"] == "none":
        d.pop("rl")
    return d


def _started_recipe(path: Path) -> Recipe:
    """A run folder's recipe.yaml, as the run was started: one written before ``model.cell_places``
    existed (its resolved model section lacks the key) was laid out ``before``, not today's default."""
    import yaml

    raw = yaml.safe_load(path.read_text()) or {}
    model = raw.get("model") if isinstance(raw, dict) else None
    old = isinstance(model, dict) and "image_tokens" in model and "cell_places" not in model
    return load_recipe(str(path), ["model.cell_places=before"] if old else [])


class Run:
    def __init__(self, recipe: Recipe, folder: str | Path, warm_checkpoint: Path, log: Log = print):
        self.recipe, self.dir, self.warm, self.log = recipe, Path(folder), Path(warm_checkpoint), log
        self._data: dict[str, list] = {}
        self.judge = make_judge(recipe.selector, seed=recipe.seed)
        self._warm_vlm = None

    # -- helpers ------------------------------------------------------------------------
    def examples(self, split: str):
        if split not in self._data:
            self._data[split] = load_examples(self.recipe.data, split)
        return self._data[split]

    def eval_examples(self):
        val = self.examples("val")
        n = self.recipe.sampling.eval_examples
        return val if n is None else val[:n]

    def model(self, adapter: Path | None = None):
        return tasks.open_model(self.recipe, str(self.warm), _opt(adapter))

    def iter_dir(self, i: int) -> Path:
        return self.dir / f"iter-{i:03d}"

    def adapter(self, i: int) -> Path | None:
        return None if i < 0 else self.iter_dir(i) / "adapter"

    # -- the run ------------------------------------------------------------------------
    def prepare(self) -> None:
        self._check_processes()
        self.dir.mkdir(parents=True, exist_ok=True)
        stale = remove_stale_temps(self.dir)  # what a killed run left half-written
        if stale:
            self.log(f"removed {len(stale)} half-written file(s) a stopped run left in {self.dir}")
        existing = self.dir / "recipe.yaml"
        # compared as resolved recipes, so a field added since (with its default) is no difference
        if existing.exists() and _compared(_started_recipe(existing)) != _compared(self.recipe):
            raise UserError(f"{self.dir} was started with another recipe ({existing}); "
                            "rerun with that recipe, or choose a new run folder")
        # the same recipe from another warm-up checkpoint (a new version of the warm-up) is another run
        started = self.dir / "warm-up.txt"
        if started.exists() and started.read_text().strip() != str(self.warm.resolve()):
            raise UserError(f"{self.dir} was started from another warm-up checkpoint "
                            f"({started.read_text().strip()}); choose a new run folder (--run) or remove this one")
        if not started.exists() and ((self.dir / "base" / "metrics.json").exists() or any(self.dir.glob("iter-*"))):
            raise UserError(f"{self.dir} holds results but not the warm-up checkpoint they started from "
                            "(a version before warm-up.txt); choose a new run folder (--run) or remove this one")
        atomic_write_text(existing, recipe_yaml(self.recipe))
        atomic_write_text(started, f"{self.warm.resolve()}\n")

    def _check_processes(self) -> None:
        """Under several processes, what runs in one process only is refused before any work."""
        from .distributed import processes
        from .reward.models import KINDS, TRAINER_KINDS

        if not processes().distributed:
            return
        r = self.recipe
        if r.rl.algorithm != "none":
            raise UserError(f"rl.algorithm {r.rl.algorithm}: RL through TRL runs in one process; start this run "
                            "without accelerate launch, or without rl")
        if r.selector.name == "reward" and r.selector.reward.kind in TRAINER_KINDS:
            raise UserError(f"selector.reward.kind {r.selector.reward.kind} trains with transformers' Trainer, which "
                            f"runs in one process here; choose {' or '.join(k for k in KINDS if k not in TRAINER_KINDS)}, "
                            "or start this run without accelerate launch")

    def evaluate_stage(self, folder: Path, adapter: Path | None, label: str, iteration: int) -> dict:
        metrics_path = folder / "metrics.json"
        if metrics_path.exists():
            return json.loads(metrics_path.read_text())
        cands_path = folder / "val_candidates.jsonl"
        if not cands_path.exists():
            cands = tasks.explain(self.recipe, str(self.warm), _opt(adapter), self.eval_examples(), iteration=iteration,
                                  model_name=label)
            write_jsonl(cands_path, cands)
        cands = read_jsonl(cands_path, Candidate)
        metrics = evaluate_candidates(self.eval_examples(), cands, self.recipe.use_coco(),
                                      self.recipe.evaluation.protocol)
        metrics["label"] = label
        write_json(metrics_path, metrics)
        return metrics

    def iteration(self, i: int) -> tuple[dict | None, str | None]:
        """Runs (or resumes) iteration i; returns (metrics, stop reason)."""
        r = self.recipe
        d = self.iter_dir(i)
        d.mkdir(parents=True, exist_ok=True)
        if (d / "metrics.json").exists():
            return json.loads((d / "metrics.json").read_text()), None
        illume = r.finetune.mode == "illume"
        if illume:
            if not (d / "candidates.jsonl").exists():
                train = pick_examples(self.examples("train"), r.sampling.train_examples, r.seed + i)
                cands = tasks.sample(r, str(self.warm), _opt(self.adapter(i - 1)), train, iteration=i,
                                     model_name=f"iter-{i - 1:03d}" if i else "warm-up", seed=r.seed + i)
                write_jsonl(d / "candidates.jsonl", cands)
            cands = read_jsonl(d / "candidates.jsonl", Candidate)
            if not (d / "judgements.jsonl").exists():
                by_id = {ex.id: ex for ex in self.examples("train")}
                verdicts = self.judge.judge(by_id, cands, self.context(i))
                if verdicts.pending:
                    raise Pending(verdicts.pending)
                if verdicts.written:
                    write_jsonl(d / "written.jsonl", verdicts.written)
                write_json(d / "counts.json", verdicts.counts())
                write_jsonl(d / "judgements.jsonl", verdicts.judgements)
            if not (d / "selection.json").exists():
                self._accumulate(i, cands)
            selection = json.loads((d / "selection.json").read_text())
            written = f" + {selection['written']} written by people" if selection.get("written") else ""
            self.log(f"iteration {i}: {selection['sampled']} sampled{written}, {selection['accepted']} accepted "
                     f"(threshold {selection['threshold']:.3f}), {selection['new']} new, {selection['total']} in train")
            if selection["new"] == 0:
                return None, f"no new rationale was accepted in iteration {i}"
        adapter = d / "adapter"
        if not (adapter / "adapter_config.json").exists():
            if r.rl.algorithm == "none":
                self._finetune(i, adapter)
            else:  # SFT, then RL from that adapter against the current reward model
                sft = d / "sft-adapter"
                if not (sft / "adapter_config.json").exists():
                    self._finetune(i, sft)
                self._rl(i, sft, adapter)
        return self.evaluate_stage(d, adapter, f"iter-{i:03d}", i), None

    def _rl(self, i: int, sft: Path, adapter: Path) -> None:
        from .train.rl import heldout_val, run_rl

        r = self.recipe
        if r.rl.reward_model:
            reward_dir = Path(r.rl.reward_model)
        elif hasattr(self.judge, "model_dir"):
            reward_dir = self.judge.model_dir(self.context(i))
        else:
            raise UserError("rl: no reward model (selector.name: reward, or rl.reward_model: FOLDER)")
        out = self.iter_dir(i) / "rl"
        held = heldout_val(self.examples("val"), r.sampling.eval_examples, r.rl.eval_examples)
        run_rl(self.model(None), sft, reward_dir, self.examples("train"), held, r.rl, out,
               r.sampling, seed=r.seed + i, log=self.log, data_key=r.hash("data"), warm_up=self.warm)
        copy_tree_atomic(out / "adapter", adapter)

    def context(self, i: int) -> JudgeContext:
        """Where the judge of iteration i works: this run folder; the warm-up model, loaded once."""
        return JudgeContext(self.dir, i, self.recipe, self.log, load_vlm=self._warm_model)

    def _warm_model(self):
        if self._warm_vlm is None:
            self._warm_vlm = self.model(None)
        return self._warm_vlm

    def _accumulate(self, i: int, cands: list[Candidate]) -> None:
        d = self.iter_dir(i)
        judgements = read_jsonl(d / "judgements.jsonl", Judgement)
        sampled = len(cands)
        written = read_jsonl(d / "written.jsonl", Candidate) if (d / "written.jsonl").exists() else []
        cands = cands + written  # rationales people wrote themselves (accepted)
        verdict = {j.candidate_id: j for j in judgements}
        previous = read_jsonl(self.iter_dir(i - 1) / "train.jsonl", Candidate) if i > 0 else []
        have = {(c.example_id, c.rationale) for c in previous}
        accepted = [c for c in cands if c.id in verdict and verdict[c.id].accepted]
        new = [c for c in accepted if (c.example_id, c.rationale) not in have]
        write_jsonl(d / "train.jsonl", previous + new)
        # from the judge: judgements by kind, and how many were the human budget
        counts_path = d / "counts.json"
        counts = (json.loads(counts_path.read_text()) if counts_path.exists()
                  else {"judgements_by_kind": {"unrecorded": len(judgements)}})  # judged by a version before counts.json
        threshold = min((j.score for j in judgements if j.accepted), default=float("nan"))
        write_json(d / "selection.json", {
            "sampled": sampled, "written": len(written), "accepted": len(accepted), "new": len(new), "total": len(previous) + len(new),
            "examples_with_accepted": len({c.example_id for c in accepted}),
            "threshold": threshold, **counts,
        })

    def _finetune(self, i: int, adapter: Path) -> None:
        r = self.recipe
        accepted = read_jsonl(self.iter_dir(i) / "train.jsonl", Candidate) if r.finetune.mode == "illume" else []
        tasks.finetune(r, str(self.warm), self.examples("train"), accepted, seed=r.seed + i, out=adapter)

    def run(self) -> list[tuple[str, dict]]:
        self.prepare()
        history = [("base (warm-up)", self.evaluate_stage(self.dir / "base", None, "base", -1))]
        r = self.recipe
        best, since_best, reason = history[0][1]["unfiltered"].get(r.loop.metric, float("-inf")), 0, None
        iterations = r.loop.max_iterations if r.finetune.mode == "illume" else 1
        for i in range(iterations):
            metrics, reason = self.iteration(i)
            if metrics is None:
                break
            history.append((f"iter-{i:03d}", metrics))
            value = metrics["unfiltered"].get(r.loop.metric, float("-inf"))
            if value > best:
                best, since_best = value, 0
            else:
                since_best += 1
            if since_best >= r.loop.patience:
                reason = f"val {r.loop.metric} has not improved for {r.loop.patience} iteration(s)"
                break
        else:
            reason = f"reached {iterations} iteration(s)"
        write_json(self.dir / "loop.json", {"stopped": reason, "iterations": len(history) - 1})
        from .evaluate.report import write_report

        write_report(self.dir, history, reason, self.recipe)
        self.log(f"stopped: {reason}")
        return history


def _opt(path: Path | None) -> str | None:
    return None if path is None else str(path)
