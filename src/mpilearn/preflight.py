"""Checks on rank 0 before training: cheap, one clear line, nothing written.

What can only fail later, after minutes of training (a shape mismatch in the
loss, an output path that cannot be written), is checked here instead:
output paths, the model's outputs against the labels, the loss against the
labels, the validation data against the training data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .data.sources import Signature
from .errors import ConfigError, DataError

_CLASS_ID_LOSSES = ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_paths(config: Any, run_dir: str) -> None:
    """--timeline's directory exists and is writable; --tensorboard's can be made."""
    if config.timeline:
        parent = Path(config.timeline).parent
        if not parent.is_dir():
            raise ConfigError(f"--timeline {config.timeline}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise ConfigError(f"--timeline {config.timeline}: directory {parent} is not writable")
    board = getattr(config.callbacks, "tensorboard", "")
    if board:
        target = Path(board.replace("{run_dir}", run_dir))
        existing = _nearest_existing(target)
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            raise ConfigError(f"--tensorboard {board}: {existing} is not a writable directory")


def _largest(source: Any) -> list[int] | None:
    largest = getattr(source, "largest_labels", None)
    return largest() if largest is not None else None


def check_outputs_fit_labels(model: Any, source: Any, where: str, counted: bool) -> None:
    """Each model output against its target: one-hot or regression width, or
    (class-id labels) room for the largest class id. `counted`: the class
    counts came from the labels themselves (nothing to check for ids)."""
    outputs = getattr(model, "outputs", None) or []
    signature: Signature = source.signature
    if not outputs or len(outputs) != len(signature.label_shapes):
        return  # subclassed or torch-module models: Keras checks at the first batch
    ids = set(signature.class_id_targets)
    largest: list[int] | None = None
    for target, (tensor, shape) in enumerate(zip(outputs, signature.label_shapes)):
        produced = tuple(tensor.shape[1:])
        name = f" {signature.label_names[target]!r}" if len(outputs) > 1 and signature.label_names else ""
        if target in ids:
            width = produced[-1] if produced else 1
            if counted or width is None or width <= 1:
                continue
            if largest is None:
                largest = _largest(source)
                if largest is None:
                    return
            top = largest[sorted(ids).index(target)]
            if top >= width:
                raise DataError(
                    f"{where}: labels{name} hold class id {top}, but the model's output has {width} classes "
                    f"(--model-arg num_classes={top + 1}?)"
                )
            continue
        if tuple(d for d in produced if d != 1) != tuple(d for d in shape if d != 1) and None not in produced:
            hint = " (--model-arg num_classes?)" if len(shape) == 1 else ""
            raise DataError(
                f"{where}: labels{name} have shape {shape} but the model's output has shape {produced}{hint}"
            )


def check_loss_fits_labels(loss: Any, signature: Signature, where: str) -> None:
    """sparse_categorical_crossentropy wants class ids, not one-hot rows."""
    name = loss if isinstance(loss, str) else type(loss).__name__ if loss is not None else None
    if (
        name in _CLASS_ID_LOSSES
        and not signature.class_id_targets
        and signature.label_shape
        and signature.label_shape[-1] > 1
    ):
        raise DataError(
            f"{where}: labels of shape {signature.label_shape} ({signature.label_dtype}) are one-hot rows, "
            "but sparse_categorical_crossentropy needs class ids (use --loss categorical_crossentropy)"
        )


def _shapes(part: Any) -> list[tuple[int, ...]]:
    if isinstance(part, dict):
        return [tuple(np.shape(v)[1:]) for v in part.values()]
    if isinstance(part, (list, tuple)):
        return [tuple(np.shape(v)[1:]) for v in part]
    return [tuple(np.shape(part)[1:])]


def check_validation_fits_training(validation: Sequence[Any] | None, signature: Signature, where: str) -> None:
    """The validation samples and labels have the training data's shapes."""
    if not isinstance(validation, tuple) or len(validation) < 2:
        return
    inputs, labels = _shapes(validation[0]), _shapes(validation[1])
    if inputs != [tuple(s) for s in signature.sample_shapes]:
        raise DataError(
            f"{where}: validation samples have shape {_one(inputs)} but the training samples "
            f"{_one([tuple(s) for s in signature.sample_shapes])}"
        )
    if [_squeeze(s) for s in labels] != [_squeeze(tuple(s)) for s in signature.label_shapes]:
        raise DataError(
            f"{where}: validation labels have shape {_one(labels)} but the training labels "
            f"{_one([tuple(s) for s in signature.label_shapes])}"
        )


def _squeeze(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _one(shapes: list[tuple[int, ...]]) -> Any:
    return shapes[0] if len(shapes) == 1 else shapes
