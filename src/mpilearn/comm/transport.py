"""Buffer transport over one duplicated communicator, with non-spinning waits."""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from mpi4py import MPI

from ..errors import CommunicationError

Request = MPI.Request
ANY_SOURCE = MPI.ANY_SOURCE
ANY_TAG = MPI.ANY_TAG


class WaitTimeout(CommunicationError):
    """A peer did not answer in time: it is stuck, stopped or dead."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"nothing arrived for {seconds:.0f}s")
        self.seconds = seconds
        self.pending: list[int] = []


class CollectiveTimeout(CommunicationError):
    """A collective did not complete in time; names the ranks it waited for when known."""

    def __init__(self, rank: int, what: str, seconds: float, missing: Sequence[int]) -> None:
        who = ", ".join(f"rank {r}" for r in missing) if missing else "another rank"
        super().__init__(
            f"rank {rank} waited {seconds:.0f}s for {who} in {what}: "
            "it is stuck, stopped or has exited (limit: --timeout, else adaptive)"
        )
        self.missing = list(missing)


# Private tags of the control communicator (never seen by the training traffic's any-tag receives).
_BUSY, _GATHER, _BCAST = 1, 2, 3
# How often a bounded wait looks for busy notices.
_NOTICE_POLL_S = 0.02
# How often a beating rank says it is alive (Communicator.beat), and how long
# each beat excuses it: far above the longest stall of a healthy rank's
# thread (8 s measured while importing Keras at load 13 on 2 cores).
# MPILEARN_ALIVE_S shortens it for tests of a stuck rank.
BEAT_S = 1.0
ALIVE_S = float(os.environ.get("MPILEARN_ALIVE_S", "30"))


# A collective moves data only while every rank is inside MPI (no progress
# thread): a rank asleep between polls stalls its peers. So a collective's
# wait spins for as long as its bytes take at this conservative rate (always
# at least Backoff's 2 ms) before it starts to sleep; ranks of a collective
# arrive together, so the spin is work, not waiting.
COLLECTIVE_SPIN_BYTES_PER_S = 1e9


def _collective_spin(nbytes: int) -> float:
    return max(0.002, nbytes / COLLECTIVE_SPIN_BYTES_PER_S)


# A large send completes when its receiver has copied it (MPICH's rendezvous:
# measured, the receiver copies all 40 MB inside one of its Test calls, 1.9 ms)
# and the sender notices at its next Test. A sender asleep between polls
# notices up to poll_max_s late, on every message: 0.883 of raw Send/Recv at
# 40 MB. So a wait on one of our sends of n bytes spins until n / this rate
# after the isend (40 MB: 8 ms, twice the copy and a receiver that notices
# late), then backs off as usual: a busy receiver costs its sender at most
# that spin per send. Waits on receives keep the 2 ms spin (the copy needs no
# sender progress), so an idle rank still sleeps; nor does a slow Test announce
# a transfer: the one Test that copies is the one that completes the receive.
SEND_SPIN_BYTES_PER_S = 5e9


class _Deadline:
    """A wait's limit, pushed back by busy notices from the ranks it waits on
    (Communicator.busy): a peer validating or building its model is not silent.
    `awaited()` gives the ranks still awaited (None: notices do not count)."""

    def __init__(
        self, comm: "Communicator", timeout: float | None, awaited: Callable[[], Sequence[int]] | None = None
    ) -> None:
        self.comm, self.timeout, self.awaited = comm, timeout, awaited
        now = self.start = time.monotonic()
        self.at = None if timeout is None else now + timeout
        # Excuses end here: a rank that beats but never comes is stuck after all (None: no end).
        cap = comm.excuse_cap
        self.last = None if timeout is None or cap is None else now + max(timeout, cap)
        self.next_look = now + _NOTICE_POLL_S

    def check(self) -> None:
        if self.at is None:
            return
        now = time.monotonic()
        if now >= self.next_look:
            self.next_look = now + _NOTICE_POLL_S
            self.comm.take_notices()
        if now <= self.at:
            return
        ranks = self.awaited() if self.awaited is not None else ()
        if (
            not ranks
            or any(self.comm.grants.get(r, 0.0) < now for r in ranks)
            or (self.last is not None and now > self.last)
        ):
            raise WaitTimeout(now - self.start)  # the limit, or more when excuses stretched it

    def silent(self, ranks: Sequence[int]) -> list[int]:
        """Those of `ranks` no notice excuses now (all of them when none is excused)."""
        now = time.monotonic()
        return [r for r in ranks if self.comm.grants.get(r, 0.0) < now] or list(ranks)


class _Heart:
    """One thread per process that sends the beats of every beating
    communicator, and reads the notices that come back, so that the
    unexpected-message queue stays short while the main thread is busy
    (importing, building a model, training a trial)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.beating: dict[int, "Communicator"] = {}
        self.thread: threading.Thread | None = None
        self.stopped = threading.Event()

    def add(self, comm: "Communicator") -> None:
        with self.lock:
            self.beating[id(comm)] = comm
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="mpilearn-heartbeat", daemon=True)
                self.thread.start()
                atexit.register(self.stop)  # before mpi4py's MPI_Finalize (atexit runs last-registered first)

    def remove(self, comm: "Communicator") -> None:
        with self.lock:
            self.beating.pop(id(comm), None)

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self.stopped.wait(BEAT_S):
            with self.lock:
                for comm in list(self.beating.values()):
                    comm._beat_once()  # noqa: SLF001 - the heart is the communicator's helper


_HEART = _Heart()


class Backoff:
    """Polling schedule: poll without sleeping for the first `spin_s`, then
    sleep, doubling up to `max_s`. A short spin keeps collectives and small
    messages fast (MPI makes progress only inside our Test calls); the sleep
    keeps a long wait's CPU use near zero, where MPICH's blocking calls would
    spin a core at 100% for the whole wait."""

    def __init__(self, max_s: float = 0.001, first_s: float = 2e-5, spin_s: float = 0.002) -> None:
        self.max_s = max_s
        self.first_s = first_s
        self.spin_until = time.monotonic() + spin_s
        self._sleep = 0.0

    def reset(self) -> None:
        self._sleep = 0.0

    def pause(self) -> None:
        if not self._sleep:
            if time.monotonic() < self.spin_until:
                return
            self._sleep = self.first_s
        time.sleep(self._sleep)
        self._sleep = min(self._sleep * 2, self.max_s)


@contextlib.contextmanager
def busy_while(comm: Any, seconds: float, ranks: Sequence[int] | None = None) -> Iterator[None]:
    """comm.busy() for the duration of a block; at its end the excuse is withdrawn,
    unless the block runs inside another one (whose excuse stands until its own end).
    A method of both communicators (this one and comm/local.py's)."""
    depth = getattr(comm, "busy_depth", 0)
    comm.busy_depth = depth + 1
    comm.busy(seconds, ranks)
    try:
        yield
    finally:
        comm.busy_depth = depth
        if not depth:
            comm.busy(0.0, ranks)


class Reduction:
    """An allreduce of one float32 buffer under way (Communicator.start_allreduce_sum).
    `test()` drives MPI's progress (there is no progress thread) and tells whether the
    sum is in the buffer; call it often while computing, so the bytes move meanwhile."""

    __slots__ = ("request", "buffer", "packed", "done")

    def __init__(self, request: Any, buffer: np.ndarray, packed: np.ndarray | None = None) -> None:
        self.request = request
        self.buffer = buffer
        self.packed = packed  # the 16-bit copy on the wire (compression), else None
        self.done = False

    def test(self) -> bool:
        if not self.done and self.request.Test():
            if self.packed is not None:
                self.buffer[:] = self.packed.astype(np.float32)
                self.packed = None
            self.done = True
        return self.done


class Communicator:
    """A private duplicate of an MPI communicator with the calls mpilearn uses."""

    # A request that is already complete; wait_any skips it.
    NULL_REQUEST = MPI.REQUEST_NULL

    def __init__(self, comm: MPI.Comm, poll_max_s: float = 0.001) -> None:
        # A private duplicate: our tags never meet the user's own MPI traffic.
        self._comm = comm.Dup()
        self.rank: int = self._comm.Get_rank()
        self.size: int = self._comm.Get_size()
        # Ranks of the whole job: more than size on one block of a hyperparameter search.
        self.world_size: int = MPI.COMM_WORLD.Get_size()
        self.world_rank: int = MPI.COMM_WORLD.Get_rank()  # what fault injection and the launcher name
        self.poll_max_s = poll_max_s
        # Sends spin at most nbytes / send_spin_rate (see SEND_SPIN_BYTES_PER_S; 0: only the 2 ms spin).
        self.send_spin_rate = SEND_SPIN_BYTES_PER_S
        self._large_sends: list[tuple[MPI.Request, float]] = []  # (request, spin until), see _spin
        node = self._comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank: int = node.Get_rank()
        self.local_size: int = node.Get_size()
        # World ranks sharing this node (GPU placement needs to know whether the master is here).
        self.node_ranks: tuple[int, ...] = tuple(node.allgather(self.rank))
        node.Free()
        # Busy notices and the named collectives travel apart from the training traffic.
        self._control = self._comm.Dup()
        # Default limit of the collectives (seconds; None: none). Training sets it from the watchdog.
        self.limit: float | None = None
        self._notices: list[MPI.Request] = []
        self.grants: dict[int, float] = {}  # rank -> until when its busy notice excuses it
        # While beating: (seconds each beat excuses this rank, ranks told); see beat().
        self._beat: tuple[float, list[int]] | None = None
        self._beats: list[MPI.Request] = []
        # How long excuses may stretch a bounded wait (None: as long as they come).
        self.excuse_cap: float | None = None

    # ---- busy notices --------------------------------------------------------
    def busy(self, seconds: float, ranks: Sequence[int] | None = None) -> None:
        """Tell `ranks` (default: all others) that this rank will be busy for up
        to `seconds` (validating, checkpointing, building its model): their
        bounded waits allow that much more time before calling it silent.
        Nothing while this rank beats: its beats already excuse it while it
        lives, and a notice would excuse it stopped too."""
        if self._beat is not None:
            return
        self._notices = [r for r in self._notices if not r.Test()]
        payload = np.array([seconds], dtype=np.float64)
        for rank in range(self.size) if ranks is None else ranks:
            if rank != self.rank:
                self._notices.append(self._control.Isend([payload.copy(), MPI.DOUBLE], dest=rank, tag=_BUSY))

    busy_while = busy_while

    def beat(self, seconds: float, ranks: Sequence[int] | None = None, cap: float | None = None) -> bool:
        """From now on a thread tells `ranks` (default: all others) every BEAT_S
        that this rank is alive, each beat excusing it for `seconds`, until
        stop_beating(): a rank that imports Keras or builds its model is slow,
        not stuck, while one that is stopped or dead falls silent and is named
        `seconds` later. `cap`: no wait on this communicator is stretched
        beyond max(its limit, cap) by excuses. False (and nothing starts) when
        MPI gives no thread support."""
        if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
            return False
        self._beat = (seconds, [r for r in (range(self.size) if ranks is None else ranks) if r != self.rank])
        self.excuse_cap = cap
        _HEART.add(self)
        self._beat_once()  # at once: a wait may be under way already
        return True

    def stop_beating(self) -> None:
        """End the beats and withdraw their excuse (after the last beat: MPI keeps their order)."""
        if self._beat is None:
            return
        _HEART.remove(self)
        self._beat = None
        self.excuse_cap = None
        self.busy(0.0)

    def _beat_once(self) -> None:
        beat = self._beat
        if beat is None:
            return
        seconds, ranks = beat
        self._beats = [r for r in self._beats if not r.Test()]
        payload = np.array([seconds], dtype=np.float64)
        for rank in ranks:
            self._beats.append(self._control.Isend([payload.copy(), MPI.DOUBLE], dest=rank, tag=_BUSY))
        self.take_notices()

    def fallen_silent(self, ranks: Sequence[int]) -> list[int]:
        """Those of `ranks` that beat once and whose last beat's excuse has run out: stopped or dead."""
        self.take_notices()
        now = time.monotonic()
        return [r for r in ranks if r in self.grants and self.grants[r] < now]

    def take_notices(self) -> None:
        """Read the busy notices that arrived: self.grants[rank] = until when (monotonic) it is excused."""
        status = MPI.Status()
        while (message := self._control.Improbe(ANY_SOURCE, _BUSY, status)) is not None:
            value = np.empty(1, dtype=np.float64)
            message.Recv([value, MPI.DOUBLE])
            self.grants[status.Get_source()] = time.monotonic() + float(value[0])

    # ---- buffers (hot path) ----------------------------------------------
    def isend(self, buffer: np.ndarray, dest: int, tag: int) -> MPI.Request:
        request = self._comm.Isend([buffer, MPI.FLOAT], dest=dest, tag=tag)
        if self.send_spin_rate and buffer.nbytes > 0.002 * self.send_spin_rate:
            now = time.monotonic()
            self._large_sends = [(r, t) for r, t in self._large_sends if t > now]
            self._large_sends.append((request, now + buffer.nbytes / self.send_spin_rate))
        return request

    def _spin(self, requests: Sequence[MPI.Request], spin_s: float = 0.002) -> float:
        """How long a wait on `requests` spins: spin_s, or longer while one of them is a large
        send of ours still within its expected transfer time (SEND_SPIN_BYTES_PER_S)."""
        if self._large_sends:
            now = time.monotonic()
            self._large_sends = [(r, t) for r, t in self._large_sends if t > now]
            for sent, until in self._large_sends:
                if any(sent is r for r in requests):
                    spin_s = max(spin_s, until - now)
        return spin_s

    def irecv(self, buffer: np.ndarray, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> MPI.Request:
        return self._comm.Irecv([buffer, MPI.FLOAT], source=source, tag=tag)

    def wait(
        self,
        request: MPI.Request,
        timeout: float | None = None,
        spin_s: float = 0.002,
        awaited: Sequence[int] | None = None,
    ) -> MPI.Status:
        """Complete one request, polling without sleep for `spin_s`, then
        with growing sleeps; returns its status. Raises WaitTimeout after
        `timeout` seconds (None: wait forever)."""
        status = MPI.Status()
        backoff = Backoff(self.poll_max_s, spin_s=self._spin((request,), spin_s))
        deadline = _Deadline(self, timeout, None if awaited is None else lambda: awaited)
        while not request.Test(status):
            deadline.check()
            backoff.pause()
        return status

    def wait_any(
        self, requests: Sequence[MPI.Request], timeout: float | None = None, awaited: Sequence[int] | None = None
    ) -> tuple[int, MPI.Status]:
        """Complete whichever request finishes first; returns (index, status).
        `awaited`: ranks whose busy notices push the timeout back (as in wait)."""
        status = MPI.Status()
        backoff = Backoff(self.poll_max_s, spin_s=self._spin(requests))
        deadline = _Deadline(self, timeout, None if awaited is None else lambda: awaited)
        requests = list(requests)
        while True:
            index, done = MPI.Request.Testany(requests, status)
            if done:
                if index == MPI.UNDEFINED:
                    raise CommunicationError("wait_any called with no active request")
                return index, status
            deadline.check()
            backoff.pause()

    def wait_all(
        self, requests: Sequence[MPI.Request], timeout: float | None = None, awaited: Sequence[int] | None = None
    ) -> list[MPI.Status]:
        """Complete every request (polled, never spinning); returns their statuses.
        On timeout, WaitTimeout.pending lists the positions still incomplete.
        `awaited[i]`: the rank request i waits on (its busy notices count)."""
        statuses = [MPI.Status() for _ in requests]
        backoff = Backoff(self.poll_max_s, spin_s=self._spin(requests))
        requests = list(requests)

        def waiting_on() -> list[int]:
            assert awaited is not None
            return [awaited[i] for i, r in enumerate(requests) if r != MPI.REQUEST_NULL]

        deadline = _Deadline(self, timeout, None if awaited is None else waiting_on)
        while not MPI.Request.Testall(requests, statuses):
            try:
                deadline.check()
            except WaitTimeout as error:
                error.pending = [i for i, r in enumerate(requests) if r != MPI.REQUEST_NULL and not r.Test()]
                raise
            backoff.pause()
        return statuses

    def allreduce_sum(self, buffer: np.ndarray, compression: str = "none", timeout: float | None = None) -> None:
        """Replace a float32 buffer by its sum over all ranks, in place.

        fp16/bf16 halve the bytes on the wire: values are narrowed, summed
        pairwise in float32 by a reduction operator, and widened back; scale
        them first so that the sum stays in range (allreduce_mean does).
        """
        spin = _collective_spin(buffer.nbytes)
        if compression == "none":
            self.wait(self._comm.Iallreduce(MPI.IN_PLACE, [buffer, MPI.FLOAT], op=MPI.SUM), timeout, spin)
            return
        packed = buffer.astype(_wire_dtype(compression))
        self.wait(
            self._comm.Iallreduce(MPI.IN_PLACE, [packed.view(np.uint16), MPI.UINT16_T], op=_sum_op(compression)),
            timeout,
            spin,
        )
        buffer[:] = packed.astype(np.float32)

    def allreduce_mean(self, buffer: np.ndarray, compression: str = "none", timeout: float | None = None) -> None:
        """Replace a float32 buffer by its mean over all ranks, in place."""
        buffer *= np.float32(1.0 / self.size)
        self.allreduce_sum(buffer, compression, timeout)

    def start_allreduce_sum(self, buffer: np.ndarray, compression: str = "none") -> "Reduction":
        """Start replacing a float32 buffer (a contiguous view, such as one bucket of a
        flat gradient) by its sum over all ranks; the sum is there once the returned
        reduction is complete (Reduction.test, wait_reductions). Every rank must start
        its reductions in the same order. fp16/bf16 as in allreduce_sum."""
        if compression == "none":
            return Reduction(self._comm.Iallreduce(MPI.IN_PLACE, [buffer, MPI.FLOAT], op=MPI.SUM), buffer)
        packed = buffer.astype(_wire_dtype(compression))
        request = self._comm.Iallreduce(MPI.IN_PLACE, [packed.view(np.uint16), MPI.UINT16_T], op=_sum_op(compression))
        return Reduction(request, buffer, packed)

    def wait_reductions(self, reductions: Sequence["Reduction"], timeout: float | None = None) -> None:
        """Complete every reduction (in the order they started), spinning for as long as their
        bytes take (see COLLECTIVE_SPIN_BYTES_PER_S), then with growing sleeps. Raises
        WaitTimeout after `timeout` seconds (None: wait forever)."""
        pending = [r for r in reductions if not r.done]
        if not pending:
            return
        backoff = Backoff(self.poll_max_s, spin_s=_collective_spin(sum(r.buffer.nbytes for r in pending)))
        deadline = _Deadline(self, timeout)
        for reduction in pending:
            while not reduction.test():
                deadline.check()
                backoff.pause()

    def reduce_sum(self, buffer: np.ndarray, root: int = 0, timeout: float | None = None) -> None:
        """Sum a float64 buffer over all ranks into root's buffer, in place (validation metric
        states: counts stay exact far beyond float32). Root's busy notices push the timeout back."""
        send = MPI.IN_PLACE if self.rank == root else buffer
        self.wait(
            self._comm.Ireduce(send, [buffer, MPI.DOUBLE], op=MPI.SUM, root=root),
            timeout,
            _collective_spin(buffer.nbytes),
            awaited=None if self.rank == root else (root,),
        )

    def send(self, buffer: np.ndarray, dest: int, tag: int) -> None:
        self.wait(self.isend(buffer, dest, tag))

    def recv(self, buffer: np.ndarray, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> MPI.Status:
        return self.wait(self.irecv(buffer, source, tag))

    def bcast_array(
        self, buffer: np.ndarray, root: int = 0, timeout: float | None = None, what: str = "a broadcast"
    ) -> None:
        """Broadcast a float32 buffer in place (non-spinning), within `timeout` (default: self.limit)."""
        request = self._comm.Ibcast([buffer, MPI.FLOAT], root=root)
        # The root's part may wait for every other rank (large buffers): their beats and notices count.
        awaited = [r for r in range(self.size) if r != root] if self.rank == root else [root]
        self._bounded(request, timeout, what, awaited, _collective_spin(buffer.nbytes))

    def _bounded(
        self, request: MPI.Request, timeout: float | None, what: str, missing: Sequence[int], spin_s: float = 0.002
    ) -> MPI.Status:
        limit = self.limit if timeout is None else timeout
        try:
            return self.wait(request, limit, spin_s, awaited=missing or None)
        except WaitTimeout as error:
            raise CollectiveTimeout(self.rank, what, error.seconds, missing) from None

    # ---- small control objects (pickled, never on the hot path) ------------
    # Point to point on the control communicator, so that a timeout can name the ranks that never came.
    def bcast_object(self, obj: Any, root: int = 0, timeout: float | None = None, what: str = "a broadcast") -> Any:
        """Broadcast a picklable object, waiting without spinning, within `timeout` (default: self.limit)."""
        if self.size == 1:
            return obj
        if self.rank == root:
            payload = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)
            sends = [
                self._control.Isend([payload, MPI.BYTE], dest=r, tag=_BCAST) for r in range(self.size) if r != root
            ]
            others = [r for r in range(self.size) if r != root]
            limit = self.limit if timeout is None else timeout
            try:
                self.wait_all(sends, limit, awaited=others)
            except WaitTimeout as error:
                raise CollectiveTimeout(self.rank, what, error.seconds, [others[i] for i in error.pending]) from None
            return obj
        return self._receive(root, _BCAST, timeout, what)

    def _receive(self, source: int, tag: int, timeout: float | None, what: str) -> Any:
        limit = self.limit if timeout is None else timeout
        backoff = Backoff(self.poll_max_s)
        deadline = _Deadline(self, limit, lambda: [source])
        status = MPI.Status()
        while (message := self._control.Improbe(source, tag, status)) is None:
            try:
                deadline.check()
            except WaitTimeout as error:
                raise CollectiveTimeout(self.rank, what, error.seconds, [source]) from None
            backoff.pause()
        data = np.empty(status.Get_count(MPI.BYTE), dtype=np.uint8)
        message.Recv([data, MPI.BYTE])
        return pickle.loads(data.tobytes())

    def gather_object(
        self, obj: Any, root: int = 0, timeout: float | None = None, what: str = "a gather"
    ) -> list[Any] | None:
        """Gather one small object per rank on root (non-spinning), within `timeout` (default: self.limit)."""
        if self.rank != root:
            payload = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)
            self._bounded(self._control.Isend([payload, MPI.BYTE], dest=root, tag=_GATHER), timeout, what, [root])
            return None
        limit = self.limit if timeout is None else timeout
        gathered: dict[int, Any] = {root: obj}
        backoff = Backoff(self.poll_max_s)
        deadline = _Deadline(self, limit, lambda: [r for r in range(self.size) if r not in gathered])
        status = MPI.Status()
        while len(gathered) < self.size:
            # Probe each missing rank by name: a rank that already answered may have sent its part of the
            # next gather (same tag), which must wait for that gather.
            message = None
            for rank in range(self.size):
                if rank not in gathered:
                    message = self._control.Improbe(rank, _GATHER, status)
                    if message is not None:
                        break
            if message is None:
                try:
                    deadline.check()
                except WaitTimeout as error:
                    missing = [r for r in range(self.size) if r not in gathered]
                    raise CollectiveTimeout(self.rank, what, error.seconds, deadline.silent(missing)) from None
                backoff.pause()
                continue
            data = np.empty(status.Get_count(MPI.BYTE), dtype=np.uint8)
            message.Recv([data, MPI.BYTE])
            gathered[status.Get_source()] = pickle.loads(data.tobytes())
            backoff.reset()
        return [gathered[r] for r in range(self.size)]

    # Point-to-point control objects: pickled bytes through Isend and a matched
    # probe, so the receiver needs no size in advance and polls without spinning.
    def isend_object(self, obj: Any, dest: int, tag: int) -> MPI.Request:
        """Start sending a picklable object; complete the request with wait().
        The request holds the pickled bytes until the message has left."""
        payload = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)
        return self._comm.Isend([payload, MPI.BYTE], dest=dest, tag=tag)

    def send_object(self, obj: Any, dest: int, tag: int) -> None:
        """Send a picklable object and wait (polled) until it has left."""
        self.wait(self.isend_object(obj, dest, tag))

    def poll_object(self, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> tuple[Any, int, int] | None:
        """One object sent with (i)send_object if it has arrived, else None at
        once; returns (object, source, tag)."""
        status = MPI.Status()
        message = self._comm.Improbe(source, tag, status)
        if message is None:
            return None
        data = np.empty(status.Get_count(MPI.BYTE), dtype=np.uint8)
        self.wait(message.Irecv([data, MPI.BYTE]))
        return pickle.loads(data.tobytes()), status.Get_source(), status.Get_tag()

    def recv_object(
        self,
        source: int = ANY_SOURCE,
        tag: int = ANY_TAG,
        timeout: float | None = None,
        awaited: Sequence[int] | None = None,
        what: str = "a message",
        until: Callable[[], bool] | None = None,
    ) -> Any:
        """Wait without spinning for one object sent with (i)send_object;
        returns (object, source, tag). With `timeout`: CollectiveTimeout naming
        the ranks of `awaited` (default: `source`) that fell silent, once
        `timeout` has passed and their notices or beats no longer excuse them.
        None as soon as `until()` is true (a signal to act on)."""
        ranks = list(awaited) if awaited is not None else [] if source == ANY_SOURCE else [source]
        backoff = Backoff(self.poll_max_s)
        deadline = _Deadline(self, timeout, (lambda: ranks) if ranks else None)
        while True:
            received = self.poll_object(source, tag)
            if received is not None:
                return received
            if until is not None and until():
                return None
            try:
                deadline.check()
            except WaitTimeout as error:
                raise CollectiveTimeout(self.rank, what, error.seconds, deadline.silent(ranks)) from None
            backoff.pause()

    def split(self, color: int, key: int | None = None) -> "Communicator":
        """Sub-communicators by color (hyperparameter-search blocks, folds):
        each block then runs its own master/worker job on its own ranks."""
        part = self._comm.Split(color, self.rank if key is None else key)
        child = Communicator(part, self.poll_max_s)
        part.Free()
        child.limit = self.limit
        return child

    def duplicate(self) -> "Communicator":
        """A second channel over the same ranks (collective): its messages never
        match receives posted on this one."""
        child = Communicator(self._comm, self.poll_max_s)
        child.limit = self.limit
        return child

    def barrier(self, timeout: float | None = None, what: str = "a barrier") -> None:
        """Every rank reaches this point, within `timeout` (default: self.limit); a
        gather and a broadcast, so that a timeout names the ranks that never came."""
        if self.size > 1:
            self.gather_object(None, timeout=timeout, what=what)
            limit = self.limit if timeout is None else timeout
            # The others wait longer for rank 0's answer than rank 0 waits for them: the
            # rank that knows who is missing (rank 0) reports first.
            self.bcast_object(None, timeout=limit and 2 * limit + 5, what=what)

    def abort(self, status: int = 1) -> None:
        """End every rank of the job now (used after an unrecoverable error)."""
        self._comm.Abort(status)


def _wire_dtype(compression: str) -> np.dtype:
    if compression == "fp16":
        return np.dtype(np.float16)
    if compression == "bf16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    raise CommunicationError(f"unknown compression {compression!r}")


_SUM_OPS: dict[str, MPI.Op] = {}


def _sum_op(compression: str) -> MPI.Op:
    """An MPI reduction that adds 16-bit floats by way of float32."""
    if compression not in _SUM_OPS:
        dtype = _wire_dtype(compression)

        def add(inbuf: Any, outbuf: Any, datatype: Any) -> None:
            a = np.frombuffer(inbuf, dtype=dtype)
            b = np.frombuffer(outbuf, dtype=dtype)
            b[:] = (a.astype(np.float32) + b.astype(np.float32)).astype(dtype)

        _SUM_OPS[compression] = MPI.Op.Create(add, commute=True)
    return _SUM_OPS[compression]


_WORLD: Communicator | None = None


def world(poll_max_s: float = 0.001) -> Communicator:
    """The process-wide communicator over MPI_COMM_WORLD (created once)."""
    global _WORLD
    if _WORLD is None:
        from ..world_check import check_world

        check_world(MPI.COMM_WORLD.Get_size(), MPI.Get_library_version())  # srun --mpi=none, a foreign mpiexec
        _WORLD = Communicator(MPI.COMM_WORLD, poll_max_s)
    _WORLD.poll_max_s = poll_max_s
    return _WORLD
