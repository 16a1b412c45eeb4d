"""An in-process communicator: N ranks as N threads of one process.

`LocalCommunicator` has the interface of `transport.Communicator` and is
held to the same contract suite (tests/comm_contract.py), so the training
loops can be unit-tested in one interpreter. Messages are matched as MPI
matches them: a send goes to the earliest posted receive whose source and
tag fit, else it waits in arrival order for one; messages between two ranks
never overtake each other. Waits block on a condition variable, never spin.

    ranks = local_world(3)          # one communicator per rank
    threads run f(ranks[r]) ...     # see run_ranks
"""

from __future__ import annotations

import functools
import pickle
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import CommunicationError
from .transport import ANY_SOURCE, ANY_TAG, CollectiveTimeout, Reduction, WaitTimeout, busy_while

# Longest wait on the condition variable between two checks of a deadline or an abort.
_TICK_S = 0.05


class Aborted(CommunicationError):
    """A rank called abort(status): every rank of the in-process job stops."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the job was aborted with status {status}")
        self.exit_status = status


class Status:
    """The source and tag of a completed receive (as MPI.Status reports them)."""

    def __init__(self, source: int = ANY_SOURCE, tag: int = ANY_TAG, count: int = 0) -> None:
        self.source, self.tag, self.count = source, tag, count

    def Get_source(self) -> int:
        return self.source

    def Get_tag(self) -> int:
        return self.tag


class Request:
    """A pending send or receive; complete once `done` is set (under the hub's lock). A completed
    request that a wait returned is `spent`: like MPI's REQUEST_NULL, wait_any skips it."""

    def __init__(self) -> None:
        self.done = False
        self.spent = False
        self.status = Status()


class _NullRequest(Request):
    def __init__(self) -> None:
        super().__init__()
        self.done = self.spent = True


NULL_REQUEST = _NullRequest()


@dataclass
class _Receive:
    request: Request
    buffer: np.ndarray | None  # None: an object probe (poll_object)
    source: int
    tag: int


@dataclass
class _Message:
    source: int
    tag: int
    data: bytes
    sent: Request


@dataclass
class _Collective:
    """One collective call in progress: every rank's contribution, then the result."""

    contributions: dict[int, Any] = field(default_factory=dict)
    result: Any = None
    complete: bool = False
    collected: int = 0


class _Hub:
    """State shared by the ranks of one communicator."""

    def __init__(self, size: int, lock: threading.Condition, world_size: int) -> None:
        self.size, self.lock, self.world_size = size, lock, world_size
        self.posted: list[list[_Receive]] = [[] for _ in range(size)]
        self.unexpected: list[list[_Message]] = [[] for _ in range(size)]
        self.collectives: dict[int, _Collective] = {}
        self.aborted: list[int] = []  # shared by every hub of one world
        # Busy notices: grants[rank][sender] = until when (monotonic) the sender is excused.
        self.grants: list[dict[int, float]] = [{} for _ in range(size)]


def _fits(receive: _Receive, message: _Message) -> bool:
    return receive.source in (ANY_SOURCE, message.source) and receive.tag in (ANY_TAG, message.tag)


class LocalCommunicator:
    """One rank's view of an in-process communicator (see local_world)."""

    NULL_REQUEST = NULL_REQUEST

    def __init__(self, hub: _Hub, rank: int, poll_max_s: float = 0.001) -> None:
        self._hub = hub
        self.rank = rank
        self.size = hub.size
        self.world_size = hub.world_size
        self.world_rank = rank
        self.poll_max_s = poll_max_s
        # All ranks share one "node".
        self.local_rank, self.local_size = rank, hub.size
        self.node_ranks: tuple[int, ...] = tuple(range(hub.size))
        self._collectives = 0  # collective calls made by this rank, to pair them across ranks
        # Default limit of the collectives (seconds; None: none), as on the MPI communicator.
        self.limit: float | None = None
        self.grants = hub.grants[rank]
        self.excuse_cap: float | None = None

    # ---- busy notices ------------------------------------------------------------
    def busy(self, seconds: float, ranks: Sequence[int] | None = None) -> None:
        """Excuse this rank for `seconds` in the bounded waits of `ranks` (default: all others)."""
        until = time.monotonic() + seconds
        with self._hub.lock:
            for rank in range(self.size) if ranks is None else ranks:
                if rank != self.rank:
                    self._hub.grants[rank][self.rank] = until

    busy_while = busy_while

    def beat(self, seconds: float, ranks: Sequence[int] | None = None, cap: float | None = None) -> bool:
        """Threads of one process never die alone: no beats (start-up waits keep their long limit)."""
        return False

    def stop_beating(self) -> None:
        """Nothing beats."""

    def fallen_silent(self, ranks: Sequence[int]) -> list[int]:
        """Threads never fall silent alone."""
        return []

    def take_notices(self) -> None:
        """Notices are in `grants` as soon as they are sent."""

    # ---- waiting ---------------------------------------------------------------
    def _block(
        self, ready: Callable[[], bool], timeout: float | None, pending: Callable[[], list[int]] | None = None
    ) -> None:
        """Wait under the lock until ready(); WaitTimeout after `timeout` seconds, unless a busy notice
        of another rank still excuses the wait."""
        hub = self._hub
        deadline = None if timeout is None else time.monotonic() + timeout
        while not ready():
            if hub.aborted:
                raise Aborted(hub.aborted[0])
            now = time.monotonic()
            if deadline is not None and now >= deadline and not any(until > now for until in self.grants.values()):
                error = WaitTimeout(timeout or 0.0)
                error.pending = pending() if pending else []
                raise error
            hub.lock.wait(_TICK_S if deadline is None else max(0.001, min(_TICK_S, deadline - now)))

    def wait(
        self,
        request: Request,
        timeout: float | None = None,
        spin_s: float = 0.002,
        awaited: Sequence[int] | None = None,
    ) -> Status:
        with self._hub.lock:
            self._block(lambda: request.done, timeout)
            request.spent = True
            return request.status

    def wait_any(self, requests: Sequence[Request], timeout: float | None = None) -> tuple[int, Status]:
        """Index and status of the first completed request; spent ones (NULL_REQUEST) are skipped."""
        if all(r.spent for r in requests):
            raise CommunicationError("wait_any called with no active request")
        found: list[int] = []

        def ready() -> bool:
            found[:] = [i for i, r in enumerate(requests) if r.done and not r.spent]
            return bool(found)

        with self._hub.lock:
            self._block(ready, timeout)
            request = requests[found[0]]
            request.spent = True
            return found[0], request.status

    def wait_all(
        self, requests: Sequence[Request], timeout: float | None = None, awaited: Sequence[int] | None = None
    ) -> list[Status]:
        """Statuses in request order; on timeout, WaitTimeout.pending lists the positions still incomplete."""
        with self._hub.lock:
            self._block(
                lambda: all(r.done for r in requests),
                timeout,
                lambda: [i for i, r in enumerate(requests) if not r.done],
            )
            for r in requests:
                r.spent = True
            return [r.status for r in requests]

    # ---- point to point --------------------------------------------------------
    def _deliver(self, dest: int, tag: int, data: bytes) -> Request:
        hub = self._hub
        sent = Request()
        message = _Message(self.rank, tag, data, sent)
        with hub.lock:
            for receive in hub.posted[dest]:
                if _fits(receive, message):
                    hub.posted[dest].remove(receive)
                    self._complete(receive, message)
                    break
            else:
                hub.unexpected[dest].append(message)
            sent.done = True  # the bytes are copied: the sender's buffer is free (buffered send)
            hub.lock.notify_all()
        return sent

    @staticmethod
    def _complete(receive: _Receive, message: _Message) -> None:
        if receive.buffer is not None:
            incoming = np.frombuffer(message.data, dtype=receive.buffer.dtype)
            if incoming.size > receive.buffer.size:
                raise CommunicationError(f"message of {incoming.size} values for a buffer of {receive.buffer.size}")
            receive.buffer[: incoming.size] = incoming
        receive.request.status = Status(message.source, message.tag, len(message.data))
        receive.request.done = True

    def _post(self, buffer: np.ndarray | None, source: int, tag: int) -> tuple[Request, _Message | None]:
        """Match the earliest fitting unexpected message, or post the receive. Returns the message matched
        at once (object probes keep it)."""
        hub = self._hub
        receive = _Receive(Request(), buffer, source, tag)
        with hub.lock:
            for message in hub.unexpected[self.rank]:
                if _fits(receive, message):
                    hub.unexpected[self.rank].remove(message)
                    self._complete(receive, message)
                    return receive.request, message
            if buffer is not None:
                hub.posted[self.rank].append(receive)
        return receive.request, None

    def isend(self, buffer: np.ndarray, dest: int, tag: int) -> Request:
        return self._deliver(dest, tag, np.ascontiguousarray(buffer, dtype=np.float32).tobytes())

    def irecv(self, buffer: np.ndarray, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> Request:
        return self._post(buffer, source, tag)[0]

    def send(self, buffer: np.ndarray, dest: int, tag: int) -> None:
        self.wait(self.isend(buffer, dest, tag))

    def recv(self, buffer: np.ndarray, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> Status:
        return self.wait(self.irecv(buffer, source, tag))

    def isend_object(self, obj: Any, dest: int, tag: int) -> Request:
        return self._deliver(dest, tag, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def send_object(self, obj: Any, dest: int, tag: int) -> None:
        self.wait(self.isend_object(obj, dest, tag))

    def poll_object(self, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> tuple[Any, int, int] | None:
        request, message = self._post(None, source, tag)
        if message is None:
            return None
        return pickle.loads(message.data), request.status.Get_source(), request.status.Get_tag()

    def recv_object(
        self,
        source: int = ANY_SOURCE,
        tag: int = ANY_TAG,
        timeout: float | None = None,
        awaited: Sequence[int] | None = None,
        what: str = "a message",
        until: Callable[[], bool] | None = None,
    ) -> Any:
        """As on MPI; a timeout names `awaited` (default: `source`); None once `until()` is true."""
        started = time.monotonic()
        while True:
            received = self.poll_object(source, tag)
            if received is not None:
                return received
            if until is not None and until():
                return None
            probe = _Receive(Request(), None, source, tag)
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            if until is not None:
                left = _TICK_S if left is None else min(left, _TICK_S)
            try:
                with self._hub.lock:
                    self._block(functools.partial(self._has_unexpected, probe), left)
            except WaitTimeout:
                if until is not None and (timeout is None or time.monotonic() - started < timeout):
                    continue
                ranks = list(awaited) if awaited is not None else [] if source == ANY_SOURCE else [source]
                raise CollectiveTimeout(self.rank, what, time.monotonic() - started, ranks) from None

    def _has_unexpected(self, probe: _Receive) -> bool:
        return any(_fits(probe, m) for m in self._hub.unexpected[self.rank])

    # ---- collectives -------------------------------------------------------------
    def _collective(
        self,
        contribution: Any,
        combine: Callable[[dict[int, Any]], Any],
        timeout: float | None = None,
        what: str = "a collective",
    ) -> Any:
        """Every rank contributes; once all have, `combine` (run once) makes the result all of them get.
        Bounded by `timeout` (default: self.limit); a timeout names the ranks that never came."""
        hub = self._hub
        seq = self._collectives
        self._collectives += 1
        limit = self.limit if timeout is None else timeout
        with hub.lock:
            call = hub.collectives.setdefault(seq, _Collective())
            call.contributions[self.rank] = contribution
            if len(call.contributions) == hub.size:
                call.result, call.complete = combine(call.contributions), True
                hub.lock.notify_all()
            try:
                self._block(lambda: call.complete, limit)
            except WaitTimeout:
                missing = [r for r in range(hub.size) if r not in call.contributions]
                raise CollectiveTimeout(self.rank, what, limit or 0.0, missing) from None
            call.collected += 1
            if call.collected == hub.size:
                del hub.collectives[seq]
            return call.result

    def barrier(self, timeout: float | None = None, what: str = "a barrier") -> None:
        self._collective(None, lambda parts: None, timeout, what)

    def bcast_array(
        self, buffer: np.ndarray, root: int = 0, timeout: float | None = None, what: str = "a broadcast"
    ) -> None:
        data = self._collective(buffer.copy() if self.rank == root else None, lambda parts: parts[root], timeout, what)
        if self.rank != root:
            np.copyto(buffer, data)

    def bcast_object(self, obj: Any, root: int = 0, timeout: float | None = None, what: str = "a broadcast") -> Any:
        payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL) if self.rank == root else None
        data = self._collective(payload, lambda parts: parts[root], timeout, what)
        return obj if self.rank == root else pickle.loads(data)

    def gather_object(
        self, obj: Any, root: int = 0, timeout: float | None = None, what: str = "a gather"
    ) -> list[Any] | None:
        payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        parts = self._collective(payload, lambda parts: [parts[r] for r in range(len(parts))], timeout, what)
        return [pickle.loads(p) for p in parts] if self.rank == root else None

    def allreduce_sum(self, buffer: np.ndarray, compression: str = "none", timeout: float | None = None) -> None:
        """Sum of every rank's buffer, in place; 16-bit compression rounds each contribution and each partial sum."""
        from .transport import _wire_dtype

        wire = None if compression == "none" else _wire_dtype(compression)

        def total(parts: dict[int, np.ndarray]) -> np.ndarray:
            acc = parts[0].astype(np.float32)
            for r in range(1, len(parts)):
                acc = acc + parts[r].astype(np.float32)
                if wire is not None:
                    acc = acc.astype(wire).astype(np.float32)
            return acc

        mine = buffer.astype(wire) if wire is not None else buffer.copy()
        try:
            np.copyto(buffer, self._collective(mine, total, timeout, "an allreduce"))
        except CollectiveTimeout as error:  # as the MPI communicator: the caller names who it waited for
            raise WaitTimeout(timeout or 0.0) from error

    def allreduce_mean(self, buffer: np.ndarray, compression: str = "none", timeout: float | None = None) -> None:
        buffer *= np.float32(1.0 / self.size)
        self.allreduce_sum(buffer, compression, timeout)

    def start_allreduce_sum(self, buffer: np.ndarray, compression: str = "none") -> Reduction:
        """The sum at once (threads of one process have nothing to overlap): a completed reduction."""
        self.allreduce_sum(buffer, compression, self.limit)
        reduction = Reduction(NULL_REQUEST, buffer)
        reduction.done = True
        return reduction

    def wait_reductions(self, reductions: Sequence[Reduction], timeout: float | None = None) -> None:
        """Nothing to wait for: start_allreduce_sum completed each one."""

    def split(self, color: int, key: int | None = None) -> "LocalCommunicator":
        """Sub-communicators by color, ranks ordered by key (then rank)."""
        hub = self._hub

        def groups(parts: dict[int, tuple[int, int]]) -> dict[int, LocalCommunicator]:
            members: dict[int, list[tuple[int, int]]] = {}
            for rank, (c, k) in parts.items():
                members.setdefault(c, []).append((k, rank))
            placed: dict[int, LocalCommunicator] = {}
            for ordered in members.values():
                ordered.sort()
                child = _Hub(len(ordered), hub.lock, hub.world_size)
                child.aborted = hub.aborted
                for new_rank, (_, rank) in enumerate(ordered):
                    placed[rank] = LocalCommunicator(child, new_rank, self.poll_max_s)
                    placed[rank].limit = self.limit
            return placed

        return self._collective((color, self.rank if key is None else key), groups)[self.rank]

    def abort(self, status: int = 1) -> None:
        """End every rank: their waits raise Aborted, and so does this call."""
        self.end_others(status)
        raise Aborted(status)

    def end_others(self, status: int = 1) -> None:
        """A thread playing this rank failed: every other rank's wait raises Aborted (this call returns)."""
        with self._hub.lock:
            if not self._hub.aborted:
                self._hub.aborted.append(status)
            self._hub.lock.notify_all()


def local_world(size: int, poll_max_s: float = 0.001) -> list[LocalCommunicator]:
    """One communicator per rank of an in-process job of `size` ranks."""
    hub = _Hub(size, threading.Condition(), size)
    return [LocalCommunicator(hub, rank, poll_max_s) for rank in range(size)]


def run_ranks(size: int, work: Callable[[LocalCommunicator], Any], timeout: float = 60.0) -> list[Any]:
    """Run `work(comm)` on `size` in-process ranks, one thread each; their results in rank order.
    The first error of any rank is raised (after the other ranks were aborted and ended)."""
    comms = local_world(size)
    results: list[Any] = [None] * size
    errors: list[tuple[int, BaseException]] = []

    def main(comm: LocalCommunicator) -> None:
        try:
            results[comm.rank] = work(comm)
        except Aborted as error:
            errors.append((comm.rank, error))
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            errors.append((comm.rank, error))
            comm.end_others()

    threads = [threading.Thread(target=main, args=(c,), name=f"rank-{c.rank}", daemon=True) for c in comms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if any(thread.is_alive() for thread in threads):
        raise CommunicationError(f"in-process ranks did not end within {timeout}s")
    if errors:
        first = min(errors, key=lambda e: isinstance(e[1], Aborted))  # a real error before the aborts it caused
        raise first[1]
    return results
