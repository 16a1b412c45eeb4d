"""Sharded parameter servers (--servers S): server ranks 0..S-1 each hold one
slice of the central weights and run the master loop on it, with the model's
optimizer cloned onto the slice (its own state, the same fused path).

A slice is server i's share of the trainable part of the flat vector plus
its share of the layer state: two contiguous ranges, so every server has
trainable weights to step (`shard_ranges`). Rank 0 also validates, calls
back and writes outputs: at each epoch end, and when training ends, the other
servers send it their slices and it puts the full weights into its model.
Nothing is assembled on the hot path.

Checkpoints: with checkpoints on, each slice travels with its optimizer's
state, and rank 0 writes the state of the whole vector (`merge_state`: the
slices' per-parameter variables put end to end, the scalars once), so that a
resumed run can cut it again for any number of servers (`split_state`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..backends import ModelBackend, for_model
from ..checkpoint import optimizer_values
from ..comm import Communicator, Tag
from ..comm.topology import shard_bounds
from ..config import RunConfig
from ..flat import DTYPE, FlatLayout
from .checkpointer import restore_state

Range = tuple[int, int]


def shard_ranges(layout: FlatLayout, servers: int, index: int) -> tuple[Range, Range]:
    """Server `index`'s trainable and layer-state ranges of the flat vector."""
    trainable = shard_bounds(layout.num_trainable, servers, index)
    start, stop = shard_bounds(layout.num_state, servers, index)
    return trainable, (layout.num_trainable + start, layout.num_trainable + stop)


def slice_layout(ranges: tuple[Range, Range]) -> FlatLayout:
    (t0, t1), (s0, s1) = ranges
    return FlatLayout(((t1 - t0,),), ((s1 - s0,),) if s1 > s0 else ())


def gather_slice(flat: np.ndarray, ranges: tuple[Range, Range], out: np.ndarray) -> None:
    """out (a slice's length) = the two ranges of the full vector `flat`."""
    (t0, t1), (s0, s1) = ranges
    out[: t1 - t0] = flat[t0:t1]
    out[t1 - t0 :] = flat[s0:s1]


def scatter_slice(piece: np.ndarray, ranges: tuple[Range, Range], flat: np.ndarray) -> None:
    """Inverse of gather_slice: write a slice's values into the full vector."""
    (t0, t1), (s0, s1) = ranges
    flat[t0:t1] = piece[: t1 - t0]
    flat[s0:s1] = piece[t1 - t0 :]


def merge_state(per_slice: Sequence[Sequence[np.ndarray]], sizes: Sequence[int]) -> list[np.ndarray]:
    """One optimizer state for the whole trainable vector from the slices'
    (same optimizer, same variable order): per-parameter variables (the
    slice's length) end to end, scalars (iterations, rate) from slice 0."""
    merged = []
    for values in zip(*per_slice):
        if all(v.shape == (n,) for v, n in zip(values, sizes)):
            merged.append(np.concatenate(values))
        else:
            merged.append(values[0])
    return merged


def split_state(merged: Sequence[np.ndarray], total: int, bounds: tuple[int, int]) -> list[np.ndarray]:
    """Slice `bounds` of the trainable vector's state made by merge_state."""
    start, stop = bounds
    return [v[start:stop] if v.shape == (total,) else v for v in merged]


class SliceModel:
    """What a backend needs of a model, for one slice: its trainable values
    as one flat variable, its layer state as another, and a fresh copy of the
    model's optimizer (same class, hyperparameters and schedule) built on it."""

    def __init__(self, model: Any, values: np.ndarray, layout: FlatLayout) -> None:
        import keras

        n = layout.num_trainable
        self.trainable_variables = [keras.Variable(values[:n], trainable=True, name="slice")]
        self.non_trainable_weights = (
            [keras.Variable(values[n:], trainable=False, name="slice_state")] if layout.num_state else []
        )
        optimizer = model.optimizer
        self.optimizer = type(optimizer).from_config(optimizer.get_config())
        self.optimizer.build(self.trainable_variables)


class Shard:
    """One server's slice: its backend for the center rule, and the epoch-end
    hand-over of slices to rank 0."""

    def __init__(self, comm: Communicator, backend: ModelBackend, servers: tuple[int, ...]) -> None:
        self.comm, self.full, self.servers = comm, backend, servers
        self.index = servers.index(comm.rank)
        layout = backend.layout
        self.ranges = [shard_ranges(layout, len(servers), i) for i in range(len(servers))]
        self.layout = slice_layout(self.ranges[self.index])
        weights = np.empty(layout.size, dtype=DTYPE)
        backend.get_weights(weights)
        mine = np.empty(self.layout.size, dtype=DTYPE)
        gather_slice(weights, self.ranges[self.index], mine)
        self.backend = for_model(SliceModel(backend.model, mine, self.layout))
        # A slice as sent to rank 0, with one more float: 1 for the last one, after training.
        self.outgoing = np.empty(self.layout.size + 1, dtype=DTYPE)
        self.sending = self.sending_state = comm.NULL_REQUEST
        # With checkpoints on, the optimizer that steps this slice (None: the rule has none) and, on rank 0,
        # the state of every slice at the last epoch end.
        self.optimizer: Any = None
        self.sizes = [t1 - t0 for (t0, t1), _ in self.ranges]
        self.states: list[list[np.ndarray]] = []

    def attach(self, optimizer: Any, config: RunConfig, restored: Sequence[np.ndarray] | None, where: str) -> None:
        """The rule's optimizer of this slice, whose state checkpoints keep; on
        resume (every server at once) rank 0 sends each server its part of the
        checkpoint's state `restored`, and each puts it into its optimizer."""
        if optimizer is None:
            return
        self.optimizer = optimizer if config.checkpoint.enabled else None
        if not config.checkpoint.resume:
            return
        total = sum(self.sizes)
        if self.index == 0:
            merged = list(restored or [])
            for index, server in enumerate(self.servers[1:], start=1):
                self.comm.send_object(
                    split_state(merged, total, self.ranges[index][0]) if merged else [], server, Tag.SLICE_STATE
                )
            mine = split_state(merged, total, self.ranges[0][0]) if merged else []
        else:
            mine = self.comm.recv_object(self.servers[0], Tag.SLICE_STATE)[0]
        restore_state(optimizer, self.backend, mine, Path(where), config.algorithm)

    def _state(self) -> list[np.ndarray]:
        if self.optimizer is None:
            return []
        self.backend.sync_optimizer()
        return optimizer_values(self.optimizer)

    def checkpoint_values(self) -> list[np.ndarray]:
        """Rank 0: the optimizer state of the whole vector at the last epoch end."""
        return merge_state(self.states, self.sizes) if self.states and self.states[0] else []

    def hand_over(self, last: bool = False) -> None:
        """A server other than rank 0: send its slice to rank 0, which takes
        it at the same epoch end (or at the end); the send completes in the background."""
        self.comm.wait_all([self.sending, self.sending_state])
        self.backend.get_weights(self.outgoing[:-1])
        self.outgoing[-1] = 1.0 if last else 0.0
        self.sending = self.comm.isend(self.outgoing, self.servers[0], Tag.SLICE)
        if self.optimizer is not None:
            self.sending_state = self.comm.isend_object(self._state(), self.servers[0], Tag.SLICE_STATE)

    def assemble(self, last: bool = False) -> None:
        """Rank 0: the full central weights into its model, from every slice:
        each other server's next one (one per epoch end), or at the end its
        last one (after any epoch ends rank 0 did not validate, having stopped)."""
        weights = np.empty(self.full.layout.size, dtype=DTYPE)
        self.backend.get_weights(self.outgoing[:-1])
        scatter_slice(self.outgoing[:-1], self.ranges[0], weights)
        self.states = [self._state()]
        for index, server in enumerate(self.servers[1:], start=1):
            piece = np.empty(slice_layout(self.ranges[index]).size + 1, dtype=DTYPE)
            while True:
                self.comm.wait(self.comm.irecv(piece, source=server, tag=Tag.SLICE))
                state = self.comm.recv_object(server, Tag.SLICE_STATE)[0] if self.optimizer is not None else []
                if not last or piece[-1] == 1.0:
                    break
            scatter_slice(piece[:-1], self.ranges[index], weights)
            self.states.append(state)
        self.full.set_weights(weights)

    def finish(self) -> None:
        """After the loop: the final slices reach rank 0's model."""
        if self.index == 0:
            self.assemble(last=True)
        else:
            self.hand_over(last=True)
            self.comm.wait_all([self.sending, self.sending_state])
