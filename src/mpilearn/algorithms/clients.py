"""Client rules: what a worker (or a sub-master toward the top master) does
locally, what it sends, and how it takes the master's answer."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from ..backends import ModelBackend
from ..errors import NonFiniteLossError
from ..flat import Message
from .rules import gem_scale, mean_gradient, state_delta

if TYPE_CHECKING:
    from ..data.batches import Batch


class ClientRule(Protocol):
    # NaN/infinite loss policy; the worker sets it for --skip-bad-batches.
    guard: LossGuard

    def train(self, batch: Batch, update: Message) -> float | None:
        """Local work on one batch; returns its loss (None: batch skipped)."""

    def fill(self, update: Message, batches: int) -> None:
        """Write the payload of the next message to the master."""

    def absorb(self, reply: Message) -> None:
        """Take the master's answer."""


class LossGuard:
    """Stops on a NaN or infinite loss, or skips (and counts) its batch.

    Skipping needs the batch's gradients apart from the running sum, so
    only then do they go through a scratch buffer first.
    """

    def __init__(self, skip: bool = False, size: int = 0) -> None:
        self.skip = skip
        self.scratch = np.zeros(size, dtype=np.float32) if skip else None

    def accumulate(
        self,
        backend: ModelBackend,
        batch: Batch,
        out: np.ndarray,
        ready: Callable[[int], None] | None = None,
        progress: Callable[[], None] | None = None,
    ) -> float | None:
        """Add the batch's gradients to `out`; None when the batch was skipped. `ready(i)`, `progress()`:
        as in accumulate_gradients, only without skipping (a skipped batch's gradients must not leave)."""
        # Only weighted batches pass sample_weight, so backends without the keyword still train unweighted data.
        weights: dict[str, Any] = {} if batch.sample_weight is None else {"sample_weight": batch.sample_weight}
        if self.scratch is None:
            if ready is not None:
                weights["ready"] = ready
            if progress is not None:
                weights["progress"] = progress
            loss = backend.accumulate_gradients(batch.x, batch.y, out, **weights)
            if not math.isfinite(loss):
                raise NonFiniteLossError(f"loss is {loss}")
            return loss
        self.scratch[:] = 0.0
        loss = backend.accumulate_gradients(batch.x, batch.y, self.scratch, **weights)
        if math.isfinite(loss) and np.isfinite(self.scratch).all():
            out += self.scratch
            return loss
        return None


def _sent(base: np.ndarray, current: np.ndarray) -> None:
    """A delta went out: the next one counts from here. Without --pipeline the answer resets the base
    at once; a pipelined worker fills its next update before it takes this one's answer, and must not
    send the same change twice."""
    np.copyto(base, current)


class _Base:
    def __init__(self, backend: ModelBackend) -> None:
        self.backend = backend
        self.guard = LossGuard()  # replaced by the worker for --skip-bad-batches
        self.layout = backend.layout
        self.weights = np.empty(self.layout.size, dtype=np.float32)
        backend.get_weights(self.weights)
        # Layer state as last received from the master, to send deltas against.
        self.base = self.weights.copy()

    def _current(self) -> np.ndarray:
        self.backend.get_weights(self.weights)
        return self.weights

    def _take_weights(self, reply: Message) -> None:
        self.backend.set_weights(reply.payload)
        np.copyto(self.base, reply.payload)


class GradientClient(_Base):
    """Downpour and sync: the mean gradient of the last batches goes out, the
    master's weights come back; layer state travels as a delta."""

    def train(self, batch: Batch, update: Message) -> float | None:
        return self.guard.accumulate(self.backend, batch, update.trainable)

    def fill(self, update: Message, batches: int) -> None:
        mean_gradient(update.trainable, batches)
        if self.layout.num_state:  # reading the weights costs a pass over the whole model: only when there is state
            n = self.layout.num_trainable
            state_delta(self._current()[n:], self.base[n:], update.state)
            _sent(self.base[n:], self.weights[n:])

    def absorb(self, reply: Message) -> None:
        self.backend.set_weights(reply.payload)
        n = self.layout.num_trainable
        np.copyto(self.base[n:], reply.payload[n:])  # only the layer state is sent against a base


def own_step(backend: ModelBackend, batch: Batch) -> float:
    """One step of the model's own train_step (its own optimizers), for models
    such as GANs that define it; returns the loss it reports."""
    logs = backend.model.train_on_batch(batch.x, batch.y, return_dict=True)
    loss = float(logs.get("loss", sum(float(v) for v in logs.values())))
    if not math.isfinite(loss):
        raise NonFiniteLossError(f"loss is {loss}")
    return loss


class DeltaClient(_Base):
    """Sends how far the local copy moved since the last exchange and takes
    the master's weights: a sub-master toward the top master (Downpour tree),
    or a worker whose model trains through its own train_step."""

    def train(self, batch: Batch, update: Message) -> float | None:
        return own_step(self.backend, batch)

    def fill(self, update: Message, batches: int) -> None:
        np.subtract(self._current(), self.base, out=update.payload)
        _sent(self.base, self.weights)

    absorb = _Base._take_weights


class ElasticClient(_Base):
    """EASGD worker: local steps with its own optimizer; at an exchange it
    sends its weights and moves by the elastic difference the master returns.
    Also the upstream rule of an EASGD sub-master (its center is its weights)."""

    def __init__(self, backend: ModelBackend, optimizer: Any = None, own_train_step: bool = False) -> None:
        super().__init__(backend)
        self.optimizer = optimizer
        self.own_train_step = own_train_step
        self.grads = np.zeros(self.layout.num_trainable, dtype=np.float32)

    def train(self, batch: Batch, update: Message) -> float | None:
        if self.own_train_step:
            return own_step(self.backend, batch)
        self.grads[:] = 0.0
        loss = self.guard.accumulate(self.backend, batch, self.grads)
        if loss is not None:
            self.backend.apply_gradients(self.grads, self.optimizer)
        return loss

    def fill(self, update: Message, batches: int) -> None:
        np.copyto(update.payload, self._current())

    def absorb(self, reply: Message) -> None:
        current = self._current()
        current -= reply.payload  # x_i -= alpha * (x_i - center)
        self.backend.set_weights(current)


class GemClient(_Base):
    """GEM worker: its update is its proxy step rescaled so that the energy of
    all asynchronous updates matches the proxy's (see rules.gem_scale). The
    master adds the update to the central variable.

    The proxy is a momentum SGD at `lr` (the paper's), or, given `optimizer`
    (a copy of the model's compiled one, its state kept across exchanges),
    that optimizer's step on the worker's gradient: its own running
    averages are the proxy's momentum, so the update and the proxy are the
    same step, and energy matching scales it by kappa - |c| / |step|."""

    def __init__(self, backend: ModelBackend, lr: float, momentum: float, kappa: float, optimizer: Any = None) -> None:
        super().__init__(backend)
        n = self.layout.num_trainable
        # learning_rate is set by LearningRateControl under scaling and warmup (the optimizer's, given one).
        self.learning_rate, self.momentum, self.kappa = lr, momentum, kappa
        self.optimizer = optimizer
        self.grads = np.zeros(n, dtype=np.float32)
        self.proxy = np.zeros(n, dtype=np.float32)
        self.central_moment = np.zeros(n, dtype=np.float32)
        self.scale = np.zeros(n, dtype=np.float32)

    def train(self, batch: Batch, update: Message) -> float | None:
        return self.guard.accumulate(self.backend, batch, self.grads)

    def fill(self, update: Message, batches: int) -> None:
        n = self.layout.num_trainable
        mean_gradient(self.grads, batches)
        step = update.trainable
        if self.optimizer is None:
            np.multiply(self.grads, np.float32(self.learning_rate), out=step)
            self.proxy *= np.float32(self.momentum)
            self.proxy += step
            gem_scale(self.proxy, self.central_moment, step, self.kappa, self.scale)
            step *= np.float32(-1.0)  # a delta the master adds
        else:
            # The optimizer's step from the central weights (absorb sets them again from the reply).
            np.copyto(step, self._current()[:n])
            self.backend.apply_gradients(self.grads, self.optimizer)
            np.subtract(self._current()[:n], step, out=step)
            gem_scale(step, self.central_moment, step, self.kappa, self.scale)
        step *= self.scale
        state_delta(self._current()[n:], self.base[n:], update.state)
        _sent(self.base[n:], self.weights[n:])
        self.grads[:] = 0.0

    def absorb(self, reply: Message) -> None:
        n = self.layout.num_trainable
        np.subtract(reply.trainable, self.base[:n], out=self.central_moment)
        self._take_weights(reply)


class DilocoClient(_Base):
    """DiLoCo worker (Douillard et al. 2023, arXiv:2311.08105): inner steps
    with the model's own compiled optimizer (its state kept across rounds);
    at an exchange it sends the pseudo-gradient, the weights at the round's
    start minus the weights now, and starts the next round from the master's
    weights. Layer state travels in the same difference."""

    def __init__(self, backend: ModelBackend) -> None:
        super().__init__(backend)
        self.grads = np.zeros(self.layout.num_trainable, dtype=np.float32)

    def train(self, batch: Batch, update: Message) -> float | None:
        self.grads[:] = 0.0
        loss = self.guard.accumulate(self.backend, batch, self.grads)
        if loss is not None:
            self.backend.apply_gradients(self.grads)
        return loss

    def fill(self, update: Message, batches: int) -> None:
        np.subtract(self.base, self._current(), out=update.payload)
        _sent(self.base, self.weights)

    absorb = _Base._take_weights
