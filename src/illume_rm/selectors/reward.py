"""The reward loop's judge: a seed judge composed with a model it trains.

Iteration 0: ``seed_judgements`` candidates (stratified by question family and temperature) go to
the seed judge (people in the annotation page, or a simulated person); a reward model is trained on
its verdicts and judges everything else at the threshold fitted on held-out seed judgements. With
``refresh`` M > 0, each later iteration also has the seed judge judge the M candidates the current
model is least sure of, and retrains on every seed judgement so far (active learning). The seed
judge's verdicts are the human budget; the model's are counted as ``reward``.

What it keeps lives in the run folder: ``iter-NNN/seed_judgements.jsonl`` /
``refresh_judgements.jsonl`` and ``reward-model[-NNN]/``; every file is written whole, so a
killed run resumes without judging twice.
"""
from __future__ import annotations

import os
import random
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

from ..records import Candidate, Example, Judgement, read_jsonl, write_jsonl
from .base import Judge, JudgeContext, Rule, Selector, Verdicts


def stratified(cands: Sequence[Candidate], by_id: Mapping[str, Example], n: int, seed: int) -> list[Candidate]:
    """n candidates spread evenly over (question family, temperature) strata."""
    rng = random.Random(seed)
    strata: dict[tuple, list[Candidate]] = {}
    for c in cands:
        strata.setdefault((by_id[c.example_id].meta.get("family", ""), c.temperature), []).append(c)
    for group in strata.values():
        rng.shuffle(group)
    picked: list[Candidate] = []
    while len(picked) < min(n, len(cands)):
        for group in strata.values():
            if group and len(picked) < n:
                picked.append(group.pop())
    return picked


class RewardLoopJudge:
    """``seed``: the judge whose verdicts train the model (the human budget); ``cfg``: the recipe's
    selector section (seed_judgements, refresh, reward); ``gates``: scorers each candidate the model
    accepts must also pass (``selector.require``)."""

    kind = "reward"

    def __init__(self, seed: Judge, cfg, gates: Sequence = (), seed_value: int = 0):
        self.seed, self.cfg, self.gates, self.seed_value = seed, cfg, list(gates), seed_value
        self.name = f"reward<{seed.name}"

    # -- what it keeps ------------------------------------------------------------------
    def model_dir(self, ctx: JudgeContext, i: int | None = None) -> Path:
        """The reward model iteration i uses: the seed one, or the latest retrained by a refresh."""
        i = ctx.iteration if i is None else i
        if self.cfg.refresh > 0 and i > 0:
            return ctx.run_dir / f"reward-model-{i:03d}"
        return ctx.run_dir / "reward-model"

    def _seed_verdicts(self, path: Path, examples, picked: list[Candidate], ctx: JudgeContext,
                       batch: str) -> Verdicts:
        """The seed judge's verdicts on ``picked``, stored at ``path`` once they are complete."""
        if path.exists():
            judgements = read_jsonl(path, Judgement)
        else:
            verdicts = self.seed.judge(examples, picked, replace(ctx, batch_name=batch))
            if verdicts.pending:
                return verdicts
            judgements = verdicts.judgements
            write_jsonl(path, judgements)
        # whoever judges the seed stands for the people: every seed verdict is the human budget
        return Verdicts(judgements, {self.seed.kind: len(judgements)} if judgements else {}, len(judgements))

    def _train(self, ctx: JudgeContext, examples, out: Path) -> None:
        from ..reward import NEEDS_VLM, labelled_rows, seed_agreement, train_reward

        rows = []
        for k in range(ctx.iteration + 1):  # every seed judgement so far, with its candidates
            for name in ("seed_judgements.jsonl", "refresh_judgements.jsonl"):
                f = ctx.iter_dir(k) / name
                if f.exists():
                    rows += labelled_rows(examples, read_jsonl(ctx.iter_dir(k) / "candidates.jsonl", Candidate),
                                          read_jsonl(f, Judgement))
        vlm = ctx.vlm() if self.cfg.reward.kind in NEEDS_VLM else None
        tmp = ctx.run_dir / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        warm = ctx.run_dir / "warm-up.txt"
        origin = {"warm_up": warm.read_text().strip() if warm.exists() else None}
        if ctx.recipe is not None:
            origin |= {"data": ctx.recipe.hash("data"), "data_name": ctx.recipe.data.name}
        report = train_reward(rows, self.cfg.reward, tmp, vlm=vlm, log=ctx.log, origin=origin)
        os.replace(tmp, out)
        how, held = seed_agreement(report)
        held = held or {}
        ctx.log(f"reward model ({out.name}, {len(rows)} judgements): {how} accuracy "
                f"{held.get('accuracy', float('nan')):.3f}, ROC-AUC {held.get('roc_auc', float('nan')):.3f}, "
                f"threshold {report['threshold']:.3f}")

    def _model(self, ctx: JudgeContext, i: int):
        from ..reward import NEEDS_VLM, load_reward, reward_kind

        folder = self.model_dir(ctx, i)
        return load_reward(folder, vlm=ctx.vlm() if reward_kind(folder) in NEEDS_VLM else None)

    # -- the judge ----------------------------------------------------------------------
    def judge(self, examples: Mapping[str, Example], candidates: Sequence[Candidate],
              ctx: JudgeContext) -> Verdicts:
        i, d = ctx.iteration, ctx.iter_dir()
        d.mkdir(parents=True, exist_ok=True)
        if i == 0:
            picked = stratified(candidates, examples, self.cfg.seed_judgements, self.seed_value)
            human = self._seed_verdicts(d / "seed_judgements.jsonl", examples, picked, ctx, f"{ctx.batch}-seed")
        elif self.cfg.refresh > 0:
            path = d / "refresh_judgements.jsonl"
            picked = []
            if not path.exists():
                current = self._model(ctx, i - 1)
                probs = current.score(examples, candidates)
                unsure = sorted(range(len(candidates)), key=lambda k: abs(probs[k] - current.threshold))
                picked = [candidates[k] for k in unsure[: self.cfg.refresh]]
            human = self._seed_verdicts(path, examples, picked, ctx, f"{ctx.batch}-refresh")
        else:
            human = Verdicts()
        if human.pending:
            return human
        out = self.model_dir(ctx)
        if not (out / "reward.json").exists():
            self._train(ctx, examples, out)
        scorer = self._model(ctx, i)
        judged = {j.candidate_id for j in human.judgements}
        rest = [c for c in candidates if c.id not in judged]
        model = Selector(scorer, Rule("threshold", threshold=scorer.threshold), gates=self.gates)
        machine = model.judge(examples, rest, ctx)
        return human + Verdicts(machine.judgements, {"reward": len(machine.judgements)} if machine.judgements else {},
                                threshold=machine.threshold)
