"""Update rules as small pure functions over flat numpy vectors.

Kept free of MPI and of any backend so each can be checked against values
computed by hand (tests/test_rules.py).
"""

from __future__ import annotations

import math

import numpy as np

GEM_EPSILON = 1e-16
GEM_MAX_SCALE = 5.0  # bound on the GEM rescaling, for numerical stability


def mean_gradient(grad_sum: np.ndarray, batches: int) -> None:
    """Turn a sum over `batches` batches into their mean, in place."""
    if batches > 1:
        grad_sum *= np.float32(1.0 / batches)


def state_delta(current: np.ndarray, base: np.ndarray, out: np.ndarray) -> None:
    """out = current - base: what local batches changed in the layer state."""
    np.subtract(current, base, out=out)


def mean_of(vectors: list[np.ndarray], out: np.ndarray) -> np.ndarray:
    """out = the element-wise mean of `vectors` (same shape)."""
    np.copyto(out, vectors[0])
    for vector in vectors[1:]:
        out += vector
    if len(vectors) > 1:
        out *= np.float32(1.0 / len(vectors))
    return out


def elastic_exchange(center: np.ndarray, workers: list[np.ndarray], alpha: float, diffs: list[np.ndarray]) -> None:
    """EASGD (Zhang, Choromanska, LeCun 2015): for each worker i,
    diff_i = alpha * (x_i - center), computed from the same old center; then
    center += sum_i diff_i, and each worker will do x_i -= diff_i, so worker
    and center move toward each other by alpha times their difference."""
    for worker, diff in zip(workers, diffs):
        np.subtract(worker, center, out=diff)
        diff *= np.float32(alpha)
    for diff in diffs:
        center += diff


def elastic_alpha(force: float, workers: int) -> float:
    """alpha = beta / p, the paper's choice that keeps the center stable."""
    return force / workers


def gem_scale(
    proxy_momentum: np.ndarray, central_moment: np.ndarray, update: np.ndarray, kappa: float, out: np.ndarray
) -> np.ndarray:
    """Gradient Energy Matching (Hermans & Louppe 2018), element-wise:
    pi = clip((kappa * |m| - |c|) / (|u| + eps), 0, 5), where m is the proxy's
    momentum (the step a sequential momentum SGD would take), c the change of
    the central variable already made by others since this worker's last
    exchange, and u this worker's own update. Scaling u by pi makes the
    asynchronous updates together carry the proxy's energy."""
    np.abs(proxy_momentum, out=out)
    out *= np.float32(kappa)
    out -= np.abs(central_moment)
    out /= np.abs(update) + np.float32(GEM_EPSILON)
    np.clip(out, 0.0, GEM_MAX_SCALE, out=out)
    return out


def lr_factor(progress_epochs: float, workers: int, scaling: str, warmup_epochs: float) -> float:
    """Multiplier of the base learning rate after `progress_epochs` epochs.

    scaling: none (1), linear (workers) or sqrt (sqrt(workers)); staleness
    is 1 here (see staleness_factor). With a warmup, the multiplier rises
    linearly over `warmup_epochs`: from 1 to the scaled value (gradual warmup,
    Goyal et al. 2017) when scaling is on, from 0 to 1 when it is off.
    """
    target = {"linear": float(workers), "sqrt": math.sqrt(workers)}.get(scaling, 1.0)
    if warmup_epochs <= 0 or progress_epochs >= warmup_epochs:
        return target
    start = 1.0 if scaling in ("linear", "sqrt") else 0.0
    return start + (target - start) * progress_epochs / warmup_epochs


def staleness_factor(staleness: int) -> float:
    """Staleness-aware rate (Zhang et al. 2016): an update computed on weights
    `staleness` master steps old gets 1/staleness of the rate (1 when fresh)."""
    return 1.0 / max(1, staleness)
