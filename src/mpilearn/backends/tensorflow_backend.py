"""Keras on TensorFlow: gradients from `tf.GradientTape`, traced into graphs
with `tf.function`.

Variables are `tf.Variable`s that the traced functions update in place
(BatchNormalization statistics and dropout seeds included, as in model.fit).
Flat vectors cross into TF as one tensor and are cut inside a graph: one
eager assign or read per variable costs ~0.3 ms of Python/TF dispatch.
"""

from __future__ import annotations

import contextlib

from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from .base import FlatBackend

# XLA compilation of the gradient step. Off: measured on CPU with one thread,
# batch 32 (`mpilearn train -n 1`), it was slower for both built-in models
# (calo-cnn 45-57 vs 60-83 samples/s, mlp 690-744 vs 965).
JIT_COMPILE = False


def random_state_kept() -> Any:
    """Nothing to keep: Keras's TensorFlow ops draw from Keras's own seed generators, not from TF's global one."""
    return contextlib.nullcontext()


def set_threads(threads: int) -> None:
    """TF's thread pools are fixed once its runtime starts, which building a
    Keras model does: mpilearn.env sets TF_NUM_INTRAOP_THREADS and
    TF_NUM_INTEROP_THREADS before import, so this only acts when TF has not
    started yet."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # "cannot be modified after initialization"
        pass


def _pieces(flat: tf.Tensor, variables: Sequence[Any]) -> list[tf.Tensor]:
    """In a graph: `flat` cut into the variables' shapes and dtypes."""
    sizes = [int(np.prod(v.shape, dtype=np.int64)) for v in variables]
    return [tf.cast(tf.reshape(p, v.shape), v.dtype) for p, v in zip(tf.split(flat, sizes), variables)]


def _assign(variables: Sequence[Any], values: Sequence[tf.Tensor], add: bool = False) -> None:
    for variable, value in zip(variables, values):
        if add:
            variable.assign_add(value)
        else:
            variable.assign(value)


def _concat(tensors: Sequence[Any]) -> tf.Tensor:
    return tf.concat([tf.reshape(tf.cast(t, tf.float32), [-1]) for t in tensors], axis=0)


class KerasModelBackend(FlatBackend):
    def __init__(self, model: Any) -> None:
        super().__init__(model)
        everything = self.trainable + self.state
        self._read = tf.function(lambda: _concat(everything))
        self._write = tf.function(lambda flat: _assign(everything, _pieces(flat, everything)))
        self._add = tf.function(lambda delta: _assign(self.state, _pieces(delta, self.state), add=True))
        # reduce_retracing: the smaller last batch of an epoch gets one
        # shape-generalised trace instead of one per distinct size.
        self._gradients = tf.function(self._loss_and_gradients, reduce_retracing=True, jit_compile=JIT_COMPILE)

    def get_weights(self, out: np.ndarray) -> None:
        if self.layout.size:
            out[...] = self._read().numpy()

    def set_weights(self, flat: np.ndarray) -> None:
        if self.layout.size:
            self._write(tf.constant(flat))  # a copy: `flat` may be reused at once

    def add_state(self, delta: np.ndarray) -> None:
        if self.state:
            self._add(tf.constant(delta))

    def _loss_and_gradients(self, x: Any, y: Any, sample_weight: Any) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            y_pred = self.model(x, training=True)
            loss = self.model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        grads = tape.gradient(loss, self.trainable, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return loss, _concat(grads) if grads else tf.zeros((0,))

    def accumulate_gradients(
        self,
        x: Any,
        y: Any,
        out: np.ndarray,
        sample_weight: np.ndarray | None = None,
        ready: Callable[[int], None] | None = None,
        progress: Callable[[], None] | None = None,  # nothing runs in between: one compiled call
    ) -> float:
        loss, grads = self._gradients(x, y, sample_weight)
        out += grads.numpy()  # one traced function gives the flat gradient at once
        if ready is not None:
            for index in range(len(self.trainable) - 1, -1, -1):
                ready(index)
        return float(loss)

    def compile_step(self, optimizer: Any) -> Callable[..., Any]:
        """`optimizer.apply` on the flat gradients, traced."""
        trainable = self.trainable
        return tf.function(lambda flat: optimizer.apply(_pieces(flat, trainable), trainable))

    def apply_gradients(self, grads: np.ndarray, optimizer: Any = None) -> None:
        self.step_for(optimizer or self.model.optimizer)(tf.constant(grads))
