"""People as a judge: the candidates go to the annotation page (``illume-rm annotate RUN_DIR``)
once, as batch ``ctx.batch``; while judgements are missing the verdicts are pending (how many,
and the command that gives them); when all are in, the people's verdicts, with what they wrote
themselves, and their agreement written beside the run."""
from __future__ import annotations

from typing import Mapping, Sequence

from ..records import Candidate, Example, write_json
from .base import JudgeContext, Verdicts


class HumanJudge:
    name = "human"
    kind = "human"

    def __init__(self, judges: int = 1):
        self.judges = judges

    def judge(self, examples: Mapping[str, Example], candidates: Sequence[Candidate],
              ctx: JudgeContext) -> Verdicts:
        from ..annotate.store import Store

        batch = ctx.batch
        store = Store.of_run(ctx.run_dir)
        k = self.judges
        store.add_batch(batch, examples, list(candidates), k=k)
        (prog,) = store.progress(batch)
        if prog.pending:
            return Verdicts(pending=(
                f"waiting for people: {prog.pending} judgement(s) pending in batch {batch} "
                f"({prog.done} of {prog.needed} in; {prog.questions} questions, {prog.rationales} distinct rationales, "
                f"{k} person(s) each).\nJudge them in the browser with:\n  illume-rm annotate {ctx.run_dir}\n"
                f"then run the same `{ctx.command}` command again to continue."))
        judgements, written = store.judgements(batch, list(candidates))
        write_json(ctx.run_dir / f"agreement-{batch}.json",
                   store.agreement(batch) | {"k": k, "closed_by_skips": prog.closed})
        return Verdicts(judgements, {"human": len(judgements)} if judgements else {}, len(judgements), written)
