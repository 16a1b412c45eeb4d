"""Downpour SGD (Dean et al. 2012), as in mpi_learn.

A worker accumulates the gradients of `sync_every` batches computed on its
copy of the weights and sends their mean; the master applies each update
with its optimizer as it arrives and answers with its current weights.
Layer state (moving statistics) travels as a delta: what the worker's
batches changed since it last received the central state.
"""
from __future__ import annotations

import numpy as np


def mean_gradient(grad_sum: np.ndarray, batches: int) -> None:
    """Turn a sum over `batches` batches into their mean, in place."""
    if batches > 1:
        grad_sum *= np.float32(1.0 / batches)


def state_delta(current: np.ndarray, base: np.ndarray, out: np.ndarray) -> None:
    """out = current - base: the worker's change of layer state."""
    np.subtract(current, base, out=out)
