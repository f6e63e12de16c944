"""Where the pinned libraries renamed something they still read by the old name: one place that keeps a
run's log free of their deprecation warnings (about their code, not a user's setting)."""
from __future__ import annotations

import dataclasses
import warnings
from contextlib import contextmanager


@contextmanager
def hide_checkpointing_deprecation():
    """PEFT (wrapping a model) and TRL (unwrapping one for generation) read transformers' deprecated
    ``is_gradient_checkpointing`` property, which warns each time: hide that one warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def checkpointing_off() -> dict:
    """Trainer arguments that turn activation checkpointing off (TRL's configs turn it on by default),
    by the name this transformers takes: ``activation_checkpointing``, or before its rename
    ``gradient_checkpointing`` (the old name now warns)."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": False}
