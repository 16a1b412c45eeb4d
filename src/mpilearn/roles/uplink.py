"""One rank's exchanges with its master: a worker's, or a sub-master's with the top."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..algorithms import ClientRule
from ..comm import Communicator, Tag, WaitTimeout
from ..flat import DTYPE, HEADER_SIZE, FlatLayout, Header, Message
from ..interrupt import STOP
from .shards import gather_slice, scatter_slice, shard_ranges, slice_layout
from .watchdog import Watchdog

# The timeline row (tid) of a pipelined worker's exchanges in flight, beside its compute on row 0.
FLIGHT_ROW = 3


class Uplink:
    """Sends the client rule's update, waits (without spinning) for the
    master's answer, and hands it to the rule. The update's header carries
    the counters the master records (samples, loss, batches, epoch).

    Blocking (`exchange`): one round trip at a time. Pipelined (`send_ahead`,
    `drain`): the update goes out and the worker trains on while it and the
    answer are in flight; the answer is taken at the next exchange, after the
    next update is filled (so that update counts from the weights it was
    computed on: one master step staler). Two update buffers take turns, one
    in flight while the other gathers the next batches."""

    def __init__(
        self, comm: Communicator, parent: int, rule: ClientRule, layout: FlatLayout, watchdog: Watchdog
    ) -> None:
        self.comm = comm
        self.watchdog = watchdog
        self.parent = parent
        self.rule = rule
        self.update = Message(layout)
        self.reply = Message(layout)
        self.base_step = 0.0  # master step of the weights we hold, for staleness
        # A worker's share of a spread validation (roles/spread.WorkerShare): snapshots arrive while it waits.
        self.validation: Any = None
        self.layout = layout
        self._spare: Message | None = None  # pipelined: the buffer of the update in flight (made on first use)
        self._requests: list[Any] = []  # the exchange in flight: its send, then its receive(s)
        self.in_flight = False
        self._posted = 0.0
        # Pipelined: each exchange, from its send to the answer taken, goes on this timeline's FLIGHT_ROW.
        self.timeline: Any = None

    def add_stats(self, loss_sum: float, batches: int, samples: int) -> None:
        header = self.update.header
        header[Header.LOSS_SUM] += loss_sum
        header[Header.BATCHES] += batches
        header[Header.SAMPLES] += samples

    def add_skipped(self, count: float) -> None:
        self.update.header[Header.SKIPPED] += count

    def exchange(self, epoch: int, epoch_end: bool, batches: int) -> bool:
        """One round trip; returns True when the master says stop."""
        self._fill(epoch, batches)
        self._start(epoch_end)
        stop = self._finish()
        self.update.buffer[:] = 0.0
        return stop

    def send_ahead(self, epoch: int, epoch_end: bool, batches: int) -> bool:
        """Pipelined: fill the update, take the answer of the exchange in flight
        (if any), and send the update without waiting for its own answer.
        True when the answer taken says stop (the new update then stays unsent)."""
        self._fill(epoch, batches)
        if self.in_flight and self._finish():
            return True
        self._start(epoch_end)
        if self._spare is None:
            self._spare = Message(self.layout)
        self.update, self._spare = self._spare, self.update  # the next batches gather in the other buffer
        self.update.buffer[:] = 0.0
        return False

    def drain(self) -> bool:
        """Pipelined: take the answer of the exchange in flight; True when it says stop."""
        return self._finish() if self.in_flight else False

    def _fill(self, epoch: int, batches: int) -> None:
        update = self.update
        self.rule.fill(update, max(batches, 1))
        update.set(Header.EPOCH, epoch)
        update.set(Header.BASE_STEP, self.base_step)  # the weights this update was computed on
        update.set(Header.INTERRUPT, STOP.signum)  # the master decides when the job stops

    def _start(self, epoch_end: bool) -> None:
        receive = self.comm.irecv(self.reply.buffer, source=self.parent)
        send = self.comm.isend(self.update.buffer, self.parent, Tag.UPDATE_EPOCH_END if epoch_end else Tag.UPDATE)
        self._requests = [send, receive]
        self.in_flight = True
        self._posted = time.time()

    def _finish(self) -> bool:
        """Complete the exchange in flight and hand the answer to the rule; True when it says stop."""
        send, receive = self._requests
        reply = self.reply
        started = time.monotonic()
        limit = self.watchdog.limit()
        try:
            self.comm.wait(send, limit, awaited=(self.parent,))
            status, validating = self._answer(receive, limit)
        except WaitTimeout:
            raise self.watchdog.error(f"master rank {self.parent}", time.monotonic() - started) from None
        self._landed()
        self.watchdog.observe(time.monotonic() - started - validating)
        self.rule.absorb(reply)
        self.base_step = reply.get(Header.BASE_STEP)
        return status.Get_tag() == Tag.STOP

    def _landed(self) -> None:
        self.in_flight = False
        if self.timeline is not None:
            self.timeline.record("exchange (in flight)", self._posted, time.time(), FLIGHT_ROW)

    def _answer(self, receive: Any, limit: float) -> tuple[Any, float]:
        """The master's answer (a busy notice of the master excuses it), validating
        the snapshots that come meanwhile; also the seconds spent validating."""
        if self.validation is None:
            return self.comm.wait(receive, limit, awaited=(self.parent,)), 0.0
        validating = 0.0
        while True:
            index, status = self.comm.wait_any([receive, self.validation.request], limit, awaited=(self.parent,))
            if index == 0:
                return status, validating
            validating += self.validation.validate()


class ShardedUplink(Uplink):
    """A worker's exchanges with S sharded servers: slice i of the update,
    behind a copy of the header, goes to server i, all S sends and receives
    in flight at once; the slices of the answers make one reply for the rule.
    When some servers say stop and others do not (rank 0 stopped early), the
    worker tells the others it leaves, so none of them waits for it."""

    def __init__(
        self, comm: Communicator, servers: tuple[int, ...], rule: ClientRule, layout: FlatLayout, watchdog: Watchdog
    ) -> None:
        super().__init__(comm, servers[0], rule, layout, watchdog)
        self.servers = servers
        self.ranges = [shard_ranges(layout, len(servers), i) for i in range(len(servers))]
        self.outgoing = [np.zeros(HEADER_SIZE + slice_layout(r).size, dtype=DTYPE) for r in self.ranges]
        self.incoming = [np.zeros_like(buffer) for buffer in self.outgoing]
        self.base_steps = [0.0 for _ in servers]  # each server counts its own steps
        self.sent_steps = list(self.base_steps)

    def _fill(self, epoch: int, batches: int) -> None:
        super()._fill(epoch, batches)
        self.sent_steps = list(self.base_steps)  # each server's step of the weights this update was computed on

    def _start(self, epoch_end: bool) -> None:
        comm, update = self.comm, self.update
        tag = Tag.UPDATE_EPOCH_END if epoch_end else Tag.UPDATE
        receives = [comm.irecv(buffer, source=server) for buffer, server in zip(self.incoming, self.servers)]
        sends = []
        for i, ranges in enumerate(self.ranges):
            out = self.outgoing[i]
            out[:HEADER_SIZE] = update.header
            out[Header.BASE_STEP] = self.sent_steps[i]
            gather_slice(update.payload, ranges, out[HEADER_SIZE:])
            sends.append(comm.isend(out, self.servers[i], tag))
        self._requests = sends + receives
        self.in_flight = True
        self._posted = time.time()

    def _finish(self) -> bool:
        reply, comm = self.reply, self.comm
        started = time.monotonic()
        try:
            statuses = comm.wait_all(self._requests, self.watchdog.limit())
        except WaitTimeout as error:
            pending = sorted({self.servers[i % len(self.servers)] for i in error.pending})
            raise self.watchdog.error(
                ", ".join(f"server rank {r}" for r in pending), time.monotonic() - started
            ) from None
        self._landed()
        self.watchdog.observe(time.monotonic() - started)
        stops = [status.Get_tag() == Tag.STOP for status in statuses[len(self.servers) :]]
        for i, ranges in enumerate(self.ranges):
            scatter_slice(self.incoming[i][HEADER_SIZE:], ranges, reply.payload)
            self.base_steps[i] = float(self.incoming[i][Header.BASE_STEP])
        reply.header[:] = self.incoming[0][:HEADER_SIZE]
        if any(stops) and not all(stops):
            leaving = [
                comm.isend(self.outgoing[i][:HEADER_SIZE], self.servers[i], Tag.LEAVE)
                for i, said_stop in enumerate(stops)
                if not said_stop
            ]
            comm.wait_all(leaving, self.watchdog.limit())
        self.rule.absorb(reply)
        return any(stops)
