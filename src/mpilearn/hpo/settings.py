"""A trial's values -> the RunConfig it trains with (pure, no Optuna).

A name that matches a training option sets that option; every other name is
a keyword argument of the model builder, merged over --model-arg.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from ..config import AlgorithmConfig, RunConfig
from ..errors import ConfigError

# Algorithm fields that change the process layout, not a hyperparameter.
_LAYOUT_FIELDS = {"name", "masters"}

# Search-space name -> (RunConfig section or "" for RunConfig itself, field).
TRAINING_OPTIONS: dict[str, tuple[str, str]] = {
    "lr": ("model", "learning_rate"),
    "learning_rate": ("model", "learning_rate"),
    "optimizer": ("model", "optimizer"),
    "loss": ("model", "loss"),
    "batch": ("data", "batch_size"),
    "batch_size": ("data", "batch_size"),
    "epochs": ("", "epochs"),
    # Every algorithm knob (--sync-every, --elastic-force, ...), kept in step with AlgorithmConfig.
    **{f.name: ("algorithm", f.name) for f in dataclasses.fields(AlgorithmConfig) if f.name not in _LAYOUT_FIELDS},
}

# Filled in by the command line from the data; a search space may not set them.
RESERVED = {"input_shape", "num_classes"}


def normalize_name(name: str) -> str:
    """`sync-every` and `sync_every` are the same parameter."""
    return name.strip().replace("-", "_")


def split_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(training options, model-builder keyword arguments)."""
    options = {k: v for k, v in settings.items() if k in TRAINING_OPTIONS}
    model_kwargs = {k: v for k, v in settings.items() if k not in TRAINING_OPTIONS}
    return options, model_kwargs


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, so configs pickle and print plainly."""
    return value.item() if hasattr(value, "item") else value


def _coerce(field_type: Any, value: Any, name: str) -> Any:
    """An integer-valued float where an int field expects an int is accepted."""
    if isinstance(value, float) and "int" in str(field_type) and "float" not in str(field_type):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise ConfigError(f"search parameter {name!r} sets an integer option, got {value!r}")
    return value


def apply_settings(base: RunConfig, settings: Mapping[str, Any]) -> RunConfig:
    """The base configuration with a trial's values applied; a bad value is a
    ConfigError from the option's own check (e.g. `--batch must be ...`)."""
    for name in settings:
        if name in RESERVED:
            raise ConfigError(f"search parameter {name!r} is set from the data and cannot be searched")
    options, model_kwargs = split_settings({k: _plain(v) for k, v in settings.items()})
    sections: dict[str, dict[str, Any]] = {"": {}, "model": {}, "data": {}, "algorithm": {}}
    for name, value in options.items():
        section, field_name = TRAINING_OPTIONS[name]
        owner = base if not section else getattr(base, section)
        field_type = {f.name: f.type for f in dataclasses.fields(owner)}[field_name]
        sections[section][field_name] = _coerce(field_type, value, name)
    if model_kwargs:
        merged = {**base.model.model_kwargs, **model_kwargs}
        sections["model"]["model_args"] = tuple(merged.items())
    changes = dict(sections[""])
    for section in ("model", "data", "algorithm"):
        if sections[section]:
            changes[section] = dataclasses.replace(getattr(base, section), **sections[section])
    return base.replace(**changes) if changes else base
