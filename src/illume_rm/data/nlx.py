"""VQA-X, ACT-X and e-SNLI-VE in the NLX-GPT JSON format.

The files map an id to ``{"question", "answers", "image_id", "image_name",
"explanation"}`` (VQA-X); ACT-X has no question (NLX-GPT asks "what is this
person doing?") and a single ``answers`` string; e-SNLI-VE has a
``hypothesis`` and a ``label``. Images are attached when the user has them
(``images=DIR``), else the examples are text-only.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..errors import UserError
from ..records import Example

DEFAULT_QUESTIONS = {"act-x": "What is this person doing?"}


def _answers(entry: dict, where: str) -> list[str]:
    raw = entry.get("answers", entry.get("label"))
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        texts = [a["answer"] if isinstance(a, dict) else a for a in raw]
        if all(isinstance(t, str) for t in texts):
            # most frequent first (the main answer), ties in annotator order
            counts = Counter(texts)
            return sorted(texts, key=lambda t: -counts[t])
    raise UserError(f"{where}: no answers")


def load(path: str | Path, name: str = "vqa-x", images: str | Path | None = None,
         limit: int | None = None) -> list[Example]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{name}: annotation file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected an object keyed by question id (NLX-GPT format)")
    image_dir = Path(images) if images is not None else None
    if image_dir is not None and not image_dir.is_dir():
        raise UserError(f"{name}: image folder {image_dir} does not exist")
    examples = []
    for key, entry in data.items():
        where = f"{path}: entry {key}"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected an object")
        question = entry.get("question") or entry.get("hypothesis") or DEFAULT_QUESTIONS.get(name)
        if not question:
            raise UserError(f"{where}: no question")
        expl = entry.get("explanation", [])
        expl = [expl] if isinstance(expl, str) else list(expl)
        image = None
        if image_dir is not None:
            name_ = entry.get("image_name") or entry.get("img_name")
            if not name_:
                raise UserError(f"{where}: no image_name to find in {image_dir}")
            image_path = image_dir / name_
            if not image_path.is_file():
                raise UserError(f"{where}: image {image_path} does not exist")
            image = str(image_path)
        examples.append(Example(
            id=f"{name}-{key}", image=image, question=question, answers=_answers(entry, where),
            explanations=expl, meta={"image_id": str(entry.get("image_id", "")), "source": name},
        ))
        if limit is not None and len(examples) >= limit:
            break
    return examples
