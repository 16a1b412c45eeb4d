"""The contract every backend module fulfils."""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..flat import FlatLayout


class ModelBackend(Protocol):
    """A compiled Keras model seen as flat float32 vectors.

    The flat order is `model.trainable_variables`, then the floating-point
    `model.non_trainable_weights` (layer state such as BatchNormalization
    moving statistics). Random-seed and metric variables are not part of it:
    they are per-process and not learned.
    """

    model: Any
    layout: FlatLayout

    def get_weights(self, out: np.ndarray) -> None:
        """Write all variables into `out` (shape `(layout.size,)`)."""

    def set_weights(self, flat: np.ndarray) -> None:
        """Load all variables from `flat` (shape `(layout.size,)`)."""

    def add_state(self, delta: np.ndarray) -> None:
        """Add `delta` (shape `(layout.num_state,)`) to the layer state variables."""

    def accumulate_gradients(self, x: Any, y: Any, out: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        """One forward/backward pass in training mode: add the loss gradients
        to `out` (shape `(layout.num_trainable,)`) and return the batch loss.
        x and y are arrays, or lists/dicts of arrays for several inputs or
        outputs; `sample_weight` (one number a sample) weights the loss as in
        `model.fit(sample_weight=...)`. Layer state (moving statistics) is
        updated as in `model.fit`."""

    def apply_gradients(self, grads: np.ndarray, optimizer: Any = None) -> None:
        """One step of `optimizer` (default: the model's compiled one) with flat `grads`.
        A backend may apply the model's own optimizer through a faster
        equivalent path; sync_optimizer then brings its Keras variables up to date."""

    def sync_optimizer(self) -> None:
        """Write any fast-path optimizer state into the Keras optimizer's variables."""

    def reload_optimizer(self) -> None:
        """Take the Keras optimizer's variables as the fast path's state (after a restore)."""
