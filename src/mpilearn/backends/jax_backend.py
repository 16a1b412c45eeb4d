"""Keras on JAX: gradients from `jax.value_and_grad` of the model's stateless
call, compiled once per batch shape with `jax.jit`.

JAX arrays are immutable, so every step returns new values (gradients, layer
state, optimizer slots) and the Keras variables are re-pointed at them. Flat
vectors cross into JAX as one array and are cut inside jit: assigning numpy
arrays variable by variable costs ~30x more than assigning JAX arrays.
"""

from __future__ import annotations

import contextlib

import os
from typing import Any, Callable, Sequence

import jax
import numpy as np

from .base import FlatBackend

# XLA's CPU client sizes its thread pool from the process's CPU affinity when
# it starts and offers no thread-count option (jax-ml/jax#1539). This flag
# only keeps Eigen-emitted kernels single-threaded. XLA aborts on unknown
# `--` flags, and the often quoted `intra_op_parallelism_threads=1` (no
# dashes) is silently ignored by current jaxlib.
SINGLE_THREAD_FLAG = "--xla_cpu_multi_thread_eigen=false"


def _client_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # moved in another jax release: assume it has
        return True


def random_state_kept() -> Any:
    """Nothing to keep: JAX has no global random state: Keras's JAX ops take explicit keys."""
    return contextlib.nullcontext()


def set_threads(threads: int) -> None:
    """Cap XLA's CPU threads as far as JAX allows.

    XLA_FLAGS is read once, when the CPU client starts; building a Keras model
    starts it, so in a normal run this comes too late and does nothing (the
    flag has to be in the environment before jax is imported). The effective
    cap for JAX is the CPU affinity of the process (`mpiexec -bind-to core`,
    `srun --cpu-bind=cores`, `taskset`).
    """
    if threads != 1 or _client_started():
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {SINGLE_THREAD_FLAG}".strip()


def _private(flat: np.ndarray) -> np.ndarray:
    """A copy of a host vector for a jitted call. On CPU, JAX may alias a
    numpy argument's memory instead of copying it (jax-ml/jax#37830) and runs
    the call after returning (async dispatch), so the caller's buffer, reused
    at once for the next receive or gradient sum, would change under it."""
    return np.array(flat, copy=True)


def _values(variables: Sequence[Any]) -> list[Any]:
    return [v.value for v in variables]


def _assign(variables: Sequence[Any], values: Sequence[Any]) -> None:
    for variable, value in zip(variables, values):
        variable.assign(value)


def _pieces(flat: Any, variables: Sequence[Any]) -> list[Any]:
    """Inside jit: `flat` cut into the variables' shapes and dtypes (static slices)."""
    out = []
    offset = 0
    for variable in variables:
        size = int(np.prod(variable.shape, dtype=np.int64))
        out.append(flat[offset : offset + size].reshape(variable.shape).astype(variable.dtype))
        offset += size
    return out


class KerasModelBackend(FlatBackend):
    def __init__(self, model: Any) -> None:
        super().__init__(model)
        # Every non-trainable variable, seed-generator states included, so
        # dropout draws new masks each step as in model.fit.
        self._non_trainable = list(model.non_trainable_variables)
        everything = self.trainable + self.state
        self._unflatten = jax.jit(lambda flat: _pieces(flat, everything))
        self._add = jax.jit(lambda state, delta: [s + d for s, d in zip(state, _pieces(delta, self.state))])
        self._gradients = jax.jit(self._loss_and_gradients)

    def get_weights(self, out: np.ndarray) -> None:
        offset = 0
        for variable in self.trainable + self.state:
            value = np.asarray(variable.value)  # on CPU a view of the device buffer
            out[offset : offset + value.size] = value.reshape(-1)
            offset += value.size

    def set_weights(self, flat: np.ndarray) -> None:
        _assign(self.trainable + self.state, self._unflatten(_private(flat)))

    def add_state(self, delta: np.ndarray) -> None:
        if self.state:
            _assign(self.state, self._add(_values(self.state), _private(delta)))

    def _loss_and_gradients(
        self, trainable: list[Any], non_trainable: list[Any], x: Any, y: Any, sample_weight: Any
    ) -> tuple[Any, list[Any], list[Any]]:
        """Traced once per batch shape: batch loss, gradients, new layer state."""

        def loss(trainable: list[Any]) -> tuple[Any, list[Any]]:
            # Keras's own stateless forward pass and compute_loss, as model.fit
            # uses them (add_loss and regularisation losses included). No
            # metric or optimizer variables are passed in: compute_loss writes
            # no metric, and the loss is taken unscaled (as the torch backend
            # differentiates it), so the optimizer's loss scale is never used.
            # Not tracing them keeps one trace per batch shape, whether or not
            # the optimizer and metrics have been built yet.
            _, (unscaled, _, new_non_trainable, _) = self.model.compute_loss_and_updates(
                trainable, non_trainable, [], x, y, sample_weight, training=True, optimizer_variables=[]
            )
            return unscaled, new_non_trainable

        (value, new_non_trainable), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
        # Per-variable gradients, summed into `out` on the host: a jnp.concatenate
        # here makes XLA:CPU fuse it with the weight-gradient dots, ~100x slower.
        return value, grads, new_non_trainable

    def accumulate_gradients(
        self,
        x: Any,
        y: Any,
        out: np.ndarray,
        sample_weight: np.ndarray | None = None,
        ready: Callable[[int], None] | None = None,
        progress: Callable[[], None] | None = None,  # nothing runs in between: one compiled call
    ) -> float:
        loss, grads, non_trainable = self._gradients(
            _values(self.trainable), _values(self._non_trainable), x, y, sample_weight
        )
        _assign(self._non_trainable, non_trainable)
        # One jitted function computes every gradient: none is ready before the others. Copied out
        # last variable first, so that the first buckets' reductions start while the rest are copied.
        end = self.layout.num_trainable
        for index in range(len(grads) - 1, -1, -1):
            grad = np.asarray(grads[index]).reshape(-1)
            out[end - grad.size : end] += grad
            end -= grad.size
            if ready is not None:
                ready(index)
        return float(loss)

    def compile_step(self, optimizer: Any) -> Callable[..., Any]:
        """`optimizer.stateless_apply` on the flat gradients, jitted."""
        trainable = self.trainable

        def step(slots: list[Any], flat: Any, values: list[Any]) -> tuple[list[Any], list[Any]]:
            return optimizer.stateless_apply(slots, _pieces(flat, trainable), values)

        return jax.jit(step)

    def apply_gradients(self, grads: np.ndarray, optimizer: Any = None) -> None:
        optimizer = optimizer or self.model.optimizer
        trainable, slots = self.step_for(optimizer)(
            _values(optimizer.variables), _private(grads), _values(self.trainable)
        )
        _assign(self.trainable, trainable)
        _assign(optimizer.variables, slots)
