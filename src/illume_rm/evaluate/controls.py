"""Controls of a warm-up: does the model look at the image, and what does it read there?

- ``swap_images``: each question asked of another scene's image. A family whose
  accuracy does not fall is answered from the text alone.
- ``grounding_accuracy``: "What is in <cell>?" on occupied and on empty cells,
  and "Where is <object>?", greedy, exact answer (from ``meta.grounding``).
- ``as_text``: the scene given as text in place of the image (an upper bound on
  what perception can buy; the same language model reads it from the first step).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from ..records import Example
from ..vlm.base import ANSWER_TEMPLATE, VLM, parse_answer
from .accuracy import normalize

GROUNDING_IMAGES = 100  # images whose grounding questions are asked (9 cells + each object's place)


def swap_images(examples: Sequence[Example]) -> list[Example]:
    """The same questions, each with the image of the next distinct scene (none keeps its own)."""
    images = list(dict.fromkeys(ex.image for ex in examples if ex.image))
    if len(images) < 2:
        return list(examples)
    other = {img: images[(i + 1) % len(images)] for i, img in enumerate(images)}
    return [dataclasses.replace(ex, image=other[ex.image]) if ex.image else ex for ex in examples]


def grounding_items(examples: Sequence[Example], limit: int = GROUNDING_IMAGES) -> list[tuple[str, str, str, str]]:
    """(image, question, answer, kind) for the first ``limit`` images' grounding questions;
    kind: what_occupied, what_empty or where."""
    out, seen = [], set()
    for ex in examples:
        if not ex.image or ex.image in seen or not ex.meta.get("grounding"):
            continue
        seen.add(ex.image)
        if len(seen) > limit:
            break
        for question, answer in ex.meta["grounding"]:
            kind = "where" if question.startswith("Where") else ("what_empty" if answer == "nothing" else "what_occupied")
            out.append((ex.image, question, answer, kind))
    return out


def grounding_accuracy(vlm: VLM, examples: Sequence[Example], limit: int = GROUNDING_IMAGES,
                       batch_size: int = 128) -> dict[str, float]:
    """Exact-answer accuracy of each kind of grounding question (empty when the data has none)."""
    from tqdm.auto import tqdm

    items = grounding_items(examples, limit)
    hits: dict[str, list[int]] = {}
    for start in tqdm(range(0, len(items), batch_size), desc="grounding questions", unit="batch",
                      disable=len(items) <= batch_size, leave=False):
        chunk = items[start:start + batch_size]
        gens = vlm.generate([(img, ANSWER_TEMPLATE.format(question=q), None) for img, q, _, _ in chunk],
                            max_new_tokens=8)
        for (_, _, answer, kind), g in zip(chunk, gens):
            hits.setdefault(kind, []).append(int(normalize(parse_answer(g[0])) == normalize(answer)))
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


def as_text(ex: Example, cell_places: str = "before", count: bool = False) -> Example:
    """The example with its scene written as text before the question (laid out as the image tokens
    are: ``cell_places``, and with ``count`` the count token's " objects: <n>."), and no image."""
    from ..data.shapes import scene_text

    return dataclasses.replace(ex, image=None,
                               question=f"{scene_text(ex.meta['scene'], cell_places, count)} {ex.question}")


def can_write_as_text(examples: Sequence[Example]) -> bool:
    from ..data import cell_words

    return bool(examples) and all(cell_words(ex, 3) is not None for ex in examples)
