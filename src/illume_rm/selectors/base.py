"""One door for every judge.

A *judge* turns (examples, candidates) into ``Verdicts`` through ``judge(examples, candidates,
ctx)``: judgements, how many of them each kind of judge gave (the human budget is counted from
there), rationales people wrote themselves, or the work still waiting for people. The critic, the
oracle, plugins, a trained reward model, people (``human.py``) and the reward loop's judge, a seed
judge composed with a model it trains (``reward.py``), are all judges; the loop and
``illume-rm select`` only call ``judge``. ``ctx`` (``JudgeContext``) is where a judge keeps what it
learns between calls: the run folder, the iteration, the recipe, the warm-up VLM.

A *scorer* is anything with ``score(examples, candidates) -> list[float]``
(higher is better; ``examples`` is a mapping from example id to Example).
A *selector* is a scorer plus a rule: a fixed threshold, an adaptive one
(the highest threshold that still accepts at least N), or top-k per example;
it is the judge of every scorer.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from ..errors import UserError
from ..records import Candidate, Example, Judgement


@runtime_checkable
class Scorer(Protocol):
    name: str

    def score(self, examples: Mapping[str, Example], candidates: Sequence[Candidate]) -> list[float]:
        ...


@dataclass
class Verdicts:
    """What a judge returns. ``by_kind``: judgements given by each kind of judge (critic, oracle, human,
    reward, plugin); ``people``: how many of them stand for a person's (people, or a simulated person),
    the human budget; ``written``: rationales people wrote themselves (accepted); ``pending``: when
    people still have work, what and how to give it (the judgements are then not complete)."""

    judgements: list[Judgement] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)
    people: int = 0
    written: list[Candidate] = field(default_factory=list)
    threshold: float | None = None
    pending: str | None = None

    def __add__(self, other: "Verdicts") -> "Verdicts":
        kinds = dict(self.by_kind)
        for k, n in other.by_kind.items():
            kinds[k] = kinds.get(k, 0) + n
        return Verdicts(self.judgements + other.judgements, kinds, self.people + other.people,
                        self.written + other.written, other.threshold if other.threshold is not None else self.threshold,
                        self.pending or other.pending)

    def counts(self) -> dict:
        return {"judgements_by_kind": dict(self.by_kind), "human_judgements": self.people}


@dataclass
class JudgeContext:
    """Where a judge works: ``run_dir`` holds what it keeps between iterations (the annotation store,
    reward models), ``iteration`` names the batch; ``vlm()`` is the warm-up model (loaded once, on
    first use) for judges that read it."""

    run_dir: Path
    iteration: int = 0
    recipe: Any = None
    log: Callable[[str], None] = print
    load_vlm: Callable[[], Any] | None = None
    command: str = "illume-rm iterate"  # what the user reruns to continue once people have judged
    batch_name: str | None = None       # the people's batch (default iter-NNN)
    _vlm: Any = field(default=None, repr=False)

    def iter_dir(self, i: int | None = None) -> Path:
        return self.run_dir / f"iter-{self.iteration if i is None else i:03d}"

    @property
    def batch(self) -> str:
        return self.batch_name or f"iter-{self.iteration:03d}"

    def vlm(self):
        if self._vlm is None:
            if self.load_vlm is None:
                raise UserError("this judge reads the warm-up VLM, and none was given")
            self._vlm = self.load_vlm()
        return self._vlm


@runtime_checkable
class Judge(Protocol):
    name: str

    def judge(self, examples: Mapping[str, Example], candidates: Sequence[Candidate],
              ctx: JudgeContext) -> Verdicts:
        ...


def scorer_kind(scorer) -> str:
    """A scorer's kind for the accounting: its ``kind`` attribute (critic, oracle, answer, reward), else plugin."""
    return getattr(scorer, "kind", "plugin")


@dataclass
class Rule:
    """How scores become accept / reject.

    kind ``threshold``: accept score >= threshold. kind ``adaptive``: the highest
    threshold (never above ``threshold``) that accepts at least ``min_accept``
    candidates, but never below ``floor``. kind ``topk``: the best ``k`` of each
    example whose score is >= ``floor``.
    """

    kind: str = "threshold"
    threshold: float = 0.7
    min_accept: int = 50
    floor: float = 0.0
    k: int = 1

    def describe(self) -> str:
        if self.kind == "threshold":
            return f">={self.threshold:g}"
        if self.kind == "adaptive":
            return f">=adaptive(max {self.threshold:g}, n>={self.min_accept}, floor {self.floor:g})"
        return f"top{self.k}>={self.floor:g}"

    def apply(self, scores: Sequence[float], candidates: Sequence[Candidate]) -> tuple[list[bool], float]:
        if self.kind == "threshold":
            return [s >= self.threshold for s in scores], self.threshold
        if self.kind == "adaptive":
            ranked = sorted(scores, reverse=True)
            t = self.threshold
            if len(ranked) >= self.min_accept and ranked[self.min_accept - 1] < t:
                t = ranked[self.min_accept - 1]
            elif len(ranked) < self.min_accept and ranked:
                t = min(t, ranked[-1])
            t = max(t, self.floor)
            return [s >= t for s in scores], t
        if self.kind == "topk":
            by_example: dict[str, list[int]] = {}
            for i, c in enumerate(candidates):
                by_example.setdefault(c.example_id, []).append(i)
            accepted = [False] * len(scores)
            for idx in by_example.values():
                for i in sorted(idx, key=lambda i: -scores[i])[: self.k]:
                    accepted[i] = scores[i] >= self.floor
            return accepted, self.floor
        raise UserError(f"unknown acceptance rule '{self.kind}' (threshold, adaptive or topk)")


def checked_scores(scorer: Scorer, examples: Mapping[str, Example], candidates: Sequence[Candidate]) -> list[float]:
    """A scorer's scores, or one clear error naming the scorer."""
    unknown = [c for c in candidates if c.example_id not in examples]
    if unknown:
        raise UserError(f"{len(unknown)} of {len(candidates)} candidates are about examples the data lacks "
                        f"(first: candidate {unknown[0].id}, example {unknown[0].example_id})")
    try:
        scores = list(scorer.score(examples, candidates))
    except UserError:
        raise
    except SystemExit as exc:  # a plugin that calls exit() does not end the command without a word
        raise UserError(f"scorer '{scorer.name}' called exit({exc.code!r})") from None
    except Exception as exc:  # a plugin's bug is named, not a traceback deep inside the loop
        raise UserError(f"scorer '{scorer.name}' failed: {type(exc).__name__}: {exc}") from exc
    if len(scores) != len(candidates):
        raise UserError(f"scorer '{scorer.name}' returned {len(scores)} scores for {len(candidates)} candidates")
    try:
        out = [float(s) for s in scores]
    except (TypeError, ValueError):
        raise UserError(f"scorer '{scorer.name}' returned something that is not a number") from None
    nan = sum(math.isnan(s) for s in out)
    if nan:
        raise UserError(f"scorer '{scorer.name}' returned NaN for {nan} of {len(out)} candidates "
                        f"(first: candidate {candidates[[math.isnan(s) for s in out].index(True)].id})")
    return out


class Selector:
    """A scorer and its rule; ``gates`` are further scorers that must each give >= 0.5 for a
    candidate to be accepted (e.g. a reward model AND the answer being correct)."""

    def __init__(self, scorer: Scorer, rule: Rule, label: str | None = None, gates: Sequence[Scorer] = ()):
        self.scorer, self.rule, self.gates = scorer, rule, list(gates)
        self.label = label or f"{scorer.name}{rule.describe()}" + "".join(f"&{g.name}" for g in self.gates)
        self.name = self.label
        self.kind = scorer_kind(scorer)
        self.last_threshold: float | None = None

    def judge(self, examples: Mapping[str, Example], candidates: Sequence[Candidate],
              ctx: JudgeContext | None = None) -> Verdicts:
        """The judge of a scorer: its judgements, counted under the scorer's kind; a scorer whose
        ``people`` attribute is true stands for a person (the critic and the oracle simulate one). A scorer
        that reads the warm-up VLM and has none (``wants_vlm``, e.g. reward:FOLDER of a vlm-likelihood
        model) gets the context's."""
        for s in [self.scorer, *self.gates]:
            if ctx is not None and getattr(s, "wants_vlm", False):
                s.vlm = ctx.vlm()
        judgements = self.select(examples, candidates)
        people = len(judgements) if getattr(self.scorer, "people", False) else 0
        return Verdicts(judgements, {self.kind: len(judgements)} if judgements else {}, people,
                        threshold=self.last_threshold)

    def scores(self, examples: Mapping[str, Example], candidates: Sequence[Candidate]) -> list[float]:
        return checked_scores(self.scorer, examples, candidates)

    def select(self, examples: Mapping[str, Example], candidates: Sequence[Candidate]) -> list[Judgement]:
        if not candidates:
            return []
        scores = self.scores(examples, candidates)
        accepted, self.last_threshold = self.rule.apply(scores, candidates)
        for gate in self.gates:
            passed = checked_scores(gate, examples, candidates)
            accepted = [a and g >= 0.5 for a, g in zip(accepted, passed)]
        now = time.time()
        return [Judgement(candidate_id=c.id, accepted=a, score=s, selector=self.label, time=now)
                for c, s, a in zip(candidates, scores, accepted)]


def example_for(examples: Mapping[str, Example], cand: Candidate) -> Example:
    try:
        return examples[cand.example_id]
    except KeyError:
        raise UserError(f"candidate {cand.id} refers to unknown example {cand.example_id}") from None
