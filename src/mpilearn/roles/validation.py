"""Validation: model.evaluate over samples streamed from their source (see
data/validation.py), and the metric states of a share of them, which summed
over disjoint shares and loaded back give what one model.evaluate over every
sample gives (see metric_states.py)."""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import numpy as np

from .. import backends, metric_states
from ..data.validation import ValidationReader


def evaluate(model: Any, reader: ValidationReader | None) -> dict[str, float]:
    """Loss and compiled metrics over the reader's samples, as model.evaluate computes them."""
    if reader is None:
        return {}
    logs = _evaluate(model, reader)
    # Evaluate's own logs: a model with its own test_step (a GAN) reports more than its compiled metrics.
    return metric_states.results(model) if logs is None else {key: float(value) for key, value in logs.items()}


def first_sample(source: Any) -> tuple[Any, ...] | None:
    """One validation sample as (x, y[, w]) (None without validation data)."""
    return None if source is None else ValidationReader(source, [], 1, 1).first_sample()


def shard_state(model: Any, reader: ValidationReader) -> np.ndarray:
    """The metric state of this rank's slice (zeros for an empty slice)."""
    _evaluate(model, reader)
    return metric_states.collect(model)


def combine(model: Any, state: np.ndarray) -> dict[str, float]:
    """Results from the sum of every slice's metric state."""
    metric_states.load(model, state)
    return metric_states.results(model)


# Models whose compiled metrics exist (see build_metrics).
_BUILT: weakref.WeakSet[Any] = weakref.WeakSet()


def _evaluate(model: Any, reader: ValidationReader) -> dict[str, Any] | None:
    """Evaluate's logs over the reader's samples (None when there are none: the metrics are reset)."""
    steps = reader.steps
    build_metrics(model, reader)
    if steps == 0:
        model.reset_metrics()
        return None
    with warnings.catch_warnings():
        if steps is None:  # a batch function: Keras warns that its batches ran out, which is expected
            warnings.simplefilter("ignore")
        with backends.random_state_kept():  # validating must not change the training's dropout masks
            logs: dict[str, Any] = model.evaluate(reader.batches(), steps=steps, verbose=0, return_dict=True)
    return logs


def build_metrics(model: Any, reader: ValidationReader) -> None:
    """Keras builds compiled metrics at their first batch: one sample builds
    them, so that every rank has the same metric variables even with nothing
    (or nothing yet) to evaluate."""
    if model not in _BUILT:
        x, y, *weights = reader.first_sample()
        model.evaluate(x, y, sample_weight=weights[0] if weights else None, verbose=0)
        _BUILT.add(model)
