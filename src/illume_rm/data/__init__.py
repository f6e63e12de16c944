"""Datasets as lists of :class:`~illume_rm.records.Example`.

``load_examples(DataConfig(name=...), split)`` is the one entry point:

- ``shapes``: the built-in CLEVR-X-like generator (the default);
- ``easy-vqa``: the `easy-vqa` package, with references written from each image;
- ``vqa-x``, ``act-x``, ``esnlive``: NLX-GPT JSON files (``path``), text-only
  unless ``images`` names a folder;
- ``jsonl``: any JSONL file of Examples (``path``).
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..paths import cache_dir
from ..records import Example, read_jsonl
from .shapes import ShapesConfig

DATASETS = ("shapes", "easy-vqa", "vqa-x", "act-x", "esnlive", "jsonl")
NLX_FILES = {"vqa-x": "vqaX_{split}.json", "act-x": "actX_{split}.json", "esnlive": "esnlive_{split}.json"}


@dataclass
class DataConfig:
    name: str = "shapes"
    path: str | None = None      # NLX-GPT JSON file or folder, or a JSONL file; '{split}' in it is replaced,
                                 # and a single file is split 80/10/10 by example id (a note says so)
    whole_file: bool = field(default=False, metadata={"hash_default": False})  # a single file is the split
                                 # asked for, whole (an official test file as --split test)
    images: str | None = None    # image folder for NLX-GPT data
    limit: int | None = None     # at most this many examples per split
    shapes: ShapesConfig = field(default_factory=ShapesConfig)


def generator_version(cfg: DataConfig) -> int:
    """The version of the code that writes this dataset's questions (what a cache must key on
    besides the config): the shapes generator's; 0 for data read from files."""
    if cfg.name == "shapes":
        from .shapes import GENERATOR_VERSION
        return GENERATOR_VERSION
    return 0


def visual_words(cfg: DataConfig) -> list[list[str]] | None:
    """What the built-in VLM's word-anchored image tokens may say about one grid cell, slot by slot
    (each slot also may say nothing), for data whose scene graphs place objects on the grid (the
    per-cell targets the tokens are trained on; without them word tokens learned nothing measurable);
    None for other data."""
    if cfg.name == "shapes":
        from .scene import COLORS, SHAPES, SIZES
        return [list(SIZES), list(COLORS), [*SHAPES, "nothing"]]
    return None


def cell_words(example: Example, grid: int) -> list[list[str | None]] | None:
    """What each grid cell holds (row by row), in ``visual_words``' slots, from the example's scene graph:
    [size, colour, shape] of its object, or [None, None, "nothing"]; None where the example has no
    scene graph with places on this grid. The per-cell target of the warm-up's image tokens."""
    scene = example.meta.get("scene")
    if not isinstance(scene, dict) or scene.get("grid") != grid:
        return None
    if not all({"row", "col", "size", "color", "shape"} <= set(o) for o in scene.get("objects", [])):
        return None
    cells = {(o["row"], o["col"]): o for o in scene.get("objects", [])}
    out: list[list[str | None]] = []
    for row in range(grid):
        for col in range(grid):
            o = cells.get((row, col))
            out.append([o["size"], o["color"], o["shape"]] if o else [None, None, "nothing"])
    return out


def _check_images(examples: list[Example], where: str) -> None:
    for ex in examples:
        if ex.image is not None and not Path(ex.image).is_file():
            raise UserError(f"{where}: example {ex.id}: image {ex.image} does not exist")


def load_examples(cfg: DataConfig, split: str) -> list[Example]:
    """All examples of one split (``train``, ``val`` or ``test``)."""
    if cfg.name not in DATASETS:
        raise UserError(f"unknown dataset '{cfg.name}' (choose one of {', '.join(DATASETS)})")
    if cfg.path and cfg.name in ("shapes", "easy-vqa"):
        raise UserError(f"a data path ({cfg.path}) is given but the dataset is '{cfg.name}', which reads no file: "
                        "name the dataset, e.g. --set data.name=vqa-x (or act-x, esnlive, jsonl)")
    if cfg.name == "shapes":
        from .shapes import load
        examples = load(split, cfg.shapes, cache_dir())
    elif cfg.name == "easy-vqa":
        from .easyvqa import load
        examples = load(split, limit=cfg.limit)
    elif cfg.name == "jsonl":
        path = _split_path(cfg, split)
        examples = read_jsonl(path, Example)
        _check_images(examples, str(path))
    else:
        from .nlx import load
        examples = load(_split_path(cfg, split), name=cfg.name, images=cfg.images)
    if (cfg.name not in ("shapes", "easy-vqa") and "{split}" not in (cfg.path or "") and Path(cfg.path).is_file()
            and not cfg.whole_file):
        whole = len(examples)
        examples = [ex for ex in examples if _hash_split(ex.id) == split]
        _note_once(f"note: {cfg.path} is one file, split 80/10/10 by example id: its '{split}' part is "
                   f"{len(examples)} of its {whole} examples (--whole-file, or data.whole_file: true, takes "
                   f"the whole file as the '{split}' split)")
    if cfg.limit is not None:
        examples = examples[: cfg.limit]
    return examples


_NOTED: set[str] = set()


def _note_once(text: str) -> None:
    """A note on stderr, once per process (a split is loaded many times in a run)."""
    if text not in _NOTED:
        _NOTED.add(text)
        print(text, file=sys.stderr)


def _hash_split(example_id: str) -> str:
    """A stable 80/10/10 train/val/test split of a single file, by example id."""
    bucket = int(hashlib.sha1(example_id.encode()).hexdigest()[:8], 16) % 10
    return "train" if bucket < 8 else ("val" if bucket == 8 else "test")


def _split_path(cfg: DataConfig, split: str) -> Path:
    if not cfg.path:
        raise UserError(f"dataset '{cfg.name}' needs a path (--data-path FILE)")
    raw = cfg.path.replace("{split}", split)
    path = Path(raw)
    if path.is_dir() and cfg.name in NLX_FILES:
        path = path / NLX_FILES[cfg.name].format(split=split)
    if not path.exists():
        raise UserError(f"dataset '{cfg.name}': {path} does not exist")
    return path
