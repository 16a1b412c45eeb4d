"""One emulated run on real MPI ranks: `python -m benchmarks.emulate.ranks SPEC OUT`.

Ranks 0..S-1 are servers, the others workers. Messages are mpilearn's own
(flat float32 vectors behind the header, its Communicator's polled waits,
its Uplink or ShardedUplink on the workers, its OptimizerCenter on the
servers), of the real size; only the model is emulated: a flat numpy vector
whose batch is a fixed sleep plus one pass over the gradient, and whose
optimizer is SGD in numpy. So a worker costs almost no CPU, and 32 of them
fit in a few GB: no keras or torch is imported.

The model's inputs are measured in the same job, at the run's sizes: before
the run, the first worker and server 0 time the receiver's copy of an update
and of a reply and their passes over the weights, while every other rank
waits and measures what a polled wait costs; during the run, every rank
counts its CPU inside and outside its waits (Waits).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from mpilearn.algorithms.centers import OptimizerCenter
from mpilearn.algorithms.clients import GradientClient
from mpilearn.comm import Tag, world
from mpilearn.flat import DTYPE, HEADER_SIZE, FlatLayout, Header, Message
from mpilearn.roles.shards import shard_ranges, slice_layout
from mpilearn.roles.uplink import ShardedUplink, Uplink
from mpilearn.roles.watchdog import Watchdog

CALIBRATION_S = 1.5  # the other ranks' polled wait while the copies are timed: long against Backoff's 2 ms spin
COPIES = 8


class SleepBackend:
    """A ModelBackend over one flat numpy vector: a batch sleeps `compute_s`
    and adds to the gradient (one pass); the optimizer is plain SGD."""

    def __init__(self, layout: FlatLayout, compute_s: float, lr: float = 1e-4) -> None:
        self.layout, self.compute_s, self.lr = layout, compute_s, np.float32(lr)
        self.weights = np.zeros(layout.size, dtype=DTYPE)
        self.model = SimpleNamespace(optimizer=None)
        self.slept: list[float] = []  # each sleep as it lasted (an oversleep is the machine's)

    def get_weights(self, out: np.ndarray) -> None:
        np.copyto(out, self.weights)

    def set_weights(self, flat: np.ndarray) -> None:
        np.copyto(self.weights, flat)

    def add_state(self, delta: np.ndarray) -> None:
        self.weights[self.layout.num_trainable :] += delta

    def accumulate_gradients(
        self, x: Any, y: Any, out: np.ndarray, sample_weight: Any = None, ready: Any = None, progress: Any = None
    ) -> float:
        if self.compute_s:
            began = time.monotonic()
            time.sleep(self.compute_s)
            self.slept.append(time.monotonic() - began)
        out += np.float32(1e-3)
        if ready is not None:  # one pass: every gradient is ready at its end
            for index in range(len(self.layout.trainable_shapes) - 1, -1, -1):
                ready(index)
        return 0.5

    def apply_gradients(self, grads: np.ndarray, optimizer: Any = None) -> None:
        self.weights[: self.layout.num_trainable] -= self.lr * grads


class Waits:
    """Counts the CPU and wall time a rank spends inside the Communicator's
    waits (spinning, polling and the receive copies MPI makes in its tests)."""

    def __init__(self, comm: Any) -> None:
        self.cpu = self.wall = 0.0
        for name in ("wait", "wait_any", "wait_all"):
            setattr(comm, name, self._timed(getattr(comm, name)))

    def _timed(self, call: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            cpu, wall = time.process_time(), time.monotonic()
            try:
                return call(*args, **kwargs)
            finally:
                self.cpu += time.process_time() - cpu
                self.wall += time.monotonic() - wall

        return timed


def _serve(comm: Any, layout: FlatLayout, workers: tuple[int, ...]) -> dict[str, float]:
    """The master loop's hot path on a slice: take whichever update is
    first, one optimizer step, answer (the same calls as roles/master.py)."""
    rule = OptimizerCenter(SleepBackend(layout, 0.0))
    inbox = [Message(layout) for _ in workers]
    outbox = [Message(layout) for _ in workers]
    receives = [comm.irecv(inbox[i].buffer, source=w) for i, w in enumerate(workers)]
    sends = [comm.NULL_REQUEST for _ in workers]
    active, step, busy = set(range(len(workers))), 0, 0.0
    started = time.monotonic()
    cpu = time.process_time()
    waits = Waits(comm)
    while active:
        slot, status = comm.wait_any(receives)
        began = time.monotonic()
        rule.absorb([(slot, inbox[slot])])
        step += 1
        comm.wait(sends[slot])
        rule.reply(slot, outbox[slot])
        outbox[slot].set(Header.BASE_STEP, step)
        last = status.Get_tag() == Tag.UPDATE_EPOCH_END
        sends[slot] = comm.isend(outbox[slot].buffer, workers[slot], Tag.STOP if last else Tag.WEIGHTS)
        if last:
            receives[slot] = comm.NULL_REQUEST
            active.discard(slot)
        else:
            receives[slot] = comm.irecv(inbox[slot].buffer, source=workers[slot])
        busy += time.monotonic() - began
    cpu_s = time.process_time() - cpu
    wall = time.monotonic() - started
    waited_cpu, waited = waits.cpu, waits.wall
    comm.wait_all(sends)
    return {
        "updates": step,
        "busy_s": busy,
        "wall_s": wall,
        "cpu_s": cpu_s,
        "wait_cpu_s": waited_cpu,
        "wait_s": waited,
        "work_cpu_per_update_s": (cpu_s - waited_cpu) / max(step, 1),
    }


def _work(comm: Any, layout: FlatLayout, servers: tuple[int, ...], spec: dict[str, Any]) -> dict[str, Any]:
    backend = SleepBackend(layout, spec["compute_s"])
    rule = GradientClient(backend)
    watchdog = Watchdog(600.0)
    uplink = (
        ShardedUplink(comm, servers, rule, layout, watchdog)
        if len(servers) > 1
        else Uplink(comm, servers[0], rule, layout, watchdog)
    )
    batch = SimpleNamespace(x=None, y=None, sample_weight=None, size=spec["batch"])
    waits = Waits(comm)
    stamps, cpu = [], time.process_time()
    exchanges = spec["exchanges"]
    for e in range(exchanges):
        loss = rule.train(batch, uplink.update)  # type: ignore[arg-type]
        uplink.add_stats(loss or 0.0, 1, batch.size)
        np.isfinite(uplink.update.payload).all()  # the worker loop's check before each exchange
        uplink.exchange(0, e == exchanges - 1, 1)
        stamps.append(time.monotonic())
    cpu_s = time.process_time() - cpu
    return {
        "stamps": stamps,
        "cpu_s": cpu_s,
        "wait_cpu_s": waits.cpu,
        "wait_s": waits.wall,
        "work_cpu_per_exchange_s": (cpu_s - waits.cpu) / exchanges,
        "sleep_s": float(np.median(backend.slept)),
    }


def _median_s(action: Any, repeats: int = 15) -> float:
    times = []
    for _ in range(repeats):
        started = time.process_time()
        action()
        times.append(time.process_time() - started)
    return float(np.median(times))


def _completing_test_cpu(request: Any) -> float:
    """Poll one request (tests 0.2 ms apart, no spinning); the CPU of the
    test that completed it: for a large message, the receiver's copy."""
    while True:
        cpu = time.process_time()
        done = request.Test()
        spent = time.process_time() - cpu
        if done:
            return spent
        time.sleep(2e-4)


def calibrate(comm: Any, layout: FlatLayout, servers: tuple[int, ...], workers: tuple[int, ...]) -> dict[str, Any]:
    """In the job, before the run: the first worker and server 0 time a
    message of server 0's size each way (the receiver's copy) and their
    passes over the weights; every other rank waits meanwhile (a polled wait,
    as in the run) and reports its CPU per second waited."""
    tag = 90
    size = HEADER_SIZE + slice_layout(shard_ranges(layout, len(servers), 0)).size
    server, worker, rank = servers[0], workers[0], comm.rank
    out: dict[str, Any] = {"message_floats": size}
    if rank in (server, worker):
        peer = worker if rank == server else server
        buffer = np.ones(size, dtype=DTYPE)
        started, copies = time.monotonic(), []
        for _ in range(COPIES):
            for sender in (worker, server):
                if rank == sender:
                    _completing_test_cpu(comm.isend(buffer, peer, tag))
                else:
                    copies.append(_completing_test_cpu(comm.irecv(buffer, source=peer, tag=tag)))
        out["receive_copy_s"] = float(np.median(copies))
        if rank == worker:
            backend = SleepBackend(layout, 0.0)
            scratch = np.empty(layout.size, dtype=DTYPE)
            out["pass_s"] = _median_s(lambda: backend.accumulate_gradients(None, None, scratch))
            out["copy_s"] = _median_s(lambda: backend.get_weights(scratch))
            time.sleep(max(0.0, CALIBRATION_S - (time.monotonic() - started)))
            done = np.zeros(1, dtype=DTYPE)
            comm.wait_all([comm.isend(done, r, tag + 1) for r in range(comm.size) if r not in (server, worker)])
        else:
            mine = slice_layout(shard_ranges(layout, len(servers), 0))
            backend = SleepBackend(mine, 0.0)
            grads, scratch = np.ones(mine.size, dtype=DTYPE), np.empty(mine.size, dtype=DTYPE)
            out["sgd_s"] = _median_s(lambda: backend.apply_gradients(grads))
            out["copy_s"] = _median_s(lambda: backend.get_weights(scratch))
    else:
        done = np.zeros(1, dtype=DTYPE)
        cpu, wall = time.process_time(), time.monotonic()
        comm.wait(comm.irecv(done, source=worker, tag=tag + 1))
        out["wait_cpu_per_s"] = (time.process_time() - cpu) / (time.monotonic() - wall)
    comm.barrier()
    return out


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    comm = world()
    servers = tuple(range(spec["servers"]))
    workers = tuple(range(spec["servers"], comm.size))
    layout = FlatLayout(((int(spec["params"]),),), ())
    comm.barrier()
    calibration = calibrate(comm, layout, servers, workers)
    if comm.rank in servers:
        mine = slice_layout(shard_ranges(layout, len(servers), comm.rank))
        result: dict[str, Any] = {"role": "server", **_serve(comm, mine, workers)}
    else:
        result = {"role": "worker", **_work(comm, layout, servers, spec)}
    result["calibration"] = calibration
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gathered = comm.gather_object(result)
    if comm.rank == 0:
        assert gathered is not None
        Path(argv[1]).write_text(json.dumps(gathered))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
