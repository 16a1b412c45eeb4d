"""One emulated run on real MPI ranks: `python -m benchmarks.emulate.ranks SPEC OUT`.

Ranks 0..S-1 are servers, the others workers. Messages are mpilearn's own
(flat float32 vectors behind the header, its Communicator's polled waits,
its Uplink or ShardedUplink on the workers, its OptimizerCenter on the
servers), of the real size; only the model is emulated: a flat numpy vector
whose batch is a fixed sleep plus one pass over the gradient, and whose
optimizer is SGD in numpy. So a worker costs almost no CPU, and 32 of them
fit in a few GB: no keras or torch is imported.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from mpilearn.algorithms.centers import OptimizerCenter
from mpilearn.algorithms.clients import GradientClient
from mpilearn.comm import Tag, world
from mpilearn.flat import DTYPE, FlatLayout, Header, Message
from mpilearn.roles.shards import shard_ranges, slice_layout
from mpilearn.roles.uplink import ShardedUplink, Uplink
from mpilearn.roles.watchdog import Watchdog


class SleepBackend:
    """A ModelBackend over one flat numpy vector: a batch sleeps `compute_s`
    and adds to the gradient (one pass); the optimizer is plain SGD."""

    def __init__(self, layout: FlatLayout, compute_s: float, lr: float = 1e-4) -> None:
        self.layout, self.compute_s, self.lr = layout, compute_s, np.float32(lr)
        self.weights = np.zeros(layout.size, dtype=DTYPE)
        self.model = SimpleNamespace(optimizer=None)

    def get_weights(self, out: np.ndarray) -> None:
        np.copyto(out, self.weights)

    def set_weights(self, flat: np.ndarray) -> None:
        np.copyto(self.weights, flat)

    def add_state(self, delta: np.ndarray) -> None:
        self.weights[self.layout.num_trainable :] += delta

    def accumulate_gradients(self, x: Any, y: Any, out: np.ndarray, sample_weight: Any = None) -> float:
        time.sleep(self.compute_s)
        out += np.float32(1e-3)
        return 0.5

    def apply_gradients(self, grads: np.ndarray, optimizer: Any = None) -> None:
        self.weights[: self.layout.num_trainable] -= self.lr * grads


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
    comm.wait_all(sends)
    wall = time.monotonic() - started
    return {"updates": step, "busy_s": busy, "wall_s": wall, "cpu_s": time.process_time() - cpu}


def _work(comm: Any, layout: FlatLayout, servers: tuple[int, ...], spec: dict[str, Any]) -> dict[str, Any]:
    backend = SleepBackend(layout, spec["compute_s"])
    rule = GradientClient(backend)
    watchdog = Watchdog(600.0)
    uplink = (ShardedUplink(comm, servers, rule, layout, watchdog) if len(servers) > 1
              else Uplink(comm, servers[0], rule, layout, watchdog))
    batch = SimpleNamespace(x=None, y=None, sample_weight=None, size=spec["batch"])
    stamps, cpu = [], time.process_time()
    exchanges = spec["exchanges"]
    for e in range(exchanges):
        loss = rule.train(batch, uplink.update)  # type: ignore[arg-type]
        uplink.add_stats(loss or 0.0, 1, batch.size)
        np.isfinite(uplink.update.payload).all()  # the worker loop's check before each exchange
        uplink.exchange(0, e == exchanges - 1, 1)
        stamps.append(time.monotonic())
    return {"stamps": stamps, "cpu_s": time.process_time() - cpu}


def _median_s(action: Any, repeats: int = 15) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def calibrate(spec: dict[str, Any]) -> dict[str, Any]:
    """One process: a pass (copy), the SGD step and the gradient pass of the
    emulated model, at the full size and at each server's slice size."""
    n = int(spec["params"])
    out: dict[str, Any] = {"copy_s": {}, "sgd_s": {}, "pass_s": {}}
    for servers in sorted({1, *spec["servers"]}):
        size = max(1, n // servers)
        backend = SleepBackend(FlatLayout(((size,),), ()), 0.0)
        grads, scratch = np.ones(size, dtype=DTYPE), np.empty(size, dtype=DTYPE)
        out["copy_s"][str(servers)] = _median_s(lambda b=backend, s=scratch: b.get_weights(s))
        out["sgd_s"][str(servers)] = _median_s(lambda b=backend, g=grads: b.apply_gradients(g))
        out["pass_s"][str(servers)] = _median_s(lambda b=backend, s=scratch: b.accumulate_gradients(None, None, s))
    return out


def available_cores(comm: Any, seconds: float) -> float | None:
    """CPU this job gets now: every rank spins for `seconds`; the cores they
    got together (a shared machine gives a job less than its cores)."""
    started, cpu = time.monotonic(), time.process_time()
    while time.monotonic() - started < seconds:
        sum(range(1000))
    mine = (time.process_time() - cpu) / (time.monotonic() - started)
    got = comm.gather_object(mine)
    return float(sum(got)) if got is not None else None


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    if spec.get("calibrate"):
        Path(argv[1]).write_text(json.dumps(calibrate(spec)))
        return 0
    comm = world()
    if spec.get("spin"):
        cores = available_cores(comm, spec["spin"])
        if comm.rank == 0:
            Path(argv[1]).write_text(json.dumps(cores))
        return 0
    servers = tuple(range(spec["servers"]))
    workers = tuple(range(spec["servers"], comm.size))
    layout = FlatLayout(((int(spec["params"]),),), ())
    comm.barrier()
    if comm.rank in servers:
        mine = slice_layout(shard_ranges(layout, len(servers), comm.rank))
        result: dict[str, Any] = {"role": "server", **_serve(comm, mine, workers)}
    else:
        result = {"role": "worker", **_work(comm, layout, servers, spec)}
    gathered = comm.gather_object(result)
    if comm.rank == 0:
        assert gathered is not None
        Path(argv[1]).write_text(json.dumps(gathered))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
