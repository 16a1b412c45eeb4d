"""`simulate`: a discrete-event model of mpilearn training at 8 to 4096 workers.

Pure Python and numpy: a heapq event queue, CPU work as tasks (processor
sharing when ranks outnumber cores, as on this 2-core machine), and links as
FIFO resources (latency + bytes / bandwidth); on one node (`cores` given) a
message is instead a copy on both ends, CPU work that shares the cores. What each rank does per
exchange follows the code (roles/, algorithms/), counted in passes over the
flat weight vector, whose time (`copy_s`) is the master's measured reply copy:

- downpour (asynchronous): a worker computes `sync_every` batches, prepares
  its update (`WORKER_PASSES`), sends it over the master's inbound link; the
  master serves updates one at a time, first come first served: optimizer
  step (`apply_s`) + reply copy + fixed loop cost; the weights go back over
  the master's outbound link; the worker takes them and computes again.
- sync: the same, but the master waits for every worker, averages the
  round's gradients (1.5 passes per worker), applies once and answers all.
- easgd: workers take local SGD steps (Keras SGD) and exchange weights; the
  master's elastic update is ~6 passes plus the reply.
- allreduce: every peer computes, then a ring allreduce of the gradients,
  2(p-1)/p * bytes / bandwidth + 2(p-1) * latency, then every peer applies
  the optimizer step.
- hierarchical (`--masters M`, downpour): M-1 sub-masters each serve an equal
  share of the workers as above and, every `sync_every` of their own steps,
  exchange a weight delta with the top master (3.5 passes there, plus the reply).

Inputs come from the benchmark results (results/scaling.json: a solo
worker's time per batch; master.json: apply and copy times by model size
and the loop's fixed costs; transport.json: link latency and bandwidth) or
from the command line. The model is validated against the real 1-2-4
process runs of scaling.json on this machine (cores = 2, processor sharing).
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import numpy as np

from . import common

# Passes over the weight vector a worker makes per exchange, besides its
# compute (clients.py, worker.py): downpour/sync: the NaN check, get_weights
# for the state delta, set_weights and the copy of the base on the reply,
# and zeroing the update buffer; easgd: one more for the elastic step.
WORKER_PASSES = {"downpour": 4.5, "sync": 4.5, "easgd": 5.5, "allreduce": 0.5}
# Passes at the master per update besides the optimizer step (centers.py):
# the reply copy; EASGD: get/set weights and the elastic arithmetic.
MASTER_PASSES = {"downpour": 1.0, "sync": 1.0, "easgd": 7.0}
SYNC_MEAN_PASSES_PER_WORKER = 1.5  # mean_of: one add (read 2, write 1) per extra worker
TOP_PASSES = 4.5  # DeltaCenter at the top of a tree: get, add, set, reply
SUB_UPLINK_PASSES = 4.5  # DeltaClient: get + subtract, then set + copy base

LINKS = {
    "ib-100g": (12.5e9, 2e-6),  # (bytes/s, latency s): InfiniBand EDR/HDR100
    "eth-25g": (3.1e9, 10e-6),
    "eth-10g": (1.25e9, 30e-6),
}
WORKER_COUNTS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
ALGOS = ("downpour", "sync", "easgd", "allreduce")


@dataclass(frozen=True)
class Params:
    """One configuration of the model (all times in seconds)."""

    compute_s: float  # forward + backward of one batch on one core
    params: int  # model parameters (float32 on the wire)
    batch: int = 32
    apply_s: float = 1e-3  # one optimizer step on the flat vector (master, or every allreduce peer)
    copy_s: float = 1e-4  # one pass over the weights (the master's reply copy)
    local_apply_s: float = 1e-4  # EASGD: a worker's own (Keras SGD) step
    bandwidth: float = 2.5e9  # link bytes/s, each direction
    latency: float = 5e-6  # per message
    master_fixed_s: float = 1e-4  # master loop cost per update apart from the model's size
    worker_fixed_s: float = 5e-4  # worker: per exchange apart from size and latency (polled waits, Python)
    allreduce_fixed_s: float = 2e-4  # a peer's cost per allreduce step apart from size and the allreduce
    allreduce_bandwidth: float | None = None  # the ring's bandwidth (None: the link's); on one node MPI reduces in shared memory
    allreduce_latency: float | None = None
    jitter: float = 0.05  # coefficient of variation of the compute time (log-normal)
    sync_every: int = 1
    upstream_every: int | None = None  # sub-master steps per exchange with the top (None: sync_every, as mpilearn does)
    cores: int | None = None  # None: a core per rank; else ranks share this many cores
    masters: int = 1
    # mpilearn's non-spinning waits (comm.transport.Backoff): a waiting rank tests, then sleeps
    # 20 us, 40 us, ... up to poll_max_s between tests, each sleep overshooting by about sleep_slack_s.
    poll_first_s: float = 2e-5
    poll_max_s: float = 1e-3
    sleep_slack_s: float = 6e-5

    @property
    def bytes(self) -> float:
        return 4.0 * self.params


def notice_delay(waited: float, p: "Params") -> float:
    """How late a polling rank notices what happened `waited` seconds after
    it began to wait: the next test of the Backoff schedule (immediate tests,
    then sleeps doubling from poll_first_s to poll_max_s, each plus the
    sleep's overshoot) at or after `waited`."""
    if waited <= 0:
        return 0.0
    t, sleep = 0.0, p.poll_first_s
    while sleep < p.poll_max_s:
        t += sleep + p.sleep_slack_s
        if t >= waited:
            return t - waited
        sleep *= 2
    step = p.poll_max_s + p.sleep_slack_s
    return t + math.ceil((waited - t) / step) * step - waited


# ===========================================================================
# the event engine
# ===========================================================================
class Engine:
    """A heapq event queue with a pool of cores shared by CPU tasks."""

    def __init__(self, cores: int | None, seed: int = 0) -> None:
        self.now = 0.0
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
        n = len(self._tasks)
        return 1.0 if self.cores is None or n <= self.cores else self.cores / n

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


def _link(engine: Engine, p: "Params") -> Link:
    return ShmLink(engine, p.bandwidth, p.latency) if p.cores else Link(engine, p.bandwidth, p.latency)


class Meter:
    """Throughput inside a measuring window, from the first to the last count
    in it (no partial cycles at its edges), and a server's busy time."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.first: float | None = None
        self.last = 0.0
        self.samples = 0.0  # counted after the first count in the window
        self.busy = 0.0

    def count(self, now: float, samples: float) -> None:
        if not self.start <= now <= self.end:
            return
        if self.first is None:
            self.first = now
        else:
            self.samples += samples
        self.last = now

    def rate(self) -> float:
        if self.first is None or self.last <= self.first:
            return 0.0
        return self.samples / (self.last - self.first)

    def busy_for(self, begin: float, seconds: float) -> None:
        lo, hi = max(begin, self.start), min(begin + seconds, self.end)
        if hi > lo:
            self.busy += hi - lo


def _compute(engine: Engine, p: Params, batches: int = 1) -> float:
    if p.jitter <= 0:
        return p.compute_s * batches
    sigma = math.sqrt(math.log(1 + p.jitter**2))
    return float(p.compute_s * np.sum(engine.rng.lognormal(-sigma**2 / 2, sigma, batches)))


# ===========================================================================
# the algorithms
# ===========================================================================
class _Server:
    """A master (or sub-master): updates wait in a FIFO queue and are served
    one at a time. A job gets `release`, to call when the server is free again."""

    def __init__(self, engine: Engine, p: Params, meter: Meter, service: float) -> None:
        self.engine, self.p, self.meter, self.service = engine, p, meter, service
        self.inbound = _link(engine, p)
        self.outbound = _link(engine, p)
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


def _window(p: Params, workers: int, algo: str, cycles: int) -> tuple[float, float]:
    """A simulated time long enough for `cycles` exchanges of every worker."""
    service = p.apply_s + MASTER_PASSES.get(algo, 1.0) * p.copy_s + p.master_fixed_s
    cycle = p.compute_s * p.sync_every + 2 * (p.latency + p.bytes / p.bandwidth) + service + p.worker_fixed_s
    busy = workers * max(service, p.bytes / p.bandwidth) if p.masters == 1 else cycle
    if p.cores:
        cycle *= max(1.0, (workers + 1) / p.cores)
    end = cycles * max(cycle, busy if algo != "sync" else cycle + busy)
    return 0.25 * end, end


def simulate_async(p: Params, workers: int, algo: str = "downpour", cycles: int = 20, seed: int = 0) -> dict[str, float]:
    """Downpour or EASGD, with one master or a two-level tree (p.masters >= 2)."""
    engine = Engine(p.cores, seed)
    start, end = _window(p, workers, algo, cycles)
    meter = Meter(start, end)
    k = p.sync_every
    local = p.local_apply_s if algo == "easgd" else 0.0
    worker_cpu = WORKER_PASSES[algo] * p.copy_s + p.worker_fixed_s
    service = master_service_s(p, algo)
    subs = max(1, p.masters - 1) if p.masters > 1 else 0
    top = _Server(engine, p, Meter(start, end), service if subs == 0 else TOP_PASSES * p.copy_s + p.master_fixed_s)
    servers = [top] if subs == 0 else [_Server(engine, p, Meter(start, end), service) for _ in range(subs)]
    steps = [0] * len(servers)

    waiting_since = [0.0] * workers

    def compute(worker: int) -> None:
        engine.cpu(_compute(engine, p, k) + k * local + worker_cpu, send, worker)

    def send(worker: int) -> None:
        server = servers[worker % len(servers)]
        waiting_since[worker] = engine.now
        server.inbound.send(p.bytes, sent, worker)

    def sent(worker: int) -> None:
        server = servers[worker % len(servers)]
        server.submit(lambda release: serve(worker, release))
        waiting_since[worker] = engine.now + notice_delay(engine.now - waiting_since[worker], p)  # the isend's wait ends

    def received(worker: int) -> None:
        engine.at(engine.now + notice_delay(engine.now - waiting_since[worker], p), compute, worker)

    def serve(worker: int, release: Callable[[], None]) -> None:
        index = worker % len(servers)
        server = servers[index]

        def applied() -> None:
            meter.count(engine.now, k * p.batch)
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
        servers[worker % len(servers)].outbound.send(p.bytes, received, worker)

    for worker in range(workers):
        engine.at(0.0, compute, worker)
    engine.run(end)
    window = end - start
    return {"samples_per_s": meter.rate(), "master_utilisation": top.meter.busy / window,
            "submaster_utilisation": float(np.mean([s.meter.busy / window for s in servers])) if subs else None,
            "events": engine.events}


def simulate_sync(p: Params, workers: int, cycles: int = 20, seed: int = 0) -> dict[str, float]:
    """Rounds: all workers compute, all updates reach the master, one averaged
    step, the master answers every worker in turn."""
    engine = Engine(p.cores, seed)
    start, end = _window(p, workers, "sync", cycles)
    meter = Meter(start, end)
    master = _Server(engine, p, meter, 0.0)  # its queue is unused: a round is one block of work
    k = p.sync_every
    worker_cpu = WORKER_PASSES["sync"] * p.copy_s + p.worker_fixed_s
    state = {"arrived": 0, "round_start": 0.0}
    waiting_since = [0.0] * workers

    def compute(worker: int) -> None:
        engine.cpu(_compute(engine, p, k), lambda: engine.cpu(worker_cpu, send, worker))

    def send(worker: int) -> None:
        waiting_since[worker] = engine.now
        master.inbound.send(p.bytes, arrive, worker)

    def arrive(worker: int) -> None:
        waiting_since[worker] = engine.now + notice_delay(engine.now - waiting_since[worker], p)  # the isend's wait ends
        state["arrived"] += 1
        if state["arrived"] == workers:  # the master's polled wait_all notices the last one
            state["arrived"] = 0
            delay = notice_delay(engine.now - state["round_start"], p)
            mean = (SYNC_MEAN_PASSES_PER_WORKER * (workers - 1) + (1 if workers > 1 else 0)) * p.copy_s
            engine.at(engine.now + delay, master.work, p.apply_s + mean + p.master_fixed_s, lambda: answer(0))

    def answer(worker: int) -> None:
        """The master's replies, one after the other: copy the weights, send."""
        if worker == 0:
            meter.count(engine.now, workers * k * p.batch)
        if worker < workers:
            master.work(p.copy_s, lambda: (master.outbound.send(p.bytes, received, worker), answer(worker + 1)))
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


def simulate_allreduce(p: Params, peers: int, cycles: int = 20, seed: int = 0) -> dict[str, float]:
    """Each peer computes, joins the allreduce, and once it has noticed the
    result (its polled wait) takes the optimizer step and computes again; the
    allreduce ends a ring time after the last peer joined."""
    engine = Engine(p.cores, seed)
    ring = ring_allreduce_s(p.bytes, peers, p.allreduce_bandwidth or p.bandwidth, p.allreduce_latency or p.latency)
    cycle = p.compute_s * p.sync_every + ring + p.apply_s
    if p.cores:
        cycle *= max(1.0, peers / p.cores)
    end = cycles * cycle
    start = 0.25 * end
    meter = Meter(start, end)
    k = p.sync_every
    fixed = p.allreduce_fixed_s if peers > 1 else 0.0
    step_cpu = p.apply_s + WORKER_PASSES["allreduce"] * p.copy_s + fixed
    joined: list[tuple[int, float]] = []

    def compute(peer: int) -> None:
        engine.cpu(_compute(engine, p, k), join, peer)

    def join(peer: int) -> None:
        if peers == 1:
            meter.count(engine.now, k * p.batch)
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
    if algo == "allreduce":
        return simulate_allreduce(p, workers, cycles, seed)
    if algo == "sync":
        return simulate_sync(p, workers, cycles, seed)
    return simulate_async(p, workers, algo, cycles, seed)


def single_worker_rate(p: Params) -> float:
    """Samples/s of one process training alone (the efficiency baseline)."""
    return p.batch / (p.compute_s + p.apply_s + WORKER_PASSES["allreduce"] * p.copy_s)


def master_service_s(p: Params, algo: str) -> float:
    if algo == "easgd":
        return MASTER_PASSES["easgd"] * p.copy_s + p.master_fixed_s
    return p.apply_s + MASTER_PASSES.get(algo, 1.0) * p.copy_s + p.master_fixed_s


def saturation_workers(p: Params, algo: str) -> float:
    """Workers at which one master is busy all the time: a worker's cycle with
    an idle master over the master's time per update (CPU or link, the larger)."""
    service = max(master_service_s(p, algo), p.bytes / p.bandwidth)
    local = p.local_apply_s * p.sync_every if algo == "easgd" else 0.0
    cycle = (p.compute_s * p.sync_every + local + WORKER_PASSES[algo] * p.copy_s + p.worker_fixed_s
             + 2 * (p.latency + p.bytes / p.bandwidth) + master_service_s(p, algo))
    return cycle / service


# ===========================================================================
# inputs from the measurements
# ===========================================================================
def _load(name: str) -> dict[str, Any] | None:
    path = common.RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _loglog(xs: list[float], ys: list[float], x: float) -> float:
    """Piecewise-linear interpolation in log-log space (extrapolated at the
    ends): memory-bound costs change slope where arrays leave the caches."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.maximum(np.asarray(ys, float), 1e-12))
    if x <= xs[0]:
        i = 0
    elif x >= xs[-1]:
        i = len(xs) - 2
    else:
        i = int(np.searchsorted(xs, x)) - 1
    slope = (ly[i + 1] - ly[i]) / (lx[i + 1] - lx[i])
    return float(np.exp(ly[i] + slope * (math.log(x) - lx[i])))


def _line_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares a + b x, with a >= 0 and b > 0."""
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    if slope <= 0:
        slope, intercept = float(np.median(np.asarray(ys) / np.asarray(xs))), 0.0
    return max(float(intercept), 0.0), float(slope)


def measured_inputs() -> dict[str, Any]:
    """Everything simulate takes from results/*.json (None where missing)."""
    out: dict[str, Any] = {"sources": {}}
    master = _load("master")
    if master:
        details = master["details"]
        sizes = sorted(int(s) for s in details["params"])
        params = [details["params"][str(s)] for s in sizes]

        def curve(values: list[float]) -> tuple[list[float], list[float]]:
            return params, values

        out["apply"] = curve([float(np.median(details["apply_s"][f"{s}/adam fused"])) for s in sizes])
        out["local_apply"] = curve([float(np.median(details["apply_s"][f"{s}/sgd keras"])) for s in sizes])
        out["copy"] = curve([float(np.median(details["reply_s"][str(s)])) for s in sizes])
        loop = master.get("loop", {})
        out["master_fixed_s"] = loop.get("master_busy_s")
        out["worker_fixed_s"] = loop.get("worker_fixed_s")
        out["allreduce_fixed_s"] = loop.get("allreduce_fixed_s")
        out["sources"]["master"] = master["date"]
    transport = _load("transport")
    if transport:
        ping = transport["details"]["pingpong"]
        nbytes = [ping[s]["bytes"] for s in sorted(ping, key=int)]
        one_way = [ping[s]["bytes"] / float(np.median(ping[s]["bytes_per_s"]["ours"])) for s in sorted(ping, key=int)]
        latency, per_byte = _line_fit(nbytes, one_way)
        out["bandwidth"], out["latency"] = 1 / per_byte, max(latency, 1e-6)
        allreduce = transport["details"]["allreduce"]
        out["allreduce_measured"] = {s: allreduce[s]["bytes"] / float(np.median(allreduce[s]["bytes_per_s"]["ours"])) for s in allreduce}
        # The ring formula at p = 2 is bytes / bandwidth + 2 latency: fit both to the measured 2-rank allreduce.
        sizes = sorted(allreduce, key=int)
        ar_latency, ar_per_byte = _line_fit([allreduce[s]["bytes"] for s in sizes], [out["allreduce_measured"][s] for s in sizes])
        out["allreduce_bandwidth"], out["allreduce_latency"] = 1 / ar_per_byte, max(ar_latency / 2, 1e-6)
        out["sources"]["transport"] = transport["date"]
    overhead = _load("overhead")
    if overhead and overhead.get("details", {}).get("cpu_breakdown"):
        # CPU time of each piece at the models' own sizes, in one process (overhead --breakdown).
        out["per_model"] = {model: entry["cpu_s"] for model, entry in overhead["details"]["cpu_breakdown"].items()
                            if isinstance(entry, dict)}
        out["sources"]["overhead"] = overhead["date"]
    scaling = _load("scaling")
    if scaling:
        out["scaling"] = scaling
        out["sources"]["scaling"] = scaling["date"]
    return out


def params_for(model: str, model_result: dict[str, Any], inputs: dict[str, Any], args: argparse.Namespace) -> Params:
    """The model's Params from one scaling.json entry and the other measurements."""
    n = int(model_result["params"])
    batch = int(model_result.get("batch", 32))

    pieces = inputs.get("per_model", {}).get(model, {})

    def at(key: str, piece: str, default: float) -> float:
        if piece in pieces:  # measured at this model's size
            return float(np.median(pieces[piece]))
        if key not in inputs:
            return default
        return _loglog(*inputs[key], n)

    apply_s = at("apply", "fused optimizer step", 28 * n / 15e9)
    copy_s = at("copy", "get_weights (one pass)", 8 * n / 15e9)
    solo = float(np.median([m["steady_samples_per_s"] for m in model_result["cases"]["solo"] if m.get("steady_samples_per_s")]))
    compute_s = batch / solo - apply_s - WORKER_PASSES["allreduce"] * copy_s  # solo = compute + step + buffer reset
    return Params(
        compute_s=compute_s, params=n, batch=batch, apply_s=apply_s, copy_s=copy_s,
        local_apply_s=at("local_apply", "keras sgd step (easgd worker)", 12 * n / 15e9),
        bandwidth=inputs.get("bandwidth") or 2.5e9, latency=inputs.get("latency") or 5e-6,
        master_fixed_s=inputs.get("master_fixed_s") or 1e-4,
        # The tiny-model cycle includes both latencies, which the links add again.
        worker_fixed_s=max(0.0, (inputs.get("worker_fixed_s") or 5e-4) - 2 * (inputs.get("latency") or 5e-6)),
        allreduce_fixed_s=inputs.get("allreduce_fixed_s") or 2e-4, jitter=args.jitter,
        allreduce_bandwidth=inputs.get("allreduce_bandwidth"), allreduce_latency=inputs.get("allreduce_latency"),
    )


# ===========================================================================
# the command
# ===========================================================================
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--workers", default=",".join(str(w) for w in WORKER_COUNTS), help="worker counts to predict")
    parser.add_argument("--masters", default="1,5", help="master counts (M >= 2: a top master and M-1 sub-masters; downpour)")
    parser.add_argument("--upstream-every", default="0,8", help="sub-master steps per exchange with the top "
                        "(0: --sync-every, what mpilearn does; others: a decoupled period, a proposal)")
    parser.add_argument("--link", default="measured,ib-100g",
                        help=f"comma-separated links: measured (this machine's shared memory, from transport.json) or "
                             f"a network preset ({', '.join(LINKS)})")
    parser.add_argument("--sync-every", type=int, default=1)
    parser.add_argument("--jitter", type=float, default=0.05, help="coefficient of variation of the compute time")
    parser.add_argument("--cycles", type=int, default=20, help="exchanges per worker simulated")
    # Direct inputs (instead of the measurements): one synthetic model named "given".
    parser.add_argument("--compute-ms", type=float, default=None, help="compute time per batch (ms)")
    parser.add_argument("--params", type=float, default=None, help="model parameters")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--apply-ms", type=float, default=None, help="master optimizer step (ms)")
    parser.add_argument("--copy-ms", type=float, default=None, help="one pass over the weights (ms)")
    parser.add_argument("--bandwidth", type=float, default=None, help="link bytes/s")
    parser.add_argument("--latency-us", type=float, default=None, help="link latency (us)")


def _given(args: argparse.Namespace) -> Params:
    n = int(args.params or 1e6)
    return Params(
        compute_s=(args.compute_ms or 100.0) / 1e3, params=n, batch=args.batch,
        apply_s=(args.apply_ms if args.apply_ms is not None else 28 * n / 15e9 * 1e3) / 1e3,
        copy_s=(args.copy_ms if args.copy_ms is not None else 8 * n / 15e9 * 1e3) / 1e3,
        local_apply_s=12 * n / 15e9, bandwidth=args.bandwidth or 12.5e9,
        latency=(args.latency_us if args.latency_us is not None else 2.0) / 1e6, jitter=args.jitter,
    )


def _with_link(p: Params, args: argparse.Namespace, link: str = "measured") -> Params:
    changes: dict[str, Any] = {"sync_every": args.sync_every}
    if link in LINKS:  # a network: the ring runs at the link's speed
        changes["bandwidth"], changes["latency"] = LINKS[link]
        changes["allreduce_bandwidth"] = changes["allreduce_latency"] = None
    if args.bandwidth:
        changes["bandwidth"] = args.bandwidth
    if args.latency_us is not None:
        changes["latency"] = args.latency_us / 1e6
    if args.apply_ms is not None:
        changes["apply_s"] = args.apply_ms / 1e3
    if args.compute_ms is not None:
        changes["compute_s"] = args.compute_ms / 1e3
    return replace(p, **changes)


def predictions(name: str, p: Params, algos: list[str], workers: list[int], masters: list[int], cycles: int,
                upstream: tuple[int, ...] = (0,)) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    single = single_worker_rate(p)
    table, saturation = [], {}
    layouts = [(1, 0)] + [(m, u) for m in masters if m > 1 for u in upstream]
    for algo in algos:
        for m, every in layouts if algo == "downpour" else [(1, 0)]:
            q = replace(p, masters=m, upstream_every=every or None)
            label = algo if m == 1 else f"{algo}, {m - 1} sub-masters" + (f", top every {every} (proposed)" if every else "")
            first_saturated = None
            for w in workers:
                if m > 1 and w < 2 * (m - 1):
                    continue
                got = simulate(q, algo, w, cycles)
                efficiency = got["samples_per_s"] / (w * single)
                util = got.get("master_utilisation")
                if first_saturated is None and util is not None and util >= 0.95:
                    first_saturated = w
                table.append({"model": name, "algo": label, "workers": w, "samples_per_s": got["samples_per_s"],
                              "efficiency": efficiency, "master_utilisation": util,
                              "submaster_utilisation": got.get("submaster_utilisation")})
            if algo != "allreduce":
                saturation[label] = {"analytic": saturation_workers(q, algo) if m == 1 else None,
                                     "simulated_first_at_95pct": first_saturated}
    return table, saturation


def validate(inputs: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Predicted vs measured for the real runs of scaling.json on this machine
    (its cores shared by the ranks). The model is calibrated on the solo run
    (its compute time comes from it), so what it predicts is each run's speed
    relative to solo; the measured ratio is taken per repeat (the run and the
    solo run of the same repeat, side by side), which cancels most of the
    drift of a shared machine's load."""
    scaling = inputs.get("scaling")
    if not scaling:
        return []
    cores = scaling["machine"]["cores"]
    out = []
    for model, result in scaling["details"].items():
        if "params" not in result or not result["cases"].get("solo"):
            continue
        p = replace(params_for(model, result, inputs, args), cores=cores)
        solo = {m["repeat"]: m["steady_samples_per_s"] for m in result["cases"]["solo"] if m.get("steady_samples_per_s")}
        predicted_solo = float(np.median([simulate(p, "allreduce", 1, args.cycles, seed)["samples_per_s"] for seed in range(3)]))
        for case, measurements in result["cases"].items():
            measured = [m["steady_samples_per_s"] for m in measurements if m.get("steady_samples_per_s")]
            if not measured or case.startswith(("fit", "independent")):  # not mpilearn algorithms
                continue
            if case == "solo":
                algo, processes = "allreduce", 1
            else:
                algo, _, count = case.partition(" x")
                processes = int(count)
            workers = processes if algo == "allreduce" else processes - 1
            predicted = float(np.median([simulate(p, algo, workers, args.cycles, seed)["samples_per_s"] for seed in range(3)]))
            ratios = [m["steady_samples_per_s"] / solo[m["repeat"]] for m in measurements
                      if m.get("steady_samples_per_s") and solo.get(m["repeat"])]
            measured_ratio = float(np.median(ratios)) if ratios else float("nan")
            predicted_ratio = predicted / predicted_solo
            out.append({"model": training_label(model), "case": case, "processes": processes,
                        "measured": float(np.median(measured)), "measured_min": min(measured), "measured_max": max(measured),
                        "predicted": predicted, "measured_ratio": measured_ratio,
                        "measured_ratio_min": min(ratios) if ratios else None, "measured_ratio_max": max(ratios) if ratios else None,
                        "predicted_ratio": predicted_ratio, "error": predicted_ratio / measured_ratio - 1,
                        "calibration": case == "solo", "oversubscribed": processes > cores})
    return out


def training_label(model: str) -> str:
    from .training_runs import label

    return label(model)


def run(args: argparse.Namespace) -> dict[str, Any]:
    algos = [a for a in args.algos.split(",") if a]
    workers = [int(w) for w in args.workers.split(",") if w]
    masters = [int(m) for m in args.masters.split(",") if m]
    cycles = args.cycles
    if args.quick:
        workers, masters, cycles = [w for w in workers if w <= 64] or workers[:2], masters[:2], min(cycles, 8)
        args.upstream_every = args.upstream_every.split(",")[0]
    inputs = measured_inputs() if args.compute_ms is None or args.params is None else {"sources": {}}
    links = [link for link in args.link.split(",") if link]
    unknown = [link for link in links if link != "measured" and link not in LINKS]
    if unknown:
        raise SystemExit(f"--link: unknown {', '.join(unknown)}; choose from measured, {', '.join(LINKS)}")
    base: dict[str, Params] = {}
    if args.compute_ms is not None and args.params is not None:
        base["given"] = _given(args)
        links = [link if link != "measured" else "given" for link in links]
    elif inputs.get("scaling"):
        for model, result in inputs["scaling"]["details"].items():
            if "params" in result:
                base[training_label(model)] = params_for(model, result, inputs, args)
    if not base:  # nothing measured yet: an example model
        base["example (no measurements)"] = _given(args)
        links = [link if link != "measured" else "given" for link in links]
    models = {f"{name} [{link}]": _with_link(p, args, link) for name, p in base.items() for link in links}
    table: list[dict[str, Any]] = []
    saturation: dict[str, Any] = {}
    upstream = tuple(int(u) for u in args.upstream_every.split(",") if u)
    for name, p in models.items():
        rows, sat = predictions(name, p, algos, workers, masters, cycles, upstream)
        if "allreduce" in algos and p.allreduce_latency is None and inputs.get("allreduce_latency"):
            # What the ring costs if every one of its steps waits as long as the measured polled allreduce does.
            polled = replace(p, allreduce_latency=inputs["allreduce_latency"])
            extra, _ = predictions(name, polled, ["allreduce"], workers, [1], cycles)
            for row in extra:
                row["algo"] = "allreduce, measured polling delay per ring step"
            rows += extra
        table += rows
        saturation[name] = sat
    checks = [] if args.quick or "scaling" not in inputs else validate(inputs, args)
    allreduce_check = _allreduce_check(inputs)
    rows = _result_rows(table, checks, saturation)
    return {
        "inputs": {name: asdict(p) for name, p in models.items()},
        "sources": inputs.get("sources", {}),
        "links": links,
        "predictions": table,
        "saturation": saturation,
        "validation": checks,
        "allreduce_validation": allreduce_check,
        "rows": rows,
        "summary": _summary(checks, saturation),
    }


def _allreduce_check(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """The ring formula at 2 peers, with the link fitted to ping-pong, against the measured allreduce."""
    if "allreduce_measured" not in inputs:
        return []
    out = []
    for size, seconds in inputs["allreduce_measured"].items():
        predicted = ring_allreduce_s(4 * int(size), 2, inputs["bandwidth"], inputs["latency"])  # the ping-pong link
        fitted = ring_allreduce_s(4 * int(size), 2, inputs["allreduce_bandwidth"], inputs["allreduce_latency"])
        out.append({"floats": int(size), "measured_s": seconds, "predicted_s": predicted, "error": predicted / seconds - 1,
                    "fitted_s": fitted})
    return out


def _result_rows(table: list[dict[str, Any]], checks: list[dict[str, Any]], saturation: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c in checks:
        if c["calibration"]:
            continue
        group = "validation, oversubscribed" if c["oversubscribed"] else "validation"
        target = "<= 0.15"
        rows.append(common.row(f"{c['model']} {c['case']}: |predicted / measured - 1| (speed relative to solo)",
                               [abs(c["error"])], "fraction", target, group=group,
                               predicted_ratio=c["predicted_ratio"], measured_ratio=c["measured_ratio"]))
    for model, sat in saturation.items():
        for algo, s in sat.items():
            if s["analytic"] is not None:
                rows.append(common.row(f"{model} {algo}: workers one master can feed", [s["analytic"]], "workers",
                                       group="saturation", simulated_first_at_95pct=s["simulated_first_at_95pct"]))
    return rows


def _summary(checks: list[dict[str, Any]], saturation: dict[str, Any]) -> str:
    real = [c for c in checks if not c["calibration"] and not c["oversubscribed"]]
    parts = []
    if real:
        worst = max(abs(c["error"]) for c in real)
        within = sum(abs(c["error"]) <= 0.15 for c in real)
        parts.append(f"validation: {within}/{len(real)} runs within 15% (worst {worst:.0%})")
    for model, sat in saturation.items():
        s = sat.get("downpour")
        if s and s["analytic"]:
            parts.append(f"{model}: one downpour master saturates at ~{s['analytic']:.0f} workers")
    return "simulate: " + ("; ".join(parts) if parts else "no measurements yet (example model)")
