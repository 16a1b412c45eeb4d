"""The contract every backend module fulfils, and what the backends share.

As in Keras's own `keras/src/backend/common`, the parts that do not depend on
the framework live once, here: which variables make up the flat vector and in
which order (`flat_variables`), the cache of compiled optimizer steps
(`FlatBackend.step_for`), and the defaults of the optimizer hooks. A backend
module subclasses `FlatBackend` as `KerasModelBackend` and offers the
module-level functions `set_threads(threads)` and, when its framework has
models of its own, `is_module(obj)`, `wrap_module(obj, input_shape)` and
`outputs_logits(model)`.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

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
    # Apply the model's own optimizer through a faster equivalent path where the
    # backend has one (torch's fused kernels); False keeps Keras's implementation.
    fast_optimizer: bool

    def get_weights(self, out: np.ndarray) -> None:
        """Write all variables into `out` (shape `(layout.size,)`)."""

    def set_weights(self, flat: np.ndarray) -> None:
        """Load all variables from `flat` (shape `(layout.size,)`)."""

    def add_state(self, delta: np.ndarray) -> None:
        """Add `delta` (shape `(layout.num_state,)`) to the layer state variables."""

    # (start, end) in time.time() of the last backward pass of accumulate_gradients(ready=...), where the
    # backend can tell it apart from the forward pass (the timeline draws it); None elsewhere.
    last_backward: tuple[float, float] | None

    def accumulate_gradients(
        self,
        x: Any,
        y: Any,
        out: np.ndarray,
        sample_weight: np.ndarray | None = None,
        ready: Callable[[int], None] | None = None,
        progress: Callable[[], None] | None = None,
    ) -> float:
        """One forward/backward pass in training mode: add the loss gradients
        to `out` (shape `(layout.num_trainable,)`) and return the batch loss.
        x and y are arrays, or lists/dicts of arrays for several inputs or
        outputs; `sample_weight` (one number a sample) weights the loss as in
        `model.fit(sample_weight=...)`. Layer state (moving statistics) is
        updated as in `model.fit`.

        `ready(i)` is called once for every trainable variable i, as soon as
        its gradient is in `out`: on torch from inside backward (gradient
        hooks), so that the caller can start reducing the last layers'
        gradients while the first layers' are still being computed; on JAX
        and TensorFlow (one compiled gradient function) as each gradient is
        copied out, last variable first. `progress()`, where the backend can,
        is called between the operations of backward (torch), so that the
        reductions under way keep moving while it runs."""

    def apply_gradients(self, grads: np.ndarray, optimizer: Any = None) -> None:
        """One step of `optimizer` (default: the model's compiled one) with flat `grads`.
        A backend may apply the model's own optimizer through a faster
        equivalent path; sync_optimizer then brings its Keras variables up to date."""

    def sync_optimizer(self) -> None:
        """Write any fast-path optimizer state into the Keras optimizer's variables."""

    def reload_optimizer(self) -> None:
        """Take the Keras optimizer's variables as the fast path's state (after a restore)."""


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


class FlatBackend:
    """What every backend's `KerasModelBackend` shares: the flat variables,
    one compiled optimizer step per optimizer, and no fast-path optimizer
    state to sync unless a subclass keeps some."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.trainable, self.state, self.layout = flat_variables(model)
        self.fast_optimizer = False
        self.last_backward: tuple[float, float] | None = None
        self._steps: dict[int, tuple[Any, Callable[..., Any]]] = {}  # id(optimizer) -> (optimizer, compiled step)

    def compile_step(self, optimizer: Any) -> Callable[..., Any]:
        """The framework's compiled `optimizer` step on flat gradients (called once per optimizer)."""
        raise NotImplementedError

    def step_for(self, optimizer: Any) -> Callable[..., Any]:
        """`compile_step(optimizer)`, built once per optimizer; the optimizer is
        built eagerly first, so its slot variables are not created inside a trace.
        The entry holds the optimizer too, so its id is not reused while cached."""
        entry = self._steps.get(id(optimizer))
        if entry is None:
            if not optimizer.built:
                optimizer.build(self.trainable)
            entry = self._steps[id(optimizer)] = (optimizer, self.compile_step(optimizer))
        return entry[1]

    def sync_optimizer(self) -> None:
        """Nothing to do: the step updates the Keras optimizer's own variables."""

    def reload_optimizer(self) -> None:
        """Nothing to do: the step reads the Keras optimizer's own variables."""
