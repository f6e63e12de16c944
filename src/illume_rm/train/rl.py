"""RL against the rationale reward model, through TRL's GRPO and RLOO trainers.

TRL has no PPO with a value head any more (``PPOTrainer`` went to ``trl.experimental`` and was
deleted); its maintainers point multimodal RL to GRPO. GRPO with ``num_iterations > 1`` is PPO's
clipped surrogate objective with the group's mean reward as the baseline instead of a learned
critic; RLOO is REINFORCE with the leave-one-out mean of the group as the baseline.

The stage starts from an SFT adapter and trains that adapter further; the reference model of the
KL penalty (``beta``) is a frozen copy of the starting adapter, which TRL keeps as a second adapter
("ref") when it is given a PEFT model with a trained adapter. The prompt (``rl.prompt``) is ILLUME's
sampling prompt with the gold answer (``Q: {question} A: {answer}, seeing that``, the image first) and
the completion the rationale, which is what the reward model judges and what evaluation asks for; or
the answer prompt (``Q: {question} A:``), the completion ``{answer}, seeing that {rationale}``, so that
answer correctness can be rewarded too.

Where TRL is used as it is, and where not:
- the built-in VLM meets TRL's interface itself: its processor is a ``ProcessorMixin`` with
  ``apply_chat_template`` (``vlm/processor.py``), ``generate`` returns prompt + completion and
  ``base_model`` is its backbone, with hidden states aligned with ``input_ids`` (``vlm/modeling.py``);
- its LoRA adapters sit on the language model (``train/lora.py``); TRL needs the PEFT model at the
  top, so the adapter is moved there for the stage and back afterwards (``top_level_policy``,
  ``save_policy``): the saved adapter is an ordinary one, loaded like any SFT adapter;
- a Hugging Face VLM's prompts are the conversations ``vlm/hf.py`` writes with its chat template (the
  rationale prompt ends in the assistant's reply begun), so RL trains the format that SFT trained and
  evaluation reads; TRL always asks for a generation prompt, so its copy of the processor continues a
  begun reply instead (``trl_processor``).

Over-optimisation is measured while training (``RLMonitor``): every ``eval_every`` steps, on
held-out val questions, the reward model's score, the gold judge's grounded rate (the scene
oracle, never the reward model), answer accuracy, KL to the start and the rationale length go to
``progress.jsonl``; ``rl.json`` and ``rl.png`` (reward and gold against KL, as Gao et al. plot
reward-model over-optimisation) at the end. Training stops early when the gold judge (else the
reward model's held-out score) has not improved for ``patience`` evaluations, and the adapter kept
is the one of the best evaluation.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from ..compat import checkpointing_off, hide_checkpointing_deprecation
from ..errors import UserError
from ..records import Candidate, Example, atomic_write_text, write_json
from ..vlm.base import answer_prompt, parse_answer
from .lora import require_adapter

RL_ALGORITHMS = ("grpo", "rloo")
ALGORITHMS = ("none", *RL_ALGORITHMS)
LORA_TARGET_RE = r"language_model\..*\.({})"


@dataclass
class RLConfig:
    algorithm: str = "none"          # none (SFT only), grpo or rloo
    steps: int = 30                  # optimiser steps
    prompts_per_step: int = 8        # questions per step
    num_generations: int = 4         # completions per question (the group the baseline is taken over)
    num_iterations: int = 1          # grpo: > 1 reuses each batch of completions with PPO's clipped ratio
    lr: float = 5e-5
    beta: float = 0.04               # KL penalty to the starting adapter (> 0 keeps the reference)
    epsilon: float = 0.2             # the ratio's clip range
    temperature: float = 1.0         # sampling temperature of the rollouts
    max_completion_length: int = 24  # tokens; longer completions are cut (and counted in the log)
    reward_weight: float = 1.0       # the rationale reward model's probability
    answer_weight: float = 0.0       # answer correctness (1 or 0); needs prompt: answer
    # rationale: ILLUME's sampling prompt with the gold answer ("Q: .. A: giraffe, seeing that"), the
    # completion is the rationale; answer: the answer prompt ("Q: .. A:"), the completion is the answer
    # and its rationale (" giraffe, seeing that ..."), so answer correctness can be rewarded too
    prompt: str = "rationale"
    plugins: dict = field(default_factory=dict)  # more scorers: name (as selector.name) -> weight
    reward_model: str | None = None  # a saved reward model (in the loop: the reward judge's current one)
    train_examples: int | None = None  # train questions the prompts are drawn from (None: all)
    eval_every: int = 10             # steps between held-out evaluations (and checkpoints)
    eval_examples: int = 50          # val questions of each evaluation
    patience: int = 2                # evaluations without improvement of the gold judge before stopping (0: never)

    def check(self, where: str = "rl") -> None:
        if self.algorithm not in ALGORITHMS:
            raise UserError(f"{where}.algorithm: unknown value '{self.algorithm}' (choose {', '.join(ALGORITHMS)})")
        if self.beta < 0:
            raise UserError(f"{where}.beta must be >= 0 (the KL penalty's weight), not {self.beta}")
        for name in ("steps", "prompts_per_step", "num_iterations", "max_completion_length", "eval_every",
                     "eval_examples"):
            if getattr(self, name) < 1:
                raise UserError(f"{where}.{name} must be >= 1, not {getattr(self, name)}")
        if self.num_generations < 2:
            raise UserError(f"{where}.num_generations must be >= 2 (the baseline is the group's), "
                            f"not {self.num_generations}")
        if self.algorithm == "rloo" and self.num_iterations != 1:
            raise UserError(f"{where}.num_iterations: only grpo reuses completions (rloo takes 1)")
        if self.prompt not in ("rationale", "answer"):
            raise UserError(f"{where}.prompt: unknown value '{self.prompt}' (choose rationale or answer)")
        if self.answer_weight and self.prompt != "answer":
            raise UserError(f"{where}.answer_weight: with prompt 'rationale' the answer is given (the gold one); "
                            "reward answer correctness with rl.prompt: answer")
        if self.temperature <= 0:
            raise UserError(f"{where}.temperature must be > 0, not {self.temperature}")
        if not isinstance(self.plugins, dict) or not all(isinstance(w, (int, float)) for w in self.plugins.values()):
            raise UserError(f"{where}.plugins must map scorer names to weights, e.g. {{critic: 0.5}}")


# -- completions as candidates ------------------------------------------------------------
def completion_text(completion) -> str:
    """A completion as TRL gives it to reward functions: text, or a list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] if isinstance(m["content"], str)
                   else "".join(p.get("text", "") for p in m["content"]) for m in completion)


def completion_candidate(example_id: str, text: str, k: int = 0, answer: str | None = None) -> Candidate:
    """A completion as a candidate. ``answer`` given (prompt "rationale"): the completion is the
    rationale. Else (prompt "answer"): ``" giraffe, seeing that it has a long neck"`` -> answer
    ``giraffe``, the rationale after "seeing that" (empty when the completion gives none)."""
    from ..sampling import clean_rationale

    text = text.strip()
    if answer is not None:
        rationale = clean_rationale(text)
    else:
        head, sep, tail = text.partition("seeing that")
        answer, rationale = parse_answer(text), clean_rationale(tail) if sep else ""
    return Candidate(id=f"{example_id}#rl-{k}", example_id=example_id, answer=answer, rationale=rationale, model="rl")


def rl_prompt(ex: Example, cfg: RLConfig, sampling) -> str:
    """The text after the image: the rationale prompt with the gold answer, or the answer prompt."""
    from ..sampling import rationale_prompt

    if cfg.prompt == "rationale":
        return rationale_prompt(ex, ex.answer, sampling.template)
    return answer_prompt(ex, sampling.answer_template)


class ScorerReward:
    """A scorer (reward model, answer check, plugin) as a TRL reward function:
    ``f(prompts, completions, example_id=...) -> list[float]``. A completion without a rationale
    gets 0 from a rationale scorer. Checks what the scorer returns: one finite number each."""

    def __init__(self, scorer, examples: Mapping[str, Example], label: str, rationale: bool = True,
                 prompt: str = "rationale"):
        self.scorer, self.examples, self.rationale, self.prompt = scorer, examples, rationale, prompt
        self.__name__ = label  # TRL names the logged reward columns by it

    def candidates(self, example_id, completions) -> list[Candidate]:
        return [completion_candidate(e, completion_text(c), k,
                                     self.examples[e].answer if self.prompt == "rationale" else None)
                for k, (e, c) in enumerate(zip(example_id, completions))]

    def __call__(self, prompts, completions, example_id, **kwargs) -> list[float]:
        cands = self.candidates(example_id, completions)
        scored = [c for c in cands if c.rationale or not self.rationale]
        values = self.scorer.score(self.examples, scored) if scored else []
        values = list(values)
        if len(values) != len(scored):
            raise UserError(f"reward {self.__name__} returned {len(values)} values for {len(scored)} completions")
        bad = [v for v in values if not isinstance(v, (int, float)) or not math.isfinite(float(v))]
        if bad:
            raise UserError(f"reward {self.__name__} returned a value that is not a finite number ({bad[0]!r})")
        it = iter(values)
        return [float(next(it)) if (c.rationale or not self.rationale) else 0.0 for c in cands]


def reward_functions(cfg: RLConfig, reward_scorer, examples: Mapping[str, Example]) -> tuple[list, list[float]]:
    """The reward model's probability, answer correctness and plugin scorers, with their weights."""
    from ..selectors import make_scorer
    from ..selectors.critic import AnswerCorrect

    funcs, weights = [], []
    if cfg.reward_weight:
        funcs.append(ScorerReward(reward_scorer, examples, "reward_model", prompt=cfg.prompt))
        weights.append(float(cfg.reward_weight))
    if cfg.answer_weight:
        funcs.append(ScorerReward(AnswerCorrect(), examples, "answer_correct", rationale=False, prompt=cfg.prompt))
        weights.append(float(cfg.answer_weight))
    for name, w in cfg.plugins.items():
        funcs.append(ScorerReward(make_scorer(name), examples, f"plugin_{name}".replace(":", "_").replace(".", "_"),
                                  rationale=False, prompt=cfg.prompt))
        weights.append(float(w))
    if not funcs:
        raise UserError("rl: every reward weight is 0 (rl.reward_weight, rl.answer_weight, rl.plugins)")
    return funcs, weights


# -- the policy: the SFT adapter, trainable, as a top-level PEFT model ----------------------------
def _is_builtin(vlm) -> bool:
    from ..vlm import BuiltinVLM

    return isinstance(vlm, BuiltinVLM)


def top_level_policy(vlm, adapter: str | Path):
    """The model TRL trains: ``vlm``'s model with the adapter at ``adapter`` loaded trainable, PEFT
    at the top (the built-in VLM's adapter is moved from its language model). ``vlm`` then samples
    and evaluates with the policy as it trains."""
    from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = require_adapter(adapter)
    if not _is_builtin(vlm):
        with hide_checkpointing_deprecation():
            vlm.model = PeftModel.from_pretrained(vlm.model, adapter, is_trainable=True)
        return vlm.model
    spec = json.loads((adapter / "adapter_config.json").read_text())
    targets = spec["target_modules"]
    targets = sorted(targets) if isinstance(targets, (list, set)) else None
    if not targets:
        raise UserError(f"adapter {adapter}: its target modules ({spec['target_modules']!r}) are not a list of names")
    cfg = LoraConfig(r=spec["r"], lora_alpha=spec["lora_alpha"], lora_dropout=spec.get("lora_dropout", 0.0),
                     target_modules=LORA_TARGET_RE.format("|".join(targets)))
    vlm.model.requires_grad_(False)
    with hide_checkpointing_deprecation():
        policy = get_peft_model(vlm.model, cfg)
    nested = load_file(str(adapter / "adapter_model.safetensors"))
    moved = {k.replace("base_model.model.", "base_model.model.language_model.", 1): v for k, v in nested.items()}
    result = set_peft_model_state_dict(policy, moved)
    if result.unexpected_keys:
        raise UserError(f"adapter {adapter} does not fit this model ({len(result.unexpected_keys)} unknown weights, "
                        f"e.g. {result.unexpected_keys[0]})")
    return policy


def save_policy(policy, vlm, start_adapter: Path, out: Path) -> None:
    """The trained adapter, written (atomically) in the form SFT adapters have."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    if _is_builtin(vlm):
        tmp.mkdir(parents=True)
        state = get_peft_model_state_dict(policy, adapter_name="default")
        nested = {k.replace("base_model.model.language_model.", "base_model.model.", 1): v.detach().cpu().contiguous()
                  for k, v in state.items()}
        save_file(nested, str(tmp / "adapter_model.safetensors"))
        shutil.copy(start_adapter / "adapter_config.json", tmp / "adapter_config.json")
    else:
        policy.save_pretrained(tmp, selected_adapters=["default"], save_embedding_layers=False)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def trl_processor(vlm):
    """The processor TRL renders prompts with. A Hugging Face VLM's own, with one change: TRL always
    asks for a generation prompt, and a prompt that ends in the assistant's reply begun (``giraffe,
    seeing that``, as ``vlm/hf.py`` writes the rationale prompt) must be continued instead; this copy
    of the processor continues such a reply (the smallest point at which TRL does not serve)."""
    if _is_builtin(vlm):
        return vlm.processor
    import copy

    from transformers import ProcessorMixin

    if not isinstance(vlm.processor, ProcessorMixin):
        raise UserError(f"{vlm.name}: RL needs a Hugging Face processor (a ProcessorMixin) with images")
    proc = copy.copy(vlm.processor)
    render = vlm.processor.apply_chat_template

    def apply_chat_template(conversation, *args, add_generation_prompt=False, continue_final_message=False, **kw):
        convs = conversation if conversation and isinstance(conversation[0], list) else [conversation]
        if all(c and c[-1]["role"] == "assistant" for c in convs):
            add_generation_prompt, continue_final_message = False, True
        return render(conversation, *args, add_generation_prompt=add_generation_prompt,
                      continue_final_message=continue_final_message, **kw)

    proc.apply_chat_template = apply_chat_template
    return proc


def prompt_messages(vlm, ex: Example, cfg: RLConfig, sampling) -> list[dict]:
    """The dataset's prompt: for a Hugging Face VLM the conversation ``vlm/hf.py`` writes (the user's turn
    with an image placeholder TRL fills, the reply begun); for the built-in VLM its prompt text."""
    if _is_builtin(vlm):
        return [{"role": "user", "content": rl_prompt(ex, cfg, sampling)}]
    from ..vlm.hf import chat_messages

    return chat_messages(rl_prompt(ex, cfg, sampling), has_image=True)


# -- held-out measurements ---------------------------------------------------------------------
def _sequence_kl(vlm, policy, items: Sequence, temperature: float, max_new_tokens: int) -> float:
    """Mean over questions of log pi(y|x) - log pi_ref(y|x) for one completion y sampled from the
    policy (a sequence-level Monte-Carlo estimate of KL(pi || pi_ref)); pi_ref is the "ref" adapter."""
    from trl.trainer.utils import use_adapter

    rows = vlm.generate(items, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature)
    scored = [(img, p, " " + row[0]) for (img, p, _), row in zip(items, rows)]
    with torch.no_grad():
        pol = vlm.target_logprobs(scored)
        with use_adapter(policy, adapter_name="ref" if "ref" in policy.peft_config else None):
            ref = vlm.target_logprobs(scored)
    return float(sum(a - b for a, b in zip(pol, ref)) / max(1, len(pol)))


@dataclass
class Measure:
    step: int
    reward: float        # the reward model's mean probability on the greedy val rationales
    gold: float | None   # the oracle's grounded rate on them (None without scene graphs)
    accuracy: float
    kl: float
    length: float        # mean rationale length, words
    seconds: float = 0.0


class RLMonitor:
    """Held-out measurements every ``eval_every`` steps; keeps the best adapter; stops early.
    (A TrainerCallback: see ``callback``.)"""

    def __init__(self, vlm, policy, scorer, val: Sequence[Example], cfg: RLConfig, folder: Path,
                 start_adapter: Path, sampling, log: Callable[[str], None]):
        self.vlm, self.policy, self.scorer, self.val, self.cfg = vlm, policy, scorer, list(val), cfg
        self.folder, self.start_adapter, self.sampling, self.log = folder, start_adapter, sampling, log
        self.path = folder / "progress.jsonl"
        self.history: list[Measure] = []
        if self.path.exists():
            self.history = [Measure(**json.loads(line)) for line in self.path.read_text().splitlines() if line.strip()]
        self.stopped = ""

    def target(self, m: Measure) -> float:
        return m.gold if m.gold is not None else m.reward

    @property
    def best(self) -> Measure | None:
        return max(self.history, key=self.target) if self.history else None

    def measure(self, step: int) -> Measure:
        import time

        from ..evaluate.runner import evaluate_candidates
        from ..sampling import explain

        if any(m.step == step for m in self.history):
            return next(m for m in self.history if m.step == step)
        t0 = time.perf_counter()
        was = self.policy.training
        self.policy.eval()
        torch.manual_seed(step)
        cands = explain(self.vlm, self.val, self.sampling, iteration=step, model_name=f"rl-step{step}", progress=False)
        by_id = {ex.id: ex for ex in self.val}
        with_r = [c for c in cands if c.rationale]
        probs = self.scorer.score(by_id, with_r) if with_r else []
        metrics = evaluate_candidates(self.val, cands, False)
        items = [(ex.image, rl_prompt(ex, self.cfg, self.sampling), None) for ex in self.val]
        kl = _sequence_kl(self.vlm, self.policy, items, self.cfg.temperature, self.cfg.max_completion_length)
        self.policy.train(was)
        m = Measure(step=step, reward=float(sum(probs) / len(cands)) if cands else 0.0,
                    gold=metrics.get("grounded_rate"), accuracy=metrics["answer_accuracy"], kl=kl,
                    length=sum(len(c.rationale.split()) for c in cands) / max(1, len(cands)),
                    seconds=time.perf_counter() - t0)
        improved = self.best is None or self.target(m) > self.target(self.best)
        self.history.append(m)
        atomic_write_text(self.path, "".join(json.dumps(asdict(h)) + "\n" for h in self.history))
        if improved:
            save_policy(self.policy, self.vlm, self.start_adapter, self.folder / "best-adapter")
        gold = "n/a" if m.gold is None else f"{m.gold:.3f}"
        self.log(f"rl step {step}: reward model {m.reward:.3f}, gold grounded {gold}, accuracy {m.accuracy:.3f}, "
                 f"KL {m.kl:.3f}, rationale {m.length:.1f} words" + ("  (best so far)" if improved else ""))
        return m

    def should_stop(self) -> bool:
        p = self.cfg.patience
        if p <= 0 or len(self.history) <= p:
            return False
        best_step = self.best.step
        since = [h for h in self.history if h.step > best_step]
        if len(since) >= p:
            what = "the gold judge" if self.history[-1].gold is not None else "the reward model's held-out score"
            self.stopped = (f"{what} has not improved for {p} evaluation(s) since step {best_step}")
            return True
        return False

    def callback(self):
        from transformers import TrainerCallback

        monitor = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                monitor.measure(state.global_step)

            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step % monitor.cfg.eval_every == 0 or state.global_step >= state.max_steps:
                    monitor.measure(state.global_step)
                    if monitor.should_stop():
                        control.should_training_stop = True
                        control.should_save = False
                return control

        return _Callback()


def _trainer_args(cfg: RLConfig, out: Path, seed: int, device: torch.device):
    common = dict(
        output_dir=str(out), max_steps=cfg.steps, learning_rate=cfg.lr, beta=cfg.beta, epsilon=cfg.epsilon,
        per_device_train_batch_size=cfg.prompts_per_step * cfg.num_generations, gradient_accumulation_steps=1,
        num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature, logging_steps=1, save_strategy="steps", save_steps=cfg.eval_every,
        save_only_model=False, report_to=[], seed=seed, data_seed=seed, bf16=False, fp16=False,
        **checkpointing_off(), use_cpu=device.type == "cpu", disable_tqdm=False,
        remove_unused_columns=False, lr_scheduler_type="constant", warmup_steps=0,
        dataloader_num_workers=0, log_completions=False,
    )
    if cfg.algorithm == "grpo":
        from trl import GRPOConfig

        return GRPOConfig(**common, num_iterations=cfg.num_iterations)
    from trl import RLOOConfig

    return RLOOConfig(**common)


def make_trainer(vlm, policy, prompts: Sequence[Example], funcs: list, weights: list[float], cfg: RLConfig, sampling,
                 out: Path, seed: int, callbacks: Sequence = ()):
    """TRL's GRPO or RLOO trainer over ``prompts`` (one row each: the prompt, its image, its id)."""
    from datasets import Dataset

    dataset = Dataset.from_list([{"prompt": prompt_messages(vlm, ex, cfg, sampling), "image": ex.image,
                                  "example_id": ex.id} for ex in prompts])
    args = _trainer_args(cfg, out, seed, vlm.device)
    args.reward_weights = weights
    if cfg.algorithm == "grpo":
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOTrainer as Trainer
    return Trainer(model=policy, reward_funcs=funcs, args=args, train_dataset=dataset,
                   processing_class=trl_processor(vlm), callbacks=list(callbacks))


def _last_checkpoint(out: Path) -> str | None:
    """TRL's latest checkpoint under ``out`` (``checkpoint-N``, the largest N), or None."""
    steps = [p for p in out.glob("checkpoint-*") if p.name.split("-", 1)[1].isdigit()]
    return str(max(steps, key=lambda p: int(p.name.split("-", 1)[1]))) if steps else None


def heldout_val(val: Sequence[Example], evaluated: int | None, n: int) -> list[Example]:
    """The val questions RL measures itself on (and stops early by): the ``n`` after the ``evaluated``
    ones the loop reports, so no reported number is of questions RL was selected on."""
    start = evaluated or 0
    held = list(val[start:start + n])
    if len(held) < n:
        raise UserError(f"rl.eval_examples: {n} held-out val questions are needed after the {start} that are "
                        f"evaluated (sampling.eval_examples), and val has {len(val)}")
    return held


def check_reward_fits(reward_dir: Path, data_key: str | None, warm_up: Path | None) -> None:
    """A reward model trained on another dataset, or on another warm-up model's candidates, is refused."""
    meta = json.loads((reward_dir / "reward.json").read_text())
    origin = meta.get("origin") or {}
    if data_key and origin.get("data") and origin["data"] != data_key:
        raise UserError(f"reward model {reward_dir} was trained on other data ({origin.get('data_name', '?')}, "
                        f"key {origin['data']}) than this run's (key {data_key})")
    if warm_up is not None and origin.get("warm_up") and Path(origin["warm_up"]).resolve() != Path(warm_up).resolve():
        raise UserError(f"reward model {reward_dir} was trained on candidates of another model "
                        f"({origin['warm_up']}), not of {warm_up}")


def run_rl(vlm, start_adapter: Path, reward_dir: Path, train: Sequence[Example], val: Sequence[Example],
           cfg: RLConfig, out: Path, sampling, seed: int = 0, log: Callable[[str], None] = print,
           data_key: str | None = None, warm_up: Path | None = None) -> dict:
    """RL from ``start_adapter`` against the reward model at ``reward_dir``; writes ``out/adapter``
    (the best evaluation's), ``out/rl.json`` and ``out/rl.png``; resumes from TRL's last checkpoint."""
    import random

    from ..reward import NEEDS_VLM, load_reward, reward_kind

    cfg.check()
    if cfg.algorithm == "none":
        raise UserError("rl.algorithm is none: choose grpo or rloo")
    if (out / "rl.json").exists() and (out / "adapter" / "adapter_config.json").exists():
        return json.loads((out / "rl.json").read_text())
    reward_dir = Path(reward_dir)
    if not (reward_dir / "reward.json").is_file():
        raise UserError(f"reward model {reward_dir} does not exist (no reward.json there)")
    check_reward_fits(reward_dir, data_key, warm_up)
    require_adapter(start_adapter)  # refused before anything is written
    out.mkdir(parents=True, exist_ok=True)
    reader = None
    if reward_kind(reward_dir) in NEEDS_VLM:  # a reward model that reads the warm-up VLM gets its own copy
        from ..vlm import load_vlm

        reader = load_vlm(vlm.path, device=str(vlm.device))
    scorer = load_reward(reward_dir, vlm=reader)
    by_id = {ex.id: ex for ex in train} | {ex.id: ex for ex in val}
    funcs, weights = reward_functions(cfg, scorer, by_id)
    prompts = list(train)
    if cfg.train_examples is not None and cfg.train_examples < len(prompts):
        prompts = random.Random(seed).sample(prompts, cfg.train_examples)
    if any(ex.image is None for ex in prompts):
        raise UserError("rl: every training question needs its image")
    policy = top_level_policy(vlm, start_adapter)
    monitor = RLMonitor(vlm, policy, scorer, val[: cfg.eval_examples], cfg, out, start_adapter, sampling, log)
    trainer = make_trainer(vlm, policy, prompts, funcs, weights, cfg, sampling, out / "trl", seed,
                           callbacks=[monitor.callback()])
    resume = _last_checkpoint(out / "trl")
    log(f"RL ({cfg.algorithm}): {cfg.steps} steps of {cfg.prompts_per_step} questions x {cfg.num_generations} "
        f"completions, beta {cfg.beta}, rewards " + ", ".join(f"{f.__name__} x{w:g}" for f, w in zip(funcs, weights))
        + (f"; resuming from {resume}" if resume else ""))
    with hide_checkpointing_deprecation():  # TRL reads it at every generation
        trainer.train(resume_from_checkpoint=resume)
    logs = [h for h in trainer.state.log_history if "loss" in h or "reward" in h]
    best = monitor.best
    # the adapter kept: the best evaluation's (the start's, if RL never beat it)
    shutil.rmtree(out / "adapter", ignore_errors=True)
    os.replace(out / "best-adapter", out / "adapter")
    report = {
        "algorithm": cfg.algorithm, "config": asdict(cfg), "start_adapter": str(start_adapter),
        "reward_model": str(reward_dir), "reward_weights": {f.__name__: w for f, w in zip(funcs, weights)},
        "steps_run": trainer.state.global_step, "stopped": monitor.stopped or f"reached {trainer.state.global_step} steps",
        "best_step": best.step, "evaluations": [asdict(h) for h in monitor.history],
        "train_log": [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in logs],
        "truncated_completions": _mean_of(logs, "completions/clipped_ratio"),
        "mean_completion_length": _mean_of(logs, "completions/mean_length"),
    }
    plot_rl(report, out / "rl.png")
    write_json(out / "rl.json", report)
    shutil.rmtree(out / "trl", ignore_errors=True)  # checkpoints are for resuming an unfinished stage
    log(f"RL done ({report['stopped']}): kept step {best.step}'s adapter "
        f"(gold {best.gold if best.gold is None else round(best.gold, 3)}, reward model {best.reward:.3f}, KL {best.kl:.3f})")
    return report


def _mean_of(logs: list[dict], key: str) -> float | None:
    vals = [h[key] for h in logs if isinstance(h.get(key), (int, float))]
    return sum(vals) / len(vals) if vals else None


def plot_rl(report: dict, path: Path) -> None:
    """Reward-model score and gold grounded rate against KL to the start (one point per evaluation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = report["evaluations"]
    if not ev:
        return
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    kl = [max(e["kl"], 0.0) for e in ev]
    ax.plot(kl, [e["reward"] for e in ev], "o-", label="reward model (proxy)")
    if ev[0]["gold"] is not None:
        ax.plot(kl, [e["gold"] for e in ev], "s-", label="oracle grounded rate (gold)")
    ax.plot(kl, [e["accuracy"] for e in ev], "^--", alpha=0.6, label="answer accuracy")
    for e, x in zip(ev, kl):
        ax.annotate(str(e["step"]), (x, e["reward"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("KL(policy || start), nats per answer (val)")
    ax.set_ylabel("score on held-out val")
    ax.set_title(f"{report['algorithm'].upper()} against the reward model (labels: step)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
