"""The event engine: a heapq queue, cores shared by CPU tasks (processor
sharing), links as FIFO resources, and the throughput meter.

SimPy 4 was measured as an alternative (see benchmarks/notes/simulate.md): it
gives the same numbers, 2.5-3x slower, and has no processor-sharing resource,
which the on-node validation needs, so the hand-written engine stays."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .params import Params


class Engine:
    """A heapq event queue with a pool of cores shared by CPU tasks."""

    def __init__(self, cores: float | None, seed: int = 0, poll_cpu: float = 0.0) -> None:
        self.now = 0.0
        # Ranks in a polled wait: spinning ones take a full share of the cores; sleeping ones poll_cpu of a core.
        self.spinning = 0.0
        self.polling = 0.0
        self.poll_cpu = poll_cpu
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.cores = cores
        self._tasks: dict[int, list[Any]] = {}  # id -> [remaining work, callback, args]
        self._version = 0
        self._last = 0.0
        self.rng = np.random.default_rng(seed)
        self.events = 0

    def at(self, time: float, callback: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._queue, (time, self._seq, callback, args))
        self._seq += 1

    def cpu(self, work: float, callback: Callable[..., None], *args: Any) -> None:
        """`work` seconds of one core; shared equally when tasks outnumber cores."""
        if self.cores is None:
            self.at(self.now + work, callback, *args)
            return
        self._advance()
        self._tasks[self._seq] = [work, callback, args]
        self._seq += 1
        self._reschedule()

    def _rate(self) -> float:
        demand = len(self._tasks) + self.spinning + self.poll_cpu * self.polling
        return 1.0 if self.cores is None or demand <= self.cores else self.cores / demand

    def wait_begin(self, spin_s: float, weight: float = 1.0) -> list[Any]:
        """`weight` ranks start a polled wait: they spin for `spin_s`, then
        sleep between tests. Returns the token for wait_end."""
        token = [True, weight]
        self._waiters(weight, 0.0)
        self.at(self.now + spin_s, self._spin_over, token)
        return token

    def _spin_over(self, token: list[Any]) -> None:
        if token[0] is True:
            token[0] = "polling"
            self._waiters(-token[1], token[1])

    def wait_end(self, token: list[Any]) -> None:
        if token[0] is True:
            self._waiters(-token[1], 0.0)
        elif token[0] == "polling":
            self._waiters(0.0, -token[1])
        token[0] = False

    def _waiters(self, spinning: float, polling: float) -> None:
        if self.cores is None:
            return
        self._advance()
        self.spinning += spinning
        self.polling += polling
        self._reschedule()

    def _advance(self) -> None:
        elapsed = self.now - self._last
        if elapsed > 0 and self._tasks:
            done = elapsed * self._rate()
            for task in self._tasks.values():
                task[0] -= done
        self._last = self.now

    def _reschedule(self) -> None:
        self._version += 1
        if self._tasks:
            key = min(self._tasks, key=lambda k: self._tasks[k][0])
            self.at(self.now + max(self._tasks[key][0], 0.0) / self._rate(), self._finish, key, self._version)

    def _finish(self, key: int, version: int) -> None:
        if version != self._version:
            return  # the set of running tasks changed since this was scheduled
        self._advance()
        _, callback, args = self._tasks.pop(key)
        self._reschedule()
        callback(*args)

    def run(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until:
            time, _, callback, args = heapq.heappop(self._queue)
            self.now = time
            self.events += 1
            callback(*args)
        self.now = until


class Link:
    """One direction of a rank's network link: messages leave one after the other."""

    def __init__(self, engine: Engine, bandwidth: float, latency: float) -> None:
        self.engine, self.bandwidth, self.latency = engine, bandwidth, latency
        self.free_at = 0.0

    def send(self, nbytes: float, callback: Callable[..., None], *args: Any) -> None:
        start = max(self.engine.now, self.free_at)
        self.free_at = start + nbytes / self.bandwidth
        self.engine.at(self.free_at + self.latency, callback, *args)


class ShmLink(Link):
    """A transfer between ranks of one node (MPI over shared memory): both the
    sender and the receiver copy the bytes, so it is CPU work on both ends,
    competing for the shared cores with everything else."""

    def send(self, nbytes: float, callback: Callable[..., None], *args: Any) -> None:
        pending = [2]

        def copied() -> None:
            pending[0] -= 1
            if pending[0] == 0:
                self.engine.at(self.engine.now + self.latency, callback, *args)

        self.engine.cpu(nbytes / self.bandwidth, copied)
        self.engine.cpu(nbytes / self.bandwidth, copied)


def make_link(engine: Engine, p: Params) -> Link:
    return ShmLink(engine, p.bandwidth, p.latency) if p.cores else Link(engine, p.bandwidth, p.latency)


class Meter:
    """Throughput inside a measuring window, and a server's busy time. Each
    stream of counts (a worker's updates, or the rounds of a synchronous
    job) is rated from its first to its last count in the window (no partial
    cycles at its edges), and the streams' rates add up: exact for periodic
    streams even when many of them arrive in bursts."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.streams: dict[int, list[float]] = {}  # key -> [first, last, samples after the first]
        self.busy = 0.0

    def count(self, now: float, samples: float, key: int = -1) -> None:
        if not self.start <= now <= self.end:
            return
        stream = self.streams.get(key)
        if stream is None:
            self.streams[key] = [now, now, 0.0]
        else:
            stream[1] = now
            stream[2] += samples

    def rate(self) -> float:
        return sum(samples / (last - first) for first, last, samples in self.streams.values() if last > first)

    def busy_for(self, begin: float, seconds: float) -> None:
        lo, hi = max(begin, self.start), min(begin + seconds, self.end)
        if hi > lo:
            self.busy += hi - lo


def compute_time(engine: Engine, p: Params, batches: int = 1) -> float:
    if p.jitter <= 0:
        return p.compute_s * batches
    sigma = math.sqrt(math.log(1 + p.jitter**2))
    return float(p.compute_s * np.sum(engine.rng.lognormal(-(sigma**2) / 2, sigma, batches)))


def send_pair(first: Link | None, second: Link, nbytes: float, callback: Callable[..., None], *args: Any) -> None:
    """A message of a server's slice (`nbytes`) crossing a worker's link
    (`first`, None when not modelled) and a server's link at once (cut-through):
    it leaves when both are free, and holds each for its bytes. With S servers
    the worker's link carries S such slices one after the other."""
    if first is None:
        second.send(nbytes, callback, *args)
        return
    engine = second.engine
    start = max(engine.now, first.free_at, second.free_at)
    first.free_at = second.free_at = start + nbytes / second.bandwidth
    engine.at(second.free_at + second.latency, callback, *args)
