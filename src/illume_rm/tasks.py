"""The heavy stages (sampling, evaluation, fine-tuning, warm-up) as functions of picklable
arguments, each opening its own model. With several processes the main process runs the command
and hands each of these to every process (``distributed.Processes.run``), which share its work
out (batches, or each training batch's items); the others run nothing else, so only the main
process reads and writes run folders. With one process each is a plain call."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .distributed import processes
from .records import Candidate, Example, write_tree_atomic


def open_model(recipe, checkpoint: str | None, adapter: str | None = None):
    """The recipe's base VLM (``checkpoint`` None) or the VLM at ``checkpoint``, with ``adapter``."""
    from .checkpoints import base_vlm
    from .train.lora import load_adapter

    vlm = base_vlm(recipe, checkpoint)
    if adapter:
        load_adapter(vlm, adapter)
    return vlm


def _sample(recipe, checkpoint, adapter, examples, iteration, model_name, seed) -> list[Candidate]:
    from .sampling import sample_candidates

    return sample_candidates(open_model(recipe, checkpoint, adapter), examples, recipe.sampling,
                             iteration=iteration, model_name=model_name, seed=seed)


def _explain(recipe, checkpoint, adapter, examples, iteration, model_name) -> list[Candidate]:
    from .sampling import explain

    return explain(open_model(recipe, checkpoint, adapter), examples, recipe.sampling, iteration=iteration,
                   model_name=model_name)


def _finetune(recipe, checkpoint, train, accepted, seed, out) -> list[float]:
    from .train.finetune import finetune
    from .train.lora import save_adapter

    procs = processes()
    vlm = open_model(recipe, checkpoint)
    losses = finetune(vlm, train, accepted, recipe.finetune, seed=seed,
                      log=print if procs.is_main else (lambda _: None))
    if procs.is_main:  # the adapter appears whole or not at all
        write_tree_atomic(out, lambda tmp: save_adapter(vlm, tmp))
    return losses


def _warmup(recipe, train, val, out) -> dict:
    from .train.warmup import run_warmup

    procs = processes()
    vlm = open_model(recipe, None)
    images = [e.image for e in list(train) + list(val) if e.image]
    if images and hasattr(vlm, "features"):  # computed once, before training (text-only data has none)
        vlm.features.get(images, progress=procs.is_main)
    return run_warmup(vlm, train, val, recipe.warmup, Path(out), seed=recipe.seed,
                      log=print if procs.is_main else (lambda _: None))


def sample(recipe, checkpoint: str, adapter: str | None, examples: Sequence[Example], iteration: int = 0,
           model_name: str = "", seed: int = 0) -> list[Candidate]:
    """``sampling.sample_candidates`` with the model at checkpoint (+ adapter), on every process."""
    return processes().run(_sample, recipe, checkpoint, adapter, list(examples), iteration, model_name, seed)


def explain(recipe, checkpoint: str, adapter: str | None, examples: Sequence[Example], iteration: int = 0,
            model_name: str = "") -> list[Candidate]:
    """``sampling.explain`` (the model's answers and greedy rationales), on every process."""
    return processes().run(_explain, recipe, checkpoint, adapter, list(examples), iteration, model_name)


def finetune(recipe, checkpoint: str, train: Sequence[Example], accepted: Sequence[Candidate], seed: int,
             out: str | Path) -> list[float]:
    """LoRA fine-tuning from checkpoint (data-parallel over the processes); the adapter saved to out."""
    return processes().run(_finetune, recipe, checkpoint, list(train), list(accepted), seed, str(out))


def warmup(recipe, train: Sequence[Example], val: Sequence[Example], out: str | Path) -> dict:
    """The warm-up of the recipe's base VLM (data-parallel); the checkpoint saved to out."""
    return processes().run(_warmup, recipe, list(train), list(val), str(out))
