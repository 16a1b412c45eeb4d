"""Buffer transport over one duplicated communicator, with non-spinning waits."""
from __future__ import annotations

import pickle
import time
from typing import Any, Sequence

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


# A collective moves data only while every rank is inside MPI (no progress
# thread): a rank asleep between polls stalls its peers. So a collective's
# wait spins for as long as its bytes take at this conservative rate (always
# at least Backoff's 2 ms) before it starts to sleep; ranks of a collective
# arrive together, so the spin is work, not waiting.
COLLECTIVE_SPIN_BYTES_PER_S = 1e9


def _collective_spin(nbytes: int) -> float:
    return max(0.002, nbytes / COLLECTIVE_SPIN_BYTES_PER_S)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _check(deadline: float | None, timeout: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise WaitTimeout(timeout or 0.0)


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


class Communicator:
    """A private duplicate of an MPI communicator with the calls mpilearn uses."""

    # A request that is already complete; wait_any skips it.
    NULL_REQUEST = MPI.REQUEST_NULL

    def __init__(self, comm: MPI.Comm, poll_max_s: float = 0.001) -> None:
        # A private duplicate: our tags never meet the user's own MPI traffic.
        self._comm = comm.Dup()
        self.rank: int = self._comm.Get_rank()
        self.size: int = self._comm.Get_size()
        self.poll_max_s = poll_max_s
        node = self._comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank: int = node.Get_rank()
        self.local_size: int = node.Get_size()
        # World ranks sharing this node (GPU placement needs to know whether the master is here).
        self.node_ranks: tuple[int, ...] = tuple(node.allgather(self.rank))
        node.Free()

    # ---- buffers (hot path) ----------------------------------------------
    def isend(self, buffer: np.ndarray, dest: int, tag: int) -> MPI.Request:
        return self._comm.Isend([buffer, MPI.FLOAT], dest=dest, tag=tag)

    def irecv(self, buffer: np.ndarray, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> MPI.Request:
        return self._comm.Irecv([buffer, MPI.FLOAT], source=source, tag=tag)

    def wait(self, request: MPI.Request, timeout: float | None = None, spin_s: float = 0.002) -> MPI.Status:
        """Complete one request, polling without sleep for `spin_s`, then
        with growing sleeps; returns its status. Raises WaitTimeout after
        `timeout` seconds (None: wait forever)."""
        status = MPI.Status()
        backoff = Backoff(self.poll_max_s, spin_s=spin_s)
        deadline = _deadline(timeout)
        while not request.Test(status):
            _check(deadline, timeout)
            backoff.pause()
        return status

    def wait_any(self, requests: Sequence[MPI.Request], timeout: float | None = None) -> tuple[int, MPI.Status]:
        """Complete whichever request finishes first; returns (index, status)."""
        status = MPI.Status()
        backoff = Backoff(self.poll_max_s)
        deadline = _deadline(timeout)
        requests = list(requests)
        while True:
            index, done = MPI.Request.Testany(requests, status)
            if done:
                if index == MPI.UNDEFINED:
                    raise CommunicationError("wait_any called with no active request")
                return index, status
            _check(deadline, timeout)
            backoff.pause()

    def wait_all(self, requests: Sequence[MPI.Request], timeout: float | None = None) -> list[MPI.Status]:
        """Complete every request (polled, never spinning); returns their statuses.
        On timeout, WaitTimeout.pending lists the positions still incomplete."""
        statuses = [MPI.Status() for _ in requests]
        backoff = Backoff(self.poll_max_s)
        deadline = _deadline(timeout)
        requests = list(requests)
        while not MPI.Request.Testall(requests, statuses):
            try:
                _check(deadline, timeout)
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
        self.wait(self._comm.Iallreduce(MPI.IN_PLACE, [packed.view(np.uint16), MPI.UINT16_T], op=_sum_op(compression)),
                  timeout, spin)
        buffer[:] = packed.astype(np.float32)

    def allreduce_mean(self, buffer: np.ndarray, compression: str = "none", timeout: float | None = None) -> None:
        """Replace a float32 buffer by its mean over all ranks, in place."""
        buffer *= np.float32(1.0 / self.size)
        self.allreduce_sum(buffer, compression, timeout)

    def send(self, buffer: np.ndarray, dest: int, tag: int) -> None:
        self.wait(self.isend(buffer, dest, tag))

    def recv(self, buffer: np.ndarray, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> MPI.Status:
        return self.wait(self.irecv(buffer, source, tag))

    def bcast_array(self, buffer: np.ndarray, root: int = 0) -> None:
        """Broadcast a float32 buffer in place (non-spinning)."""
        self.wait(self._comm.Ibcast([buffer, MPI.FLOAT], root=root), spin_s=_collective_spin(buffer.nbytes))

    # ---- small control objects (pickled, never on the hot path) ------------
    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """Broadcast a picklable object, waiting without spinning."""
        size = np.zeros(1, dtype=np.int64)
        payload = b""
        if self.rank == root:
            payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
            size[0] = len(payload)
        self.wait(self._comm.Ibcast([size, MPI.INT64_T], root=root))
        data = np.frombuffer(payload, dtype=np.uint8).copy() if self.rank == root else np.empty(int(size[0]), dtype=np.uint8)
        self.wait(self._comm.Ibcast([data, MPI.BYTE], root=root))
        return obj if self.rank == root else pickle.loads(data.tobytes())

    def gather_object(self, obj: Any, root: int = 0) -> list[Any] | None:
        """Gather one small object per rank on root (non-spinning)."""
        payload = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)
        sizes = np.zeros(self.size, dtype=np.int64)
        self.wait(self._comm.Igather([np.array([payload.size], dtype=np.int64), MPI.INT64_T], [sizes, MPI.INT64_T], root=root))
        if self.rank != root:
            self.wait(self._comm.Igatherv([payload, MPI.BYTE], None, root=root))
            return None
        displs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        data = np.empty(int(sizes.sum()), dtype=np.uint8)
        self.wait(self._comm.Igatherv([payload, MPI.BYTE], [data, sizes, displs, MPI.BYTE], root=root))
        return [pickle.loads(data[d : d + s].tobytes()) for d, s in zip(displs, sizes)]

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

    def recv_object(self, source: int = ANY_SOURCE, tag: int = ANY_TAG) -> tuple[Any, int, int]:
        """Wait without spinning for one object sent with (i)send_object;
        returns (object, source, tag)."""
        backoff = Backoff(self.poll_max_s)
        while True:
            received = self.poll_object(source, tag)
            if received is not None:
                return received
            backoff.pause()

    def split(self, color: int, key: int | None = None) -> "Communicator":
        """Sub-communicators by color (hyperparameter-search blocks, folds):
        each block then runs its own master/worker job on its own ranks."""
        part = self._comm.Split(color, self.rank if key is None else key)
        child = Communicator(part, self.poll_max_s)
        part.Free()
        return child

    def barrier(self) -> None:
        self.wait(self._comm.Ibarrier())

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
