"""What the JAX and TensorFlow backends share: which variables make up the
flat vector, and in which order."""
from __future__ import annotations

from typing import Any

from ..flat import FlatLayout


def is_float(variable: Any) -> bool:
    """Layer state worth sending: moving statistics, not seeds or counters."""
    return "float" in str(variable.dtype)


def flat_variables(model: Any) -> tuple[list[Any], list[Any], FlatLayout]:
    """`model.trainable_variables`, the floating-point non-trainable weights,
    and the layout of the two packed one after the other."""
    trainable = list(model.trainable_variables)
    state = [v for v in model.non_trainable_weights if is_float(v)]
    layout = FlatLayout(tuple(tuple(v.shape) for v in trainable), tuple(tuple(v.shape) for v in state))
    return trainable, state, layout

