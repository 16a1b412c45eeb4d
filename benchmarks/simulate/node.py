"""Downpour on one node, as `python -m benchmarks emulate` runs it: W workers
and S sharded servers sharing `p.cores` cores, messages through MPI's shared
memory. What differs from the cluster processes of model.py (each measured
on this machine, see benchmarks/emulate):

- a large message is copied once, by its receiver, when one of its MPI tests
  finds it (a rendezvous): an update's copy is part of the server's serial
  work and the worker's send completes only then; a reply is copied by the
  worker once it notices it (with S servers, all S slices);
- every wait spins for its first `spin_s` (comm.transport.Backoff), taking a
  full share of the cores, then sleeps between tests that cost `poll_cpu` of
  a core while it waits; one worker (Uplink) waits twice per exchange, for
  its send and for the reply; with S servers (ShardedUplink) once, for all;
- the S servers see the same arrivals in the same order: one stands for all,
  but each does its own CPU work on the shared cores (S tasks at once).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from .engine import Engine, Meter
from .params import WORKER_PASSES, Params, notice_delay

SHARD_PASSES_NODE = 2.0  # ShardedUplink: the update cut into slices, the replies' slices put together


def worker_cpu_s(p: Params) -> float:
    """A worker's CPU per exchange outside its waits: its batch's pass, the
    passes over the weights, fixed costs, and with S servers the slicing."""
    sharded = SHARD_PASSES_NODE * p.copy_s + (p.servers - 1) * p.server_fixed_s if p.servers > 1 else 0.0
    return p.compute_s + WORKER_PASSES["downpour"] * p.copy_s + p.worker_fixed_s + sharded


def server_cpu_s(p: Params) -> float:
    """A server's CPU per update outside its waits: the optimizer step, the
    reply's copy and the loop's fixed cost, on its slice."""
    return p.slice_apply_s + p.slice_copy_s + p.master_fixed_s


def limits(p: Params) -> dict[str, float]:
    """Workers at which each limit binds, for these inputs: the servers (each
    busy all the time with its copies and steps) and the shared cores (all
    ranks' CPU per exchange filling them)."""
    copy_in = p.shard_bytes / (p.server_copy_bandwidth or p.copy_bandwidth or 1.0)
    copy_out = p.bytes / (p.copy_bandwidth or 1.0)
    per_server = copy_in + server_cpu_s(p)
    per_exchange = worker_cpu_s(p) + copy_out + p.servers * per_server
    cycle = p.sleep_s + per_exchange + 2 * p.latency
    return {"servers": cycle / per_server, "cores": (p.cores or 1) * cycle / per_exchange}


def simulate_node(p: Params, workers: int, cycles: int = 20, seed: int = 0) -> dict[str, Any]:
    assert p.copy_bandwidth and p.cores, "simulate_node models ranks sharing the cores of one node"
    engine = Engine(p.cores, seed, p.poll_cpu)
    servers = p.servers
    copy_in, copy_out = p.shard_bytes / (p.server_copy_bandwidth or p.copy_bandwidth), p.bytes / p.copy_bandwidth
    work, serve_s = worker_cpu_s(p), server_cpu_s(p)
    per_exchange = work + copy_out + servers * (copy_in + serve_s)
    cycle = max(p.sleep_s + per_exchange, workers * per_exchange / p.cores, workers * (copy_in + serve_s))
    end = cycles * cycle
    start = 0.25 * end
    meter, busy = Meter(start, end), Meter(start, end)
    queue: deque[int] = deque()
    state: dict[str, Any] = {"busy": False, "idle_since": 0.0, "idle": engine.wait_begin(p.spin_s, servers)}
    waits: list[Any] = [None] * workers
    since = [0.0] * workers
    # A worker's wait: "send" (one server: for its send), "reply", or None; a reply that came during "send".
    phase: list[str | None] = [None] * workers
    early = [False] * workers

    def on_all(seconds: float, then: Callable[[], None]) -> None:
        """The same CPU work on each of the S servers, at once; then `then`."""
        left = [servers]

        def one() -> None:
            left[0] -= 1
            if left[0] == 0:
                then()

        busy.busy_for(engine.now, seconds)
        for _ in range(servers):
            engine.cpu(seconds, one)

    def begin_wait(worker: int, kind: str) -> None:
        since[worker], phase[worker] = engine.now, kind
        waits[worker] = engine.wait_begin(p.spin_s)

    def end_wait(worker: int) -> None:
        engine.wait_end(waits[worker])
        phase[worker] = None

    def compute(worker: int) -> None:
        engine.at(engine.now + p.sleep_s, engine.cpu, work, send, worker)

    def send(worker: int) -> None:
        begin_wait(worker, "send" if servers == 1 else "reply")
        engine.at(engine.now + p.latency, arrive, worker)

    def arrive(worker: int) -> None:
        queue.append(worker)
        if not state["busy"]:  # the servers' polled wait_any notices it
            state["busy"] = True
            delay = notice_delay(engine.now - state["idle_since"], p)
            engine.at(engine.now + delay, take)

    def take() -> None:
        if not queue:
            state["busy"] = False
            state["idle_since"] = engine.now
            state["idle"] = engine.wait_begin(p.spin_s, servers)
            return
        engine.wait_end(state["idle"])
        worker = queue.popleft()
        on_all(copy_in, lambda: received_update(worker))

    def received_update(worker: int) -> None:
        if servers == 1:  # the worker's send has completed: it notices, then waits for the reply
            engine.at(engine.now + notice_delay(engine.now - since[worker], p), sent, worker)
        on_all(serve_s, lambda: replied(worker))

    def sent(worker: int) -> None:
        end_wait(worker)
        if early[worker]:  # the reply is there: the first test of the next wait finds it
            early[worker] = False
            copy_reply(worker)
        else:
            begin_wait(worker, "reply")

    def replied(worker: int) -> None:
        engine.at(engine.now + p.latency, reply_arrives, worker)
        take()

    def reply_arrives(worker: int) -> None:
        if phase[worker] == "send":
            early[worker] = True
            return
        engine.at(
            engine.now + notice_delay(engine.now - since[worker], p), lambda: (end_wait(worker), copy_reply(worker))
        )

    def copy_reply(worker: int) -> None:
        engine.cpu(copy_out, done, worker)

    def done(worker: int) -> None:
        meter.count(engine.now, p.batch, worker)
        compute(worker)

    for worker in range(workers):
        engine.at(0.0, compute, worker)
    engine.run(end)
    return {"samples_per_s": meter.rate(), "master_utilisation": busy.busy / (end - start), "events": engine.events}
