"""FSDP for the training steps: the language model's layers sharded over the processes.

Under ``accelerate launch`` with an FSDP config (``fsdp_version: 2``), ``steps.train_steps`` trains
with each decoder layer (the classes ``fsdp_transformer_layer_cls_to_wrap`` names, else every module
whose class name ends in ``DecoderLayer``) sharded by torch's ``fully_shard``: each process holds a
1/N slice of those layers' parameters, gradients and optimiser state, and a layer's whole parameters
exist only while it runs (all-gathered before, freed after unless ``fsdp_reshard_after_forward`` is
false; gradients reduce-scattered). The other parameters (embeddings, LM head, projector, vision
tower) stay whole on every process, their gradients averaged as in DDP.

Outside the training steps the model is whole again on every process: sampling and evaluation run
free (each process its own number of batches and of decoding steps, which sharded layers could not
take: every all-gather needs every process), as TRL gathers ZeRO-3 weights for generation; saving
sees plain tensors. The sharded layers are copies: the model's own layers give their storage up while
the copies train and get the trained weights back at the end (and for each ``on_eval``).

FSDP needs every process to run each layer the same number of times per step; ``train_steps`` sees to
it (a process whose share of a batch is empty runs one item at weight 0; micro-batches padded to the
same count; the built-in VLM's shared-image prefill, which depends on a process's own share, off).
"""
from __future__ import annotations

import copy
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from ..errors import UserError


@dataclass(frozen=True)
class FsdpSettings:
    layer_classes: tuple[str, ...] = ()     # empty: every "...DecoderLayer"
    reshard_after_forward: bool = True


_TRUE = ("true", "1", "yes")
# accelerate's FSDP options this module does not honour, and the value that asks for nothing
_UNSUPPORTED = {"FSDP_OFFLOAD_PARAMS": "false", "FSDP_ACTIVATION_CHECKPOINTING": "false",
                "FSDP_ACTIVATION_CHECKPOINTING_OFFLOAD": "false"}


def fsdp_settings(env: dict | None = None) -> FsdpSettings | None:
    """The FSDP settings accelerate launch put in the environment, or None without FSDP. Options
    not honoured are refused (``UserError``), not silently dropped."""
    env = os.environ if env is None else env
    if env.get("ACCELERATE_USE_FSDP", "").lower() not in _TRUE:
        return None
    version = env.get("FSDP_VERSION", "1")
    if version != "2":
        raise UserError(f"FSDP version {version} is not used here: set fsdp_version: 2 in the accelerate config "
                        "(torch's fully_shard; recipes/accelerate/fsdp.yaml)")
    for key, off in _UNSUPPORTED.items():
        if env.get(key, off).lower() != off:
            raise UserError(f"the accelerate config's {key.lower()}: {env[key]} is not supported here (FSDP "
                            "shards the layers, nothing more: recipes/accelerate/fsdp.yaml)")
    policy = env.get("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP")
    if policy not in ("TRANSFORMER_BASED_WRAP", "", "None"):
        raise UserError(f"fsdp_auto_wrap_policy {policy} is not supported here: TRANSFORMER_BASED_WRAP (the "
                        "language model's layers) is")
    classes = tuple(c.strip() for c in env.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "").split(",") if c.strip())
    reshard = env.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower()
    return FsdpSettings(layer_classes=classes, reshard_after_forward=reshard in _TRUE)


def find_layers(model: nn.Module, classes: Sequence[str] = ()) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, layer) for each module of ``classes`` (default: class names ending in
    ``DecoderLayer``), outermost only."""
    def wanted(m: nn.Module) -> bool:
        name = type(m).__name__
        return name in classes if classes else name.endswith("DecoderLayer")

    found: list[tuple[nn.Module, str, nn.Module]] = []

    def walk(parent: nn.Module) -> None:
        for attr, child in parent.named_children():
            if wanted(child):
                found.append((parent, attr, child))
            else:
                walk(child)

    walk(model)
    return found


class ShardedLayers:
    """The model's layers swapped for sharded copies while they train (see the module's docstring)."""

    def __init__(self, model: nn.Module, settings: FsdpSettings):
        from torch.distributed.fsdp import fully_shard

        self.layers = find_layers(model, settings.layer_classes)
        if not self.layers:
            what = ", ".join(settings.layer_classes) or "a module whose class name ends in DecoderLayer"
            raise UserError(f"FSDP: the model has no {what} to shard (fsdp_transformer_layer_cls_to_wrap in the "
                            "accelerate config names the layer class)")
        self.copies: list[nn.Module] = []
        # each original parameter -> (index of its layer, its name in the layer)
        self.where: dict[int, tuple[int, str]] = {}
        self.shapes: list[dict[str, torch.Size]] = []
        for i, (parent, attr, layer) in enumerate(self.layers):
            sharded = copy.deepcopy(layer)
            fully_shard(sharded, reshard_after_forward=settings.reshard_after_forward)
            self.copies.append(sharded)
            self.shapes.append({})
            for name, p in layer.named_parameters():
                self.where[id(p)] = (i, name)
                self.shapes[i][name] = p.shape
            _release(layer)  # the copy holds it now
            parent._modules[attr] = sharded

    def describe(self) -> str:
        """What is sharded, and how much of it one process holds."""
        from torch.distributed.tensor import DTensor

        full = sum(n.numel() for shapes in self.shapes for n in shapes.values())
        held = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel()
                   for c in self.copies for p in c.parameters())
        kinds = sorted({type(layer).__name__ for _, _, layer in self.layers})
        return (f"FSDP shards {len(self.layers)} layers ({', '.join(kinds)}; {full:,} parameters): this process "
                f"holds {held:,} of them")

    def groups(self, groups: list[dict]) -> list[dict]:
        """The optimiser's param groups with each layer parameter replaced by its sharded copy."""
        out = []
        for g in groups:
            params = [self._sharded(p) for p in g["params"]]
            out.append({**g, "params": params})
        return out

    def _sharded(self, p: nn.Parameter) -> nn.Parameter:
        if id(p) not in self.where:
            return p
        i, name = self.where[id(p)]
        return self.copies[i].get_parameter(name)

    def _gather_into_originals(self) -> None:
        """Every process: the trained weights back into the model's own layers (one all-gather per
        sharded parameter, in the same order everywhere), which are swapped back in."""
        from torch.distributed.tensor import DTensor

        for (parent, attr, layer), sharded, shapes in zip(self.layers, self.copies, self.shapes):
            own = dict(layer.named_parameters())
            for name, p in sharded.named_parameters():
                full = p.full_tensor() if isinstance(p, DTensor) else p
                own[name].data = full.detach().clone().reshape(shapes[name])
            parent._modules[attr] = layer

    def _shard_again(self) -> None:
        for (parent, attr, layer), sharded in zip(self.layers, self.copies):
            _release(layer)
            parent._modules[attr] = sharded

    @contextmanager
    def gathered(self) -> Iterator[None]:
        """The whole model on every process for the duration (the copies kept, unchanged)."""
        self._gather_into_originals()
        try:
            yield
        finally:
            self._shard_again()

    def close(self) -> None:
        """The trained weights back in the model's own layers for good; the copies dropped."""
        self._gather_into_originals()
        self.copies = []


def _release(layer: nn.Module) -> None:
    """The layer's parameters give their storage up (the same Parameter objects, so the optimiser's
    groups and the caller's references stay valid; ``_gather_into_originals`` fills them again)."""
    for p in layer.parameters():
        p.data = torch.empty(0, dtype=p.dtype, device=p.device)


def clip_grad_norm_(params: Sequence[nn.Parameter], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (2-norm) over parameters some of which are sharded
    (DTensor: each process holds a slice of the gradient) and some whole (the same on every process)."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    sharded = [g.to_local() for g in grads if isinstance(g, DTensor)]
    whole = [g for g in grads if not isinstance(g, DTensor)]
    dev = (sharded + whole)[0].device if grads else torch.device("cpu")
    sq_sharded = sum((s.float().pow(2).sum() for s in sharded), torch.zeros((), device=dev))
    dist.all_reduce(sq_sharded)
    sq_whole = sum((w.float().pow(2).sum() for w in whole), torch.zeros((), device=dev))
    total = (sq_sharded + sq_whole).sqrt()
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in sharded + whole:
        g.mul_(coef.to(g.dtype))
    return total
