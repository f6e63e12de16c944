"""Recipes: YAML files that map onto dataclasses. Unknown keys are errors, and
every field can be overridden on the command line (``--set warmup.steps=50``)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .data import DataConfig
from .errors import UserError
from .reward import RewardConfig
from .sampling import SamplingConfig
from .selectors import Rule
from .sweep import SweepConfig
from .train.finetune import FinetuneConfig
from .train.rl import RLConfig
from .train.warmup import WarmupConfig


@dataclass
class ModelConfig:
    base: str = "builtin"          # "builtin" (shipped weights) or a local model folder
    image_size: int = 192          # built-in VLM: the encoder's input resolution
    image_grid: int = 3            # built-in VLM: image tokens per side (pooled feature map)
    # None or "auto": cuda when available (each process its own GPU under accelerate), else cpu (not part
    # of a cache key: the same model trains anywhere)
    device: str | None = field(default=None, metadata={"shapes_cache": False})
    # built-in VLM: how an image reaches the language model. "words": each grid cell is written as text
    # ("top left: <size> <colour> <shape>, ...") where each slot is a probability-weighted mix of the
    # word embeddings of the slot's words (the LM reads it from the first step); "projected": one
    # continuous token per cell through an MLP, as LLaVA does (the LM must learn to read it)
    image_tokens: Literal["words", "projected"] = "words"
    visual_words: list[list[str]] | None = None  # "words": each slot's words (None: the data's vocabulary)
    # "words": where each cell's place is written. "around" (the default): before and again after its words
    # ("top left: <words> (top left), ..."), so the LM finds a place from its words as easily as the words
    # from their place; "before": "top left: <words>, top middle: ..." (the layout until 2026-11-30, which
    # warm-up caches made before then have: that value keeps their keys); "bare": before and after without
    # the colon and brackets ("top left <words> top left, ...": 70 image tokens against 89, so a step costs
    # less; measured, not the default). README "Each cell's place", "The places bare"
    cell_places: Literal["before", "around", "bare"] = field(default="around", metadata={"hash_unless": "before"})
    # "words": one more image token after the cells, " objects: <n>.", n how many cells hold something (a
    # mix of the number words weighted by the cells' own probabilities of holding something: the cell tokens
    # summed, so the LM reads a count instead of counting). README "A count token"
    count_token: bool = field(default=False, metadata={"hash_default": False})
    # generation (sampling rationales, answering for evaluation) in fp32, or under bfloat16 autocast; "auto":
    # bf16 where the device runs it natively (a CPU with AMX / AVX512-BF16, a GPU with bf16), else fp32.
    # Training has its own (warmup.precision, finetune.precision). benchmarks/generation_precision.py.
    # fp32 by default: under bf16 the demo loop ended 5.8 grounded points lower in 3 matched loops on a
    # CPU with AMX, and was hardly faster there (README, "Generation under bf16")
    precision: Literal["auto", "fp32", "bf16"] = field(default="fp32",
                                                       metadata={"hash_default": False, "shapes_cache": False})


@dataclass
class SelectorConfig:
    name: str = "critic"           # critic | oracle | human | reward | reward:PATH | package.module:name (a plugin)
    rule: Rule = field(default_factory=lambda: Rule(kind="adaptive", threshold=0.7, min_accept=50, floor=0.4))
    require: list[str] = field(default_factory=list)  # further scorers each must give >= 0.5, e.g. [answer]
    # name "reward": the human budget. `seed_judgements` candidates of iteration 0 (stratified by
    # question family and temperature) are judged by `seed_selector` (the people, or a simulated
    # person), a reward model is trained on them, and it judges everything else.
    seed_selector: str = "human"   # human: people in the annotation page; or a simulated person (oracle, critic)
    seed_judgements: int = 100
    refresh: int = 0               # later iterations: this many more judgements where the model is least sure
    judges: int = 1                # human: people who judge each question (k), for their agreement
    reward: RewardConfig = field(default_factory=RewardConfig)


@dataclass
class LoopConfig:
    max_iterations: int = 2
    patience: int = 2              # stop when the val metric has not improved for this many iterations
    metric: str = "CIDEr"          # unfiltered val metric watched by patience


@dataclass
class EvaluationConfig:
    scorer: str = "auto"           # auto (pycocoevalcap when Java is there), coco, or python
    # which answers count as correct for the filtered scores: nlx-gpt (the most common human answer,
    # NLX-GPT's rule) or e-vil (any human's answer, e-ViL's rule); evaluate/accuracy.py
    protocol: Literal["nlx-gpt", "e-vil"] = "nlx-gpt"


@dataclass
class Recipe:
    name: str = "shapes"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    # after each iteration's fine-tuning, optionally RL against the reward model (train/rl.py)
    rl: RLConfig = field(default_factory=RLConfig, metadata={"hash_default": False})
    loop: LoopConfig = field(default_factory=LoopConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    # for `illume-rm compare --recipe`: named variants, each a list of KEY=VALUE overrides of this recipe
    variants: dict[str, list[str]] = field(default_factory=dict)
    # for `illume-rm sweep`: the grid (sweep.py)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def check(self) -> "Recipe":
        """Every name that selects code, checked before any work, with the valid values in the message
        (a typo found after warm-up and sampling costs their time, and the run folder)."""
        from .data import DATASETS
        from .evaluate.nlg import java_available
        from .reward import KINDS
        from .train.finetune import MODES

        def one_of(where: str, value, choices) -> None:
            if value not in choices:
                raise UserError(f"{where}: unknown value '{value}' (choose one of {', '.join(map(str, choices))})")

        one_of("data.name", self.data.name, DATASETS)
        one_of("finetune.mode", self.finetune.mode, MODES)
        for key in ("batch_size", "eval_batch_size"):
            if getattr(self.sampling, key) < 1:
                raise UserError(f"sampling.{key}: {getattr(self.sampling, key)} (questions a call: at least 1)")
        one_of("selector.rule.kind", self.selector.rule.kind, ("threshold", "adaptive", "topk"))
        one_of("selector.reward.kind", self.selector.reward.kind, KINDS)
        if self.selector.reward.threshold_folds == 1 or self.selector.reward.threshold_folds < 0:
            raise UserError(f"selector.reward.threshold_folds: {self.selector.reward.threshold_folds} (0 for the "
                            "held-out quarter, or the number of folds, at least 2)")
        one_of("evaluation.scorer", self.evaluation.scorer, ("auto", "coco", "python"))
        metrics = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
        one_of("loop.metric", self.loop.metric, metrics)
        if self.loop.metric == "METEOR" and (self.evaluation.scorer == "python"
                                             or (self.evaluation.scorer == "auto" and not java_available())):
            raise UserError("loop.metric: METEOR needs pycocoevalcap with Java, which this run will not use "
                            f"(evaluation.scorer: {self.evaluation.scorer}); choose another of {', '.join(metrics)}")
        _check_judge("selector.name", self.selector.name, people=True)
        if self.selector.name == "reward":
            if self.selector.seed_selector == "reward":
                raise UserError("selector.seed_selector: the reward loop's seed is judged by people or a simulated "
                                "person (human, oracle, critic, a plugin), not by the reward loop itself")
            _check_judge("selector.seed_selector", self.selector.seed_selector, people=True)
        for i, name in enumerate(self.selector.require):
            _check_judge(f"selector.require[{i}]", name, people=False)
        self.rl.check()
        if self.rl.algorithm != "none":
            if self.selector.name != "reward" and not self.rl.reward_model:
                raise UserError("rl.algorithm: RL needs a reward model: the reward loop's (selector.name: reward) "
                                "or a saved one (rl.reward_model: FOLDER)")
            if self.rl.reward_model and not (Path(self.rl.reward_model) / "reward.json").is_file():
                raise UserError(f"rl.reward_model: {self.rl.reward_model} holds no trained reward model (no reward.json)")
            for name in self.rl.plugins:
                _check_judge(f"rl.plugins.{name}", name, people=False)
        if not self.sweep.empty():
            self.sweep.check()
        return self

    def use_coco(self) -> bool | None:
        choices = {"auto": None, "coco": True, "python": False}
        if self.evaluation.scorer not in choices:
            raise UserError(f"evaluation.scorer must be auto, coco or python, not '{self.evaluation.scorer}'")
        return choices[self.evaluation.scorer]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self, *sections: str) -> str:
        """A short key of these sections. A field added after keys were first cached (its metadata says
        ``hash_default: False``) is left out while at its default, so old caches keep their keys; one whose
        default changed (``hash_unless: V``) is left out while it is V, the value the old caches were made with."""
        d = _hashable(self)
        picked = {k: d[k] for k in sections} if sections else d
        return hashlib.sha1(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:12]


def _check_judge(where: str, name: str, people: bool) -> None:
    """A judge's name resolves: a built-in, a trained reward model's folder, or a plugin that imports."""
    from .selectors import JUDGES, SCORERS

    builtin = tuple(SCORERS) + (tuple(JUDGES) if people else ())
    if name in builtin:
        return
    if name.startswith("reward:"):
        folder = Path(name.split(":", 1)[1])
        if not (folder / "reward.json").is_file():
            raise UserError(f"{where}: {folder} holds no trained reward model (no reward.json)")
        return
    from .selectors.plugins import load_plugin

    try:
        load_plugin(name)
    except UserError as exc:
        raise UserError(f"{where}: {exc} (built-in judges: {', '.join(builtin)}, or reward:FOLDER)") from None


def _hashable(obj: Any) -> Any:
    """``dataclasses.asdict``, less the fields that hash only when set (see ``Recipe.hash``), with the
    fields that do not shape what is cached (metadata ``shapes_cache: False``) at their defaults."""
    if isinstance(obj, (list, tuple)):
        return type(obj)(_hashable(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _hashable(v) for k, v in obj.items()}
    if not dataclasses.is_dataclass(obj):
        return obj
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if f.metadata.get("shapes_cache") is False:  # where it runs or what is measured, not what is trained
            value = default
        if f.metadata.get("hash_default") is False and value == default:
            continue
        if "hash_unless" in f.metadata and value == f.metadata["hash_unless"]:  # the value old caches were made with
            continue
        out[f.name] = _hashable(value)
    return out


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping")
        return build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise UserError(f"{where}: expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        _, inner = typing.get_args(tp) or (Any, Any)
        return {str(k): _coerce(inner, v, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp) or (Any,)
        return [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # YAML 1.1 reads 1e-4 (no dot in the mantissa) as a string; a float is meant
    if tp is float and isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value.strip()):
        return float(value)
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise UserError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def build(cls: type, values: dict, where: str = "recipe") -> Any:
    """A dataclass from a mapping; unknown keys name themselves and the recipe."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise UserError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def _set(tree: dict, dotted: str, raw: str, where: str) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise UserError(f"{where}: '{dotted}' goes inside a value that is not a mapping")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: malformed YAML value ({getattr(exc, 'problem', None) or 'cannot parse'})") from None
    if re.search(r"(?:^|\s)#", raw) and "#" not in json.dumps(value):
        raise UserError(f"{where}: '#' starts a YAML comment, so '{raw[raw.index('#'):]}' would be dropped: "
                        f"quote the value (e.g. {dotted}='\"{raw}\"')")
    node[keys[-1]] = value


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_tree(p: Path, chain: tuple = ()) -> dict:
    """A recipe file's mapping; ``extends: OTHER.yaml`` (relative to the file) starts from that recipe,
    so a loop recipe names its warm-up recipe instead of copying its sections."""
    if not p.is_file():
        raise UserError(f"recipe {p} does not exist" + (f" (extended by {chain[-1]})" if chain else ""))
    try:
        tree = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: not UTF-8 text (byte {exc.start + 1})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{p}: malformed YAML{at}") from None
    if not isinstance(tree, dict):
        raise UserError(f"{p}: a recipe is a mapping of sections")
    parent = tree.pop("extends", None)
    if parent is None:
        return tree
    if not isinstance(parent, str) or not parent:
        raise UserError(f"{p}: extends: expected the path of another recipe file, got {parent!r}")
    target = (p.parent / parent).resolve()
    if target in chain or target == p.resolve():
        raise UserError(f"{p}: extends {parent}, which extends it back (a cycle)")
    return _merge(_read_tree(target, (*chain, p.resolve())), tree)


def load_recipe(path: str | None = None, overrides: list[str] = ()) -> Recipe:
    """The embedded defaults, then the YAML file (on top of the recipe it ``extends``), then
    ``key=value`` overrides."""
    tree: dict = {}
    where = "recipe"
    if path:
        p = Path(path)
        where = str(p)
        tree = _read_tree(p)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item}: expected KEY=VALUE, e.g. warmup.steps=50")
        key, raw = item.split("=", 1)
        _set(tree, key.strip(), raw, f"--set {item}")
    return build(Recipe, tree, where)


def recipe_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)


def variant_recipes(recipe_path: str, overrides: list[str] = ()) -> list[tuple[str, Recipe]]:
    """The recipe's variants, each resolved: the file, the command-line overrides, then the variant's."""
    base = load_recipe(recipe_path, overrides)
    if not base.variants:
        raise UserError(f"{recipe_path} has no variants to compare (add a 'variants:' section)")
    out = []
    for name, extra in base.variants.items():
        r = load_recipe(recipe_path, [*overrides, *extra, "variants={}"]).check()  # all checked before any runs
        r.name = f"{base.name}-{name}"
        out.append((name, r))
    return out
