"""A compiled model's metric states as one flat vector, so that the states
of disjoint shards of a validation set can be summed.

Keras metrics keep sums in their variables: Mean (the loss tracker, and
every MeanMetricWrapper such as accuracy) keeps a total and a count; AUC,
Precision and Recall keep confusion counts. The variables of disjoint shards
summed, then `result()` once, give what one `model.evaluate` over every
sample gives; averaging the shards' results would not (shards differ in size,
and AUC or precision are not means of per-shard values). Keras records how a
metric variable combines across replicas in its `aggregation` ("sum", the
default of `Metric.add_variable`); a metric with a variable of any other
aggregation cannot be summed, and the run validates on rank 0 instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _variables(model: Any) -> list[Any]:
    return list(model.metrics_variables)


def unsummable(model: Any) -> list[str]:
    """Why this model's validation cannot be combined from shards (empty: it can)."""
    reasons = []
    if _own_test_step(model):
        reasons.append(f"{type(model).__name__} defines its own test_step")
    for metric in _leaf_metrics(model):
        kinds = {str(getattr(v, "aggregation", "sum")) for v in metric.variables}
        if kinds - {"sum"}:
            reasons.append(f"metric {metric.name!r} keeps {'/'.join(sorted(kinds - {'sum'}))} state")
    return reasons


def _own_test_step(model: Any) -> bool:
    for cls in type(model).__mro__:
        if "test_step" in vars(cls):
            return not cls.__module__.startswith("keras.")
    return False


def _leaf_metrics(model: Any) -> list[Any]:
    """The metrics that own variables (a CompileMetrics container lists its members)."""
    leaves: list[Any] = []
    for metric in model.metrics:
        members = getattr(metric, "metrics", None)
        leaves.extend(members if members else [metric])
    return leaves


def collect(model: Any) -> np.ndarray:
    """Every metric variable, in model.metrics_variables order, as float64."""
    values = [np.asarray(v.numpy(), dtype=np.float64).ravel() for v in _variables(model)]
    return np.concatenate(values) if values else np.zeros(0)


def load(model: Any, state: np.ndarray) -> None:
    """Set the metric variables from a (summed) state vector."""
    offset = 0
    for variable in _variables(model):
        size = int(np.prod(variable.shape))
        variable.assign(state[offset : offset + size].reshape(tuple(variable.shape)).astype(variable.dtype))
        offset += size
    if offset != state.size:
        raise ValueError(f"metric state of {state.size} values for {offset} metric variables")


def results(model: Any) -> dict[str, float]:
    """What model.evaluate(return_dict=True) returns, from the current metric states."""
    return {name: float(np.asarray(value)) for name, value in model.get_metrics_result().items()}
