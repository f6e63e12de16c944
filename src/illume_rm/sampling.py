"""Sample K rationales per example at several temperatures (ILLUME's step 1).

Defaults from the official ILLUME code: prompt ``Q: {question} A: {answer},
seeing that``, top-k sampling, temperatures 0.3 and 0.9. On training data
the prompt holds the gold answer; for evaluation the model first gives its
own answer (greedy) and then explains it. Batched through ``VLM.sample_groups``
(the built-in VLM reads each prompt once and decodes all its samples together;
rows that have ended leave the batch) and greedy ``VLM.generate`` (the built-in
VLM reads each distinct image once for all the prompts about it). Exact
duplicates per example are dropped.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Sequence

from tqdm.auto import tqdm

from .records import Candidate, Example
from .vlm.base import VLM, answer_prompt, parse_answer

RATIONALE_TEMPLATE = "Q: {question} A: {answer}, seeing that"
# Sampling decodes this many rows (examples x samples) at once, several batches together, each batch
# still drawing from its own seed: the demo's sampling ran 1.17x faster at 256 rows a call than at one
# 64-row batch a call, the same candidates (benchmarks/eval_batch.py). Memory: the rows' keys and values,
# about 6 MB a row for the built-in VLM's ~130-token rows (30 layers x 2 x 3 heads x 64 x 4 bytes a token).
SAMPLED_ROWS_PER_CALL = 256


@dataclass
class SamplingConfig:
    samples_per_temperature: int = 2
    temperatures: list[float] = field(default_factory=lambda: [0.3, 0.9])
    top_k: int = 50
    max_new_tokens: int = 24
    batch_size: int = 16               # examples per sampling call (each draws from its own seed: see batch_seed)
    # examples per greedy call when evaluating (explain): no random draws, so the batches change nothing but
    # speed; 128 evaluated the demo's 150 questions in 21 s against 29 at 16, the same answers and rationales
    # (benchmarks/eval_batch.py)
    eval_batch_size: int = 128
    template: str = RATIONALE_TEMPLATE
    answer_template: str = "Q: {question} A:"
    train_examples: int | None = None  # examples sampled per iteration (None: all of train)
    eval_examples: int | None = None   # val examples evaluated (None: the whole split)


def clean_rationale(text: str) -> str:
    """The first sentence of a continuation, without a leading 'seeing that'."""
    text = text.strip()
    text = re.sub(r"^(?:seeing that|because)\s+", "", text, flags=re.I)
    text = re.split(r"(?<=[a-z0-9])\.(?:\s|$)|\n|\bQ:", text, maxsplit=1)[0]
    return text.strip().rstrip(".,;: ")


def rationale_prompt(ex: Example, answer: str, template: str = RATIONALE_TEMPLATE) -> str:
    return template.format(question=ex.question, answer=answer)


def pick_examples(examples: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    if n is None or n >= len(examples):
        return list(examples)
    return random.Random(seed).sample(list(examples), n)


def batch_seed(seed: int, start: int) -> int:
    """The sampling seed of the batch that begins at example ``start``: the same whichever process
    samples it, and whatever was sampled before it."""
    return random.Random(f"illume-rm/{seed}/{start}").getrandbits(62)


def sample_candidates(vlm: VLM, examples: Sequence[Example], cfg: SamplingConfig, iteration: int = 0,
                      model_name: str = "", seed: int = 0, progress: bool = True,
                      rows_per_call: int | None = None) -> list[Candidate]:
    """K samples per temperature per example, with the gold answer in the prompt.

    Each batch of ``cfg.batch_size`` examples draws from its own seed (``batch_seed``), so the
    candidates do not depend on how the batches are shared out among processes, nor on how many are
    decoded in one call (``rows_per_call`` rows; default ``SAMPLED_ROWS_PER_CALL``)."""
    from .distributed import processes

    procs = processes()
    starts = list(range(0, len(examples), cfg.batch_size))
    per = len(cfg.temperatures) * cfg.samples_per_temperature
    rows = SAMPLED_ROWS_PER_CALL if rows_per_call is None else rows_per_call
    together = max(1, rows // max(1, cfg.batch_size * per))  # batches decoded in one call
    calls = [starts[i:i + together] for i in range(0, len(starts), together)]
    bar = tqdm(total=len(examples) * per, desc=f"sampling rationales (iteration {iteration})", unit="rationale",
               disable=not progress or not procs.is_main)

    def one(call: list[int]) -> list:
        chunks = [examples[start:start + cfg.batch_size] for start in call]
        groups = vlm.sample_group_batches(
            [[(ex.image, rationale_prompt(ex, ex.answer, cfg.template), None) for ex in chunk] for chunk in chunks],
            [batch_seed(seed, start) for start in call], cfg.temperatures, cfg.samples_per_temperature,
            max_new_tokens=cfg.max_new_tokens, top_k=cfg.top_k)
        procs.advance(bar, sum(len(chunk) for chunk in chunks) * per)
        return groups

    per_batch = [groups for part in procs.map(one, calls) for groups in part]
    bar.close()
    out: list[Candidate] = []
    seen: set[tuple[str, str]] = set()
    for start, groups in zip(starts, per_batch):
        chunk = examples[start:start + cfg.batch_size]
        for temp, rows in zip(cfg.temperatures, groups):
            for ex, row in zip(chunk, rows):
                for k, (text, logprob) in enumerate(row):
                    rationale = clean_rationale(text)
                    if not rationale or (ex.id, rationale) in seen:
                        continue
                    seen.add((ex.id, rationale))
                    out.append(Candidate(id=f"{ex.id}#it{iteration}-t{temp:g}-{k}", example_id=ex.id,
                                         answer=ex.answer, rationale=rationale, iteration=iteration,
                                         temperature=temp, logprob=logprob, model=model_name))
    return out


def explain(vlm: VLM, examples: Sequence[Example], cfg: SamplingConfig, iteration: int = 0, model_name: str = "",
            progress: bool = True) -> list[Candidate]:
    """Evaluation: the model's own greedy answer, then its greedy rationale for that answer (batches
    shared out among processes, when there are several)."""
    from .distributed import processes

    procs = processes()
    bar = tqdm(total=len(examples), desc="answering and explaining", unit="question",
               disable=not progress or not procs.is_main)

    def one(start: int) -> list[Candidate]:
        chunk = examples[start:start + cfg.eval_batch_size]
        answers = [parse_answer(g[0]) for g in vlm.generate(
            [(ex.image, answer_prompt(ex, cfg.answer_template), None) for ex in chunk], max_new_tokens=6)]
        rows = vlm.generate_scored([(ex.image, rationale_prompt(ex, a, cfg.template), None)
                                    for ex, a in zip(chunk, answers)], max_new_tokens=cfg.max_new_tokens)
        procs.advance(bar, len(chunk))
        return [Candidate(id=f"{ex.id}#eval{iteration}", example_id=ex.id, answer=a,
                          rationale=clean_rationale(row[0][0]), iteration=iteration, temperature=0.0,
                          logprob=row[0][1], model=model_name) for ex, a, row in zip(chunk, answers, rows)]

    out = [c for part in procs.map(one, list(range(0, len(examples), cfg.eval_batch_size))) for c in part]
    bar.close()
    return out
