"""The algorithms as event processes: asynchronous masters (downpour, easgd,
trees), synchronous rounds, and the allreduce ring; analytic bounds."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import replace
from collections.abc import Callable
from typing import Any

import numpy as np

from .engine import Engine, Link, Meter, compute_time, make_link, send_pair
from .params import (
    MASTER_PASSES,
    SHARD_PASSES,
    SUB_UPLINK_PASSES,
    SYNC_MEAN_PASSES_PER_WORKER,
    TOP_PASSES,
    WORKER_PASSES,
    Params,
    notice_delay,
)


class _Server:
    """A master (or sub-master): updates wait in a FIFO queue and are served
    one at a time. A job gets `release`, to call when the server is free again."""

    def __init__(self, engine: Engine, p: Params, meter: Meter, service: float) -> None:
        self.engine, self.p, self.meter, self.service = engine, p, meter, service
        self.inbound = make_link(engine, p)
        self.outbound = make_link(engine, p)
        self.queue: deque[Callable[[Callable[[], None]], None]] = deque()
        self.busy = False
        self.idle_since = 0.0

    def submit(self, job: Callable[[Callable[[], None]], None]) -> None:
        self.queue.append(job)
        if not self.busy:  # asleep in its polled wait: it notices at its next test
            self.busy = True
            delay = notice_delay(self.engine.now - self.idle_since, self.p)
            self.engine.at(self.engine.now + delay, self._next)

    def _next(self) -> None:
        if not self.queue:
            self.busy = False
            self.idle_since = self.engine.now
            return
        self.busy = True
        self.queue.popleft()(self._next)

    def work(self, seconds: float, then: Callable[[], None]) -> None:
        """CPU work of this server (counted as busy time), then `then`."""
        self.meter.busy_for(self.engine.now, seconds)
        self.engine.cpu(seconds, then)


def _local_s(p: Params, algo: str) -> float:
    """A worker's own optimizer step per batch (EASGD's SGD, DiLoCo's inner
    step) and the reset of its gradient buffer."""
    return {"easgd": p.local_apply_s + p.reset_s, "diloco": p.own_apply_s + p.reset_s}.get(algo, 0.0)


def _batches(engine: Engine, p: Params, cpu: float, then: Callable[..., None], *args: Any) -> None:
    """A worker's batches: their sleeping part (emulated compute), then their CPU work."""
    if p.sleep_s:
        engine.at(engine.now + p.sync_every * p.sleep_s, engine.cpu, cpu, then, *args)
    else:
        engine.cpu(cpu, then, *args)


def _exchange_cpu_s(p: Params, algo: str) -> float:
    """A worker's CPU per exchange besides its batches: passes over the
    weights, fixed loop costs, and with S servers the slicing and S-1 more requests."""
    sharded = (SHARD_PASSES * p.copy_s + (p.servers - 1) * p.server_fixed_s) if p.servers > 1 else 0.0
    return WORKER_PASSES[algo] * p.copy_s + p.worker_fixed_s + sharded


def _window(p: Params, workers: int, algo: str, cycles: int) -> tuple[float, float]:
    """A simulated time long enough for `cycles` exchanges of every worker."""
    service = master_service_s(p, algo)
    wire = p.shard_bytes / p.bandwidth
    local = _local_s(p, algo) * p.sync_every
    cycle = (
        (p.compute_s + p.sleep_s) * p.sync_every
        + local
        + 2 * (p.latency + p.bytes / p.bandwidth)
        + service
        + p.worker_fixed_s
    )
    busy = workers * max(service, wire) if p.masters == 1 else cycle
    if p.cores:
        cycle *= max(1.0, (workers + p.servers) / p.cores)
    end = cycles * max(cycle, busy if not algo.endswith("sync") else cycle + busy)
    return 0.25 * end, end


def simulate_async(
    p: Params, workers: int, algo: str = "downpour", cycles: int = 20, seed: int = 0
) -> dict[str, float]:
    """Downpour, EASGD or asynchronous DiLoCo, with one master, S sharded
    servers (p.servers) or a two-level tree (p.masters >= 2).

    S servers are symmetric: every worker sends each of them its slice at the
    same time, so each sees the same arrivals and serves them in the same
    order; one server with a slice's costs (and its own links) stands for all
    S, and the worker's link (when modelled) carries all S slices."""
    engine = Engine(p.cores, seed)
    start, end = _window(p, workers, algo, cycles)
    meter = Meter(start, end)
    k = p.sync_every
    local = _local_s(p, algo)
    worker_cpu = _exchange_cpu_s(p, algo)
    service = master_service_s(p, algo)
    subs = max(1, p.masters - 1) if p.masters > 1 else 0
    top = _Server(engine, p, Meter(start, end), service if subs == 0 else TOP_PASSES * p.copy_s + p.master_fixed_s)
    servers = [top] if subs == 0 else [_Server(engine, p, Meter(start, end), service) for _ in range(subs)]
    steps = [0] * len(servers)
    nic_out = [Link(engine, p.bandwidth, p.latency) for _ in range(workers)] if p.worker_link else None
    nic_in = [Link(engine, p.bandwidth, p.latency) for _ in range(workers)] if p.worker_link else None
    slices = p.servers if subs == 0 else 1

    waiting_since = [0.0] * workers

    def compute(worker: int) -> None:
        _batches(engine, p, compute_time(engine, p, k) + k * local + worker_cpu, send, worker)

    def send(worker: int) -> None:
        server = servers[worker % len(servers)]
        waiting_since[worker] = engine.now
        if nic_out is not None:  # the other slices leave before the one the stand-in server gets
            nic_out[worker].free_at = (
                max(engine.now, nic_out[worker].free_at) + (slices - 1) * p.shard_bytes / p.bandwidth
            )
        send_pair(nic_out[worker] if nic_out else None, server.inbound, p.shard_bytes, sent, worker)

    def sent(worker: int) -> None:
        server = servers[worker % len(servers)]
        server.submit(lambda release: serve(worker, release))
        waiting_since[worker] = engine.now + notice_delay(
            engine.now - waiting_since[worker], p
        )  # the isend's wait ends

    def received(worker: int) -> None:
        delay = (slices - 1) * p.shard_bytes / p.bandwidth if nic_in is not None else 0.0  # the other slices arrive too
        engine.at(engine.now + delay + notice_delay(engine.now + delay - waiting_since[worker], p), compute, worker)

    def serve(worker: int, release: Callable[[], None]) -> None:
        index = worker % len(servers)
        server = servers[index]

        def applied() -> None:
            meter.count(engine.now, k * p.batch, worker)
            steps[index] += 1
            if subs and steps[index] % (p.upstream_every or k) == 0:
                upstream(server, lambda: (reply(worker), release()))  # the sub-master waits for the top
            else:
                reply(worker)
                release()

        server.work(server.service, applied)

    def upstream(sub: _Server, then: Callable[[], None]) -> None:
        """A sub-master's round trip to the top with its weight delta."""
        half = SUB_UPLINK_PASSES * p.copy_s / 2

        def at_top(release: Callable[[], None]) -> None:
            top.work(top.service, lambda: (top.outbound.send(p.bytes, lambda: sub.work(half, then)), release()))

        sub.work(half, lambda: top.inbound.send(p.bytes, top.submit, at_top))

    def reply(worker: int) -> None:
        send_pair(
            nic_in[worker] if nic_in else None, servers[worker % len(servers)].outbound, p.shard_bytes, received, worker
        )

    for worker in range(workers):
        engine.at(0.0, compute, worker)
    engine.run(end)
    window = end - start
    return {
        "samples_per_s": meter.rate(),
        "master_utilisation": top.meter.busy / window,
        "submaster_utilisation": float(np.mean([s.meter.busy / window for s in servers])) if subs else None,
        "events": engine.events,
    }


def simulate_sync(p: Params, workers: int, cycles: int = 20, seed: int = 0, algo: str = "sync") -> dict[str, float]:
    """Rounds: all workers compute (DiLoCo: H inner steps), all updates reach
    the master, one averaged step, the master answers every worker in turn.
    S sharded servers do the same on their slices, in parallel (symmetric)."""
    engine = Engine(p.cores, seed)
    start, end = _window(p, workers, algo, cycles)
    meter = Meter(start, end)
    master = _Server(engine, p, meter, 0.0)  # its queue is unused: a round is one block of work
    k = p.sync_every
    base = "diloco" if algo.startswith("diloco") else "sync"
    local = _local_s(p, base)
    worker_cpu = _exchange_cpu_s(p, base)
    apply = p.slice_apply_s  # sync: the model's optimizer; DiLoCo: the outer one, both fused steps
    state = {"arrived": 0, "round_start": 0.0}
    waiting_since = [0.0] * workers

    def compute(worker: int) -> None:
        _batches(engine, p, compute_time(engine, p, k) + k * local, lambda: engine.cpu(worker_cpu, send, worker))

    def send(worker: int) -> None:
        waiting_since[worker] = engine.now
        master.inbound.send(p.shard_bytes, arrive, worker)

    def arrive(worker: int) -> None:
        waiting_since[worker] = engine.now + notice_delay(
            engine.now - waiting_since[worker], p
        )  # the isend's wait ends
        state["arrived"] += 1
        if state["arrived"] == workers:  # the master's polled wait_all notices the last one
            state["arrived"] = 0
            delay = notice_delay(engine.now - state["round_start"], p)
            mean = (SYNC_MEAN_PASSES_PER_WORKER * (workers - 1) + (1 if workers > 1 else 0)) * p.slice_copy_s
            engine.at(engine.now + delay, master.work, apply + mean + p.master_fixed_s, lambda: answer(0))

    def answer(worker: int) -> None:
        """The master's replies, one after the other: copy the weights, send."""
        if worker == 0:
            meter.count(engine.now, workers * k * p.batch)
        if worker < workers:
            master.work(
                p.slice_copy_s, lambda: (master.outbound.send(p.shard_bytes, received, worker), answer(worker + 1))
            )
        else:
            state["round_start"] = engine.now

    def received(worker: int) -> None:
        engine.at(engine.now + notice_delay(engine.now - waiting_since[worker], p), compute, worker)

    for worker in range(workers):
        engine.at(0.0, compute, worker)
    engine.run(end)
    window = end - start
    return {"samples_per_s": meter.rate(), "master_utilisation": meter.busy / window, "events": engine.events}


def ring_allreduce_s(nbytes: float, peers: int, bandwidth: float, latency: float) -> float:
    """Ring allreduce: reduce-scatter + allgather, 2(p-1) steps of bytes/p each."""
    if peers <= 1:
        return 0.0
    return 2 * (peers - 1) / peers * nbytes / bandwidth + 2 * (peers - 1) * latency


def rabenseifner_allreduce_s(nbytes: float, peers: int, bandwidth: float, latency: float) -> float:
    """Recursive-halving reduce-scatter + recursive-doubling allgather (what
    MPICH uses for all but tiny messages): the ring's bytes in 2 log2(p) steps."""
    if peers <= 1:
        return 0.0
    return 2 * (peers - 1) / peers * nbytes / bandwidth + 2 * math.ceil(math.log2(peers)) * latency


def allreduce_s(p: Params, peers: int) -> float:
    bandwidth, latency = p.allreduce_bandwidth or p.bandwidth, p.allreduce_latency or p.latency
    if p.allreduce_algorithm == "ring":
        return ring_allreduce_s(p.bytes, peers, bandwidth, latency)
    if p.allreduce_algorithm == "rabenseifner":
        return rabenseifner_allreduce_s(p.bytes, peers, bandwidth, latency)
    # hierarchical: reduce inside each node (shared memory, one pass per rank), across nodes, broadcast back.
    local = min(p.ranks_per_node, peers)
    node = 2 * (local - 1) * p.copy_s / local if local > 1 else 0.0
    return node + rabenseifner_allreduce_s(p.bytes, math.ceil(peers / local), bandwidth, latency)


def exposed_allreduce_s(p: Params, peers: int) -> float:
    """The allreduce time a step waits for after its last backward pass: the buckets' allreduces
    (each its own latency steps) hide behind that backward, all but the last bucket's."""
    if p.bucket_bytes <= 0 or peers <= 1 or p.bytes <= p.bucket_bytes:
        return allreduce_s(p, peers)
    buckets = math.ceil(p.bytes / p.bucket_bytes)
    one = allreduce_s(replace(p, params=max(1, p.params // buckets), copy_s=p.copy_s / buckets), peers)
    backward = p.backward_fraction * p.compute_s
    return max(one, buckets * one - backward)


def simulate_allreduce(p: Params, peers: int, cycles: int = 20, seed: int = 0) -> dict[str, float]:
    """Each peer computes, joins the allreduce, and once it has noticed the
    result (its polled wait) takes the optimizer step and computes again; the
    allreduce ends its exposed time (exposed_allreduce_s: the buckets hidden
    behind backward) after the last peer joined."""
    engine = Engine(p.cores, seed)
    ring = exposed_allreduce_s(p, peers)
    cycle = p.compute_s * p.sync_every + ring + p.apply_s
    if p.cores:
        cycle *= max(1.0, peers / p.cores)
    end = cycles * cycle
    start = 0.25 * end
    meter = Meter(start, end)
    k = p.sync_every
    fixed = p.allreduce_fixed_s if peers > 1 else 0.0
    step_cpu = p.own_apply_s + p.reset_s + fixed
    joined: list[tuple[int, float]] = []

    def compute(peer: int) -> None:
        engine.cpu(compute_time(engine, p, k), join, peer)

    def join(peer: int) -> None:
        if peers == 1:
            meter.count(engine.now, k * p.batch, peer)
            engine.cpu(step_cpu, compute, peer)
            return
        joined.append((peer, engine.now))
        if len(joined) == peers:
            done = engine.now + ring
            meter.count(done, peers * k * p.batch)
            for other, since in joined:
                engine.at(done + notice_delay(done - since, p), engine.cpu, step_cpu, compute, other)
            joined.clear()

    for peer in range(peers):
        engine.at(0.0, compute, peer)
    engine.run(end)
    return {"samples_per_s": meter.rate(), "master_utilisation": None, "events": engine.events}


def simulate(p: Params, algo: str, workers: int, cycles: int = 20, seed: int = 0) -> dict[str, float]:
    """algo: downpour, sync, easgd, diloco (asynchronous), diloco-sync, allreduce."""
    if algo == "allreduce":
        return simulate_allreduce(p, workers, cycles, seed)
    if algo in ("sync", "diloco-sync"):
        return simulate_sync(p, workers, cycles, seed, algo)
    return simulate_async(p, workers, algo, cycles, seed)


def single_worker_rate(p: Params) -> float:
    """Samples/s of one process training alone (the efficiency baseline)."""
    return p.batch / (p.compute_s + p.sleep_s + p.own_apply_s + p.reset_s)


def master_service_s(p: Params, algo: str) -> float:
    """A server's time per update: on a slice of the weights when sharded."""
    base = "diloco" if algo.startswith("diloco") else algo
    apply = 0.0 if base == "easgd" else p.slice_apply_s
    return MASTER_PASSES.get(base, 1.0) * p.slice_copy_s + apply + p.master_fixed_s


def saturation_workers(p: Params, algo: str) -> float:
    """Workers at which one master (each of S servers) is busy all the time: a
    worker's cycle with idle servers over a server's time per update (CPU or link, the larger)."""
    base = "diloco" if algo.startswith("diloco") else algo
    service = max(master_service_s(p, algo), p.shard_bytes / p.bandwidth)
    local = _local_s(p, base) * p.sync_every
    cycle = (
        (p.compute_s + p.sleep_s) * p.sync_every
        + local
        + _exchange_cpu_s(p, base)
        + 2 * (p.latency + p.bytes / p.bandwidth)
        + master_service_s(p, algo)
    )
    return cycle / service
