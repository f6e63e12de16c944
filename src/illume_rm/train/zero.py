"""DeepSpeed ZeRO (stage 1 or 2) for the training steps.

Under ``accelerate launch`` with a DeepSpeed config (``zero_stage`` 1 or 2), ``steps.train_steps``
hands its optimiser to a DeepSpeed engine: each process keeps 1/N of the optimiser state (stage 1)
and of the gradients too (stage 2), the engine reduces the gradients (their mean over the processes,
as DDP), clips them and steps; the updated weights are all-gathered, so every process holds the
whole model again after each step. The weights themselves are not partitioned (stage 3 would, and
sampling, which each process runs free, could not use them: FSDP, ``train.fsdp``, shards the layers
while they train). DeepSpeed's own engine forward is not used: the VLM's loss is computed as in
one process, and the engine's ``backward`` and ``step`` take it from there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UserError
from .fsdp import _TRUE


@dataclass(frozen=True)
class ZeroSettings:
    stage: int = 2


_OFF = ("", "none")


def zero_settings(env: dict | None = None) -> ZeroSettings | None:
    """The ZeRO settings accelerate launch put in the environment, or None without DeepSpeed.
    Options not honoured are refused (``UserError``)."""
    env = os.environ if env is None else env
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() not in _TRUE:
        return None
    if env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none").lower() not in _OFF:
        raise UserError("a DeepSpeed config file (deepspeed_config_file) is not read here: give zero_stage in the "
                        "accelerate config (recipes/accelerate/deepspeed-zero2.yaml)")
    stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    if stage not in ("1", "2"):
        raise UserError(f"DeepSpeed ZeRO stage {stage} is not used here: stages 1 and 2 are (stage 3 partitions the "
                        "weights, which sampling needs whole; FSDP shards the layers while they train: "
                        "recipes/accelerate/fsdp.yaml)")
    for key in ("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE"):
        if env.get(key, "none").lower() not in _OFF:
            raise UserError(f"the accelerate config's {key[len('ACCELERATE_DEEPSPEED_'):].lower()}: {env[key]} is not "
                            "supported here (recipes/accelerate/deepspeed-zero2.yaml)")
    if env.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "1") != "1":
        raise UserError("the accelerate config's gradient_accumulation_steps must be 1: each step's batch is the "
                        "recipe's (warmup.micro_batch / finetune.micro_batch split it)")
    clip = env.get("ACCELERATE_GRADIENT_CLIPPING", "1.0").lower()
    if clip not in ("1.0", "1", "none"):
        raise UserError(f"the accelerate config's gradient_clipping: {clip} is not used here: illume-rm clips each "
                        "step's gradient norm at 1.0")
    try:
        import deepspeed  # noqa: F401
    except ImportError as exc:
        raise UserError(f"a DeepSpeed config, but deepspeed does not import ({exc})") from exc
    return ZeroSettings(stage=int(stage))


def engine(model, optimiser, settings: ZeroSettings, max_grad_norm: float):
    """The DeepSpeed engine around ``model`` and ``optimiser`` (a torch optimiser whose param groups,
    and so the learning-rate schedule on them, it keeps), on the process group already set up."""
    import deepspeed

    config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
              "zero_optimization": {"stage": settings.stage}, "gradient_clipping": max_grad_norm,
              "zero_allow_untested_optimizer": True, "steps_per_print": 10 ** 9, "wall_clock_breakdown": False}
    eng, *_ = deepspeed.initialize(model=model, optimizer=optimiser, config=config, dist_init_required=False)
    return eng
