"""Center rules: how a master folds its clients' updates into the central
model, and what it answers each client."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from ..backends import ModelBackend
from ..flat import Message
from .rules import elastic_exchange, mean_of


class CenterRule(Protocol):
    # The Keras optimizer this rule steps (its state is checkpointed, its learning rate scaled), or None.
    optimizer: Any

    def absorb(self, updates: Sequence[tuple[int, Message]]) -> None:
        """Fold updates (slot, message) into the central model: one for
        asynchronous masters, one per client for synchronous ones."""

    def reply(self, slot: int, out: Message) -> None:
        """Write the answer for the client in `slot` into out.payload."""


class _Center:
    def __init__(self, backend: ModelBackend) -> None:
        self.backend = backend
        self.layout = backend.layout
        self.center = np.empty(self.layout.size, dtype=np.float32)
        self.scratch = np.empty(self.layout.size, dtype=np.float32)
        self.optimizer: Any = None

    def reply(self, slot: int, out: Message) -> None:
        self.backend.get_weights(out.payload)


class OptimizerCenter(_Center):
    """Downpour and sync: gradients (averaged over the clients of one round)
    go through the model's optimizer; layer-state deltas are averaged in."""

    def __init__(self, backend: ModelBackend) -> None:
        super().__init__(backend)
        self.optimizer = backend.model.optimizer

    def absorb(self, updates: Sequence[tuple[int, Message]]) -> None:
        if len(updates) == 1:
            payload = updates[0][1].payload
        else:
            payload = mean_of([m.payload for _, m in updates], self.scratch)
        n = self.layout.num_trainable
        self.backend.apply_gradients(payload[:n])
        if self.layout.num_state:
            self.backend.add_state(payload[n:])


class DeltaCenter(_Center):
    """GEM, and the top of a Downpour tree: clients send weight deltas, which
    are added to the central weights as they are."""

    def absorb(self, updates: Sequence[tuple[int, Message]]) -> None:
        self.backend.get_weights(self.center)
        for _, message in updates:
            self.center += message.payload
        self.backend.set_weights(self.center)


class ElasticCenter(_Center):
    """EASGD: clients send their weights; each client and the center move
    toward each other by alpha times their difference."""

    def __init__(self, backend: ModelBackend, alpha: float, slots: int) -> None:
        super().__init__(backend)
        self.alpha = alpha
        self.diffs = [np.zeros(self.layout.size, dtype=np.float32) for _ in range(slots)]

    def absorb(self, updates: Sequence[tuple[int, Message]]) -> None:
        self.backend.get_weights(self.center)
        elastic_exchange(self.center, [m.payload for _, m in updates], self.alpha, [self.diffs[s] for s, _ in updates])
        self.backend.set_weights(self.center)

    def reply(self, slot: int, out: Message) -> None:
        np.copyto(out.payload, self.diffs[slot])


class OuterCenter(_Center):
    """DiLoCo's outer step: pseudo-gradients go through the outer optimizer.
    Synchronous: their mean over the round, Nesterov SGD, as in the paper.
    Asynchronous: each one as it arrives, divided by the number of clients,
    so that a round of N arrivals moves the weights as far as one plain
    synchronous step. Layer state moves by the same (scaled) differences."""

    def __init__(self, backend: ModelBackend, optimizer: Any, clients: int, synchronous: bool) -> None:
        super().__init__(backend)
        self.outer = optimizer
        self.scale = 1.0 if synchronous else 1.0 / clients

    def absorb(self, updates: Sequence[tuple[int, Message]]) -> None:
        if len(updates) > 1:
            payload = mean_of([m.payload for _, m in updates], self.scratch)
        elif self.scale != 1.0:
            payload = np.multiply(updates[0][1].payload, np.float32(self.scale), out=self.scratch)
        else:
            payload = updates[0][1].payload
        n = self.layout.num_trainable
        self.backend.apply_gradients(payload[:n], self.outer)
        if self.layout.num_state:
            self.backend.add_state(np.negative(payload[n:], out=self.scratch[n:]))
