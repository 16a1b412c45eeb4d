"""Validation spread over the ranks that train (`--validate-on workers`).

Each worker (or allreduce peer) evaluates a contiguous slice of the
validation samples with the same central weights and keeps the metric
states, not the results; the states are summed in rank order and rank 0
computes the results once from the sum, which is what one `model.evaluate`
over every sample gives (see metric_states.py). Rank 0's `Validator` is the
one the supervisor's single epoch-end path calls; the other ranks join in
from their loops.

How the central weights reach the workers (asynchronous and synchronous
masters alike): when the supervisor validates, the master copies its weights
into one snapshot and Isends it to every worker over a second communicator
(`Communicator.duplicate`), so it never meets the training traffic. The
master folds in nothing until the states are back, so every share is
evaluated on that one snapshot. A worker finds the snapshot while it waits
for the master's answer (or, after its last epoch, while it waits for
snapshots until DONE), loads it, evaluates its slice, puts its own weights
back, sends its metric state and waits on. Busy notices go both ways: the
master excuses the workers' waits for its answer, each worker excuses the
master's wait for its state. Peers hold the same weights at every step: each
evaluates its slice and one Reduce sums the states on rank 0.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from .. import metric_states
from ..comm import Communicator, Tag, WaitTimeout
from ..data.sources import Source
from ..data.validation import ValidationReader, sharded, validation_pieces
from ..timeline import Timeline
from .validation import build_metrics, combine, evaluate, shard_state
from .watchdog import BUSY_S, Watchdog


def choose_placement(config: Any, topology: Any, model: Any, source: Source | None) -> tuple[str, list[str]]:
    """Rank 0, before training: "workers" or "master", and why not "workers"
    when it was asked for or would have been the default (logged)."""
    asked = config.validate_on
    if source is None or topology.size == 1 or asked == "master":
        return "master", []
    # auto: measured (benchmarks/validation.py), spreading wins over two or more ranks that train; with one
    # worker it only moves the same work from the master to the worker.
    if asked == "auto" and (config.background_validation or topology.num_workers < 2):
        return "master", []
    reasons = []
    if topology.submasters:
        reasons.append("a tree of masters (--masters) validates on its top master")
    if topology.servers > 1:
        reasons.append("sharded servers (--servers) hold the full weights on rank 0 only")
    if not sharded(source):
        reasons.append("a validation batch function cannot be split between ranks")
    if not reasons:
        try:
            build_metrics(model, ValidationReader(source, [], 1, 1))
        except Exception as exc:  # a user's metric that fails: rank 0's validation reports it, as without spreading
            return "master", [f"building the metrics failed ({type(exc).__name__})"]
        reasons.extend(metric_states.unsummable(model))
    return ("master", reasons) if reasons else ("workers", [])


# ---- peers: one Reduce ------------------------------------------------------


class PeerValidator:
    """Rank 0 of the peers: its slice, then the Reduce the other peers join
    (PeerShare). After training (the final validation) rank 0 evaluates
    every sample alone: the other peers have left."""

    available = True

    def __init__(
        self, model: Any, share: ValidationReader, everything: ValidationReader, comm: Communicator, watchdog: Watchdog
    ) -> None:
        self.model, self.share, self.everything = model, share, everything
        self.comm, self.watchdog = comm, watchdog
        self.together = True

    def evaluate(self, epoch: float) -> dict[str, float]:
        if not self.together:
            return evaluate(self.model, self.everything)
        state = shard_state(self.model, self.share)
        self.comm.reduce_sum(state, 0, self.watchdog.limit())
        return combine(self.model, state)

    def twin(self, model: Any) -> Any:
        raise AssertionError("background validation runs with a master")

    def release(self) -> None:
        self.together = False


class PeerShare:
    """Another peer's part of PeerValidator.evaluate, at the same steps."""

    def __init__(
        self, model: Any, reader: ValidationReader, comm: Communicator, watchdog: Watchdog, timeline: Timeline
    ) -> None:
        self.model, self.reader, self.comm, self.watchdog, self.timeline = model, reader, comm, watchdog, timeline

    def join(self) -> None:
        with self.timeline.span("validate"):
            state = shard_state(self.model, self.reader)
            self.comm.reduce_sum(state, 0, self.watchdog.limit())


# ---- master and workers: one snapshot out, states back --------------------


class WorkersValidator:
    """Rank 0 (the master): the snapshot to every worker, their states summed."""

    available = True

    def __init__(
        self,
        model: Any,
        backend: Any,
        comm: Communicator,
        channel: Communicator,
        clients: Sequence[int],
        watchdog: Watchdog,
        timeline: Timeline,
    ) -> None:
        self.model, self.backend, self.comm, self.channel = model, backend, comm, channel
        self.clients, self.watchdog, self.timeline = tuple(clients), watchdog, timeline
        self.snapshot = np.empty(backend.layout.size, dtype=np.float32)
        self.states = np.zeros((len(self.clients), metric_states.collect(model).size), dtype=np.float64)

    def evaluate(self, epoch: float) -> dict[str, float]:
        with self.timeline.span("validation snapshot"):
            self.backend.get_weights(self.snapshot)
        channel = self.channel
        receives = [
            channel.irecv(self.states[i].view(np.float32), source=c, tag=Tag.STATE) for i, c in enumerate(self.clients)
        ]
        sends = [channel.isend(self.snapshot, c, Tag.SNAPSHOT) for c in self.clients]
        with self.comm.busy_while(BUSY_S, self.clients):  # workers that wait for an answer meanwhile are excused
            for request, client in zip(receives, self.clients):
                started = time.monotonic()
                try:  # a validating worker's busy notice excuses it
                    channel.wait(request, self.watchdog.limit(), awaited=(client,))
                except WaitTimeout:
                    raise self.watchdog.error(
                        f"worker rank {client} (validating)", time.monotonic() - started
                    ) from None
            channel.wait_all(sends)
        return combine(self.model, self.states.sum(axis=0))  # worker order: the same sum every run

    def twin(self, model: Any) -> Any:
        raise AssertionError("background validation validates on rank 0")

    def release(self) -> None:
        """No snapshot follows: the workers that wait for one go on to the end of the run."""
        done = np.zeros(0, dtype=np.float32)
        self.channel.wait_all([self.channel.isend(done, client, Tag.DONE) for client in self.clients])


class WorkerShare:
    """A worker's side: validate each snapshot the master sends, with the
    worker's own weights put back afterwards."""

    def __init__(
        self, model: Any, backend: Any, channel: Communicator, reader: ValidationReader, timeline: Timeline
    ) -> None:
        self.model, self.backend, self.channel, self.reader, self.timeline = model, backend, channel, reader, timeline
        self.snapshot = np.empty(backend.layout.size, dtype=np.float32)
        self.own = np.empty(backend.layout.size, dtype=np.float32)
        self.request = channel.irecv(self.snapshot, source=0)  # SNAPSHOT or DONE

    def validate(self) -> float:
        """The snapshot that arrived; returns the seconds it took (not time spent waiting)."""
        started = time.monotonic()
        with self.channel.busy_while(BUSY_S, (0,)), self.timeline.span("validate"):
            self.backend.get_weights(self.own)
            self.backend.set_weights(self.snapshot)
            state = shard_state(self.model, self.reader)
            self.backend.set_weights(self.own)
            self.channel.wait(self.channel.isend(state.view(np.float32), 0, Tag.STATE))  # rank 0 posted its receive
        self.request = self.channel.irecv(self.snapshot, source=0)
        return time.monotonic() - started

    def serve(self) -> None:
        """After training: validate snapshots until the master says DONE. Unbounded: the
        master may still be serving slower workers (its death ends the job)."""
        while True:
            with self.timeline.span("wait"):
                status = self.channel.wait(self.request)
            if status.Get_tag() == Tag.DONE:
                return
            self.validate()


def parts(
    placement: str,
    config: Any,
    comm: Communicator,
    topology: Any,
    backend: Any,
    source: Source | None,
    node: Any,
    watchdog: Watchdog,
    timeline: Timeline,
) -> tuple[Any, Any]:
    """Every rank's part of the validation: (rank 0's Validator, None) on rank 0
    (None: rank 0 validates alone, InlineValidator), (None, its share) on the
    others (None: nothing to do). Collective (the validation channel)."""
    spread = placement == "workers"
    has_master = not (topology.peers_only or topology.solo)
    channel = comm.duplicate() if spread and has_master else None  # every rank, the same call
    if not spread or source is None:
        return None, None
    data, model = config.data, backend.model

    def reader(index: int | None, preload: bool = data.preload) -> ValidationReader:
        pieces = [] if index is None else validation_pieces(source.counts, topology.num_workers, index)
        who = "rank 0" if index is None else f"worker {index}"
        return ValidationReader(
            source,
            pieces,
            data.batch_size,
            data.prefetch,
            preload,
            data.memory_limit_bytes,
            node.available,
            node.ranks,
            who,
        )

    trains = topology.role(comm.rank).value in ("peer", "worker")
    share = reader(topology.worker_index(comm.rank) if trains else None)
    build_metrics(model, share)  # the same metric variables on every rank, whatever its share
    if channel is None:  # peers
        if comm.rank == 0:
            everything = ValidationReader(
                source,
                validation_pieces(source.counts, 1, 0),
                data.batch_size,
                data.prefetch,
                memory_limit=data.memory_limit_bytes,
            )
            return PeerValidator(model, share, everything, comm, watchdog), None
        return None, PeerShare(model, share, comm, watchdog, timeline)
    if comm.rank == 0:
        return WorkersValidator(model, backend, comm, channel, topology.children(0), watchdog, timeline), None
    return None, WorkerShare(model, backend, channel, share, timeline)
