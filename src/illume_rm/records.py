"""The three record types that flow between stages, and their JSONL files.

Every stage reads and writes plain records so that any stage can be run,
inspected or replaced alone. Writes are atomic (a temporary file in the same
folder, then a rename), so a killed process never leaves half a file behind.
A malformed line is a :class:`UserError` naming the file and the line.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Type, TypeVar

from .errors import UserError

T = TypeVar("T")


@dataclass
class Example:
    """A question about an image (or about nothing, for text-only data)."""

    id: str
    question: str
    answers: list[str]
    image: str | None = None
    explanations: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def answer(self) -> str:
        """The main answer: the first annotator's."""
        return self.answers[0]


@dataclass
class Candidate:
    """One sampled (answer, rationale) for an example."""

    id: str
    example_id: str
    answer: str
    rationale: str
    iteration: int = 0
    temperature: float = 0.0
    logprob: float = 0.0
    model: str = ""


@dataclass
class Judgement:
    """Whether a judge accepted a candidate, with the judge's score."""

    candidate_id: str
    accepted: bool
    score: float
    selector: str
    time: float = field(default_factory=time.time)


RECORD_TYPES = {"example": Example, "candidate": Candidate, "judgement": Judgement}


def _check_types(cls: type, obj: Any, where: str) -> None:
    """Light type checks so a wrong field type fails at the line, not deep in a stage."""
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for name, value in obj.items():
        hint = str(hints[name])
        if hint == "str" and not isinstance(value, str):
            raise UserError(f"{where}: field '{name}' must be a string, got {type(value).__name__}")
        if hint.startswith("list") and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise UserError(f"{where}: field '{name}' must be a list of strings")
        if hint == "str | None" and value is not None and not isinstance(value, str):
            raise UserError(f"{where}: field '{name}' must be a string or null")
        if hint == "bool" and not isinstance(value, bool):
            raise UserError(f"{where}: field '{name}' must be true or false")
        if hint in ("float", "int") and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"{where}: field '{name}' must be a number")
        if hint.startswith("dict") and not isinstance(value, dict):
            raise UserError(f"{where}: field '{name}' must be an object")


def from_dict(cls: Type[T], obj: Any, where: str = "record") -> T:
    """Build a record from a parsed JSON object; unknown or missing fields are errors."""
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(obj) - names)
    if unknown:
        raise UserError(f"{where}: unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - set(obj))
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(missing)} for {cls.__name__}")
    _check_types(cls, obj, where)
    return cls(**obj)


def to_dict(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)


def iter_jsonl(path: str | os.PathLike, cls: Type[T]) -> Iterator[T]:
    """Yield records from a JSONL file; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{where}: not UTF-8 text (byte {exc.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
            except RecursionError:
                raise UserError(f"{where}: JSON nested too deeply") from None
            yield from_dict(cls, obj, where)


def read_jsonl(path: str | os.PathLike, cls: Type[T]) -> list[T]:
    return list(iter_jsonl(path, cls))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text so that readers see the old file or the new one, never half of one."""
    path = Path(path)
    blocked = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
    if blocked is not None and blocked != path:
        raise UserError(f"cannot write {path}: {blocked} is a file, not a folder")
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-{os.getpid()}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_TEMP = re.compile(r"^\..+\.tmp-(\d+)(?:-.*)?$")


def write_tree_atomic(dst: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """Write the folder ``dst`` with ``write(tmp)`` so that readers see no ``dst`` or a whole one (a
    temporary ``.NAME.tmp-PID`` folder beside it, renamed; ``remove_stale_temps`` clears one a killed
    writer left)."""
    dst = Path(dst)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)


def copy_tree_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy the folder ``src`` to ``dst``, atomically (``write_tree_atomic``)."""
    write_tree_atomic(dst, lambda tmp: shutil.copytree(src, tmp))


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove what a killed process left half-written under ``folder``: the hidden temporary files and
    folders of atomic writes (``.NAME.tmp-PID...``) whose process is gone. Returns what was removed."""
    removed = []
    for p in sorted(Path(folder).rglob(".*.tmp-*"), key=lambda p: -len(p.parts)):
        m = _TEMP.match(p.name)
        if not m or _alive(int(m.group(1))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """Atomically write records as JSONL; returns how many were written."""
    lines = [json.dumps(to_dict(r), ensure_ascii=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
