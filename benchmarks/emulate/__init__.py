"""`emulate`: downpour on 8 to 32+ real MPI workers with emulated compute,
against the scaling model.

Every run is one `mpiexec` job of S servers and W workers exchanging
mpilearn's real messages (1e6 and 1e7 float32 parameters: 4 and 40 MB each
way) through its Communicator, Uplink/ShardedUplink and OptimizerCenter; a
batch is a fixed sleep plus one pass over the gradient, so a worker costs
almost no CPU and memory (no keras or torch in the ranks; see ranks.py). It
measures where one server saturates and how S sharded servers move that
point, and compares each measured throughput with the scaling model's
prediction for the same run (simulate/node.py: the ranks sharing this
machine's cores). The model's inputs come from the same job, at its message
sizes: the receiver's copy of a message, the passes over the weights and
what a polled wait costs (timed before the run), and each role's CPU outside
its waits per exchange (counted during the run). Run it on a quiet machine:
the model gives the ranks all the cores.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import common

WORKERS = (8, 16, 32)
SWEEP = (1, 2, 4)  # more worker counts at the first size, for the saturation curve
SERVERS = (1, 4)
PARAMS = (1e6, 1e7)
STEADY_SKIP = 3  # exchanges at each end of a worker's run left out of its rate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", default=",".join(map(str, WORKERS)), help="worker counts (the table)")
    parser.add_argument("--sweep", default=",".join(map(str, SWEEP)), help="more worker counts at the first --params")
    parser.add_argument("--servers", default=",".join(map(str, SERVERS)), help="server counts (S sharded servers)")
    parser.add_argument(
        "--params", default=",".join(f"{n:g}" for n in PARAMS), help="model sizes (float32 on the wire)"
    )
    parser.add_argument("--compute-ms", type=float, default=40.0, help="emulated compute of one batch (a sleep, ms)")
    parser.add_argument("--exchanges", type=int, default=30, help="exchanges per worker")
    parser.add_argument("--batch", type=int, default=32)


def _ranks(spec: dict[str, Any], processes: int, timeout: float) -> Any:
    with tempfile.TemporaryDirectory(prefix="mpilearn-emulate-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        argv = [sys.executable, "-m", "benchmarks.emulate.ranks", str(spec_path), str(out_path)]
        common.run(common.mpi_argv(processes, argv), timeout, common.rank_env(1))
        return json.loads(out_path.read_text())


def measured_rate(ranks: list[dict[str, Any]], batch: int) -> float:
    """Samples/s: each worker's steady exchanges over their time, summed."""
    total = 0.0
    for rank in ranks:
        stamps = rank.get("stamps")
        if rank["role"] != "worker" or not stamps or len(stamps) <= 2 * STEADY_SKIP + 1:
            continue
        steady = stamps[STEADY_SKIP:-STEADY_SKIP]
        total += (len(steady) - 1) * batch / (steady[-1] - steady[0])
    return total


def model_inputs(ranks: list[dict[str, Any]], params: int, servers: int, batch: int) -> Any:
    """The model's Params from what this job measured (ranks.py)."""
    from mpilearn.comm.transport import Backoff

    from ..simulate import Params
    from ..simulate.inputs import measured_inputs
    from ..simulate.node import worker_cpu_s

    server = ranks[0]["calibration"]
    worker = ranks[servers]["calibration"]
    waiting = [r["calibration"]["wait_cpu_per_s"] for r in ranks if "wait_cpu_per_s" in r["calibration"]]
    workers = [r for r in ranks if r["role"] == "worker"]
    message = 4.0 * server["message_floats"]
    backoff = inspect.signature(Backoff).parameters
    p = Params(
        compute_s=worker["pass_s"],
        sleep_s=float(np.median([r["sleep_s"] for r in workers])),
        params=params,
        batch=batch,
        apply_s=server["sgd_s"] * servers,
        copy_s=worker["copy_s"],
        servers=servers,
        server_apply_s=server["sgd_s"],
        server_copy_s=server["copy_s"],
        server_fixed_s=0.0,
        worker_fixed_s=0.0,
        master_fixed_s=0.0,
        latency=measured_inputs().get("latency") or 5e-6,
        jitter=0.0,
        cores=common.cores(),
        copy_bandwidth=message / worker["receive_copy_s"],
        server_copy_bandwidth=message / server["receive_copy_s"],
        spin_s=backoff["spin_s"].default,
        poll_first_s=backoff["first_s"].default,
        poll_max_s=backoff["max_s"].default,
        poll_cpu=float(np.median(waiting)) if waiting else 0.0,
    )
    # What the passes do not explain of each role's CPU outside its waits: Python, MPI calls, the loop.
    worker_work = float(np.median([r["work_cpu_per_exchange_s"] for r in workers]))
    server_work = float(np.mean([r["work_cpu_per_update_s"] for r in ranks if r["role"] == "server"]))
    return replace(
        p,
        worker_fixed_s=max(0.0, worker_work - worker_cpu_s(p)),
        master_fixed_s=max(0.0, server_work - p.slice_apply_s - p.slice_copy_s),
    )


def _cases(args: argparse.Namespace) -> list[tuple[int, int, int]]:
    """(parameters, servers, workers) of every job, the first size with the sweep too."""
    sizes = [int(float(n)) for n in args.params.split(",") if n]
    servers = [int(s) for s in args.servers.split(",") if s]
    table = [int(w) for w in args.workers.split(",") if w]
    sweep = [int(w) for w in args.sweep.split(",") if w]
    if args.quick:
        return [(sizes[0], s, 4) for s in servers[:2]]
    return [
        (n, s, w)
        for i, n in enumerate(sizes)
        for s in servers
        for w in sorted(set(table) | (set(sweep) if i == 0 else set()))
    ]


def _available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("inf")


def _needed_gb(params: int, workers: int) -> float:
    """A job's memory, roughly: each worker's ~6 vectors (weights, base, update, reply, slices) and the
    servers' inbox and outbox of every worker, float32."""
    return workers * (6 + 2) * 4 * params / 2**30


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..simulate.node import limits, simulate_node

    exchanges = 10 if args.quick else args.exchanges
    runs, rows = [], []
    for params, servers, workers in _cases(args):
        load = common.load()
        if _needed_gb(params, workers) > _available_gb() - 2:
            print(
                f"  {params:.0e} params, {servers} server(s), {workers} workers: skipped, about "
                f"{_needed_gb(params, workers):.1f} GB needed, {_available_gb():.1f} GB available",
                flush=True,
            )
            continue
        spec = {
            "params": params,
            "servers": servers,
            "compute_s": args.compute_ms / 1e3,
            "exchanges": exchanges,
            "batch": args.batch,
        }
        ranks = _ranks(spec, servers + workers, 1800)
        got = measured_rate(ranks, args.batch)
        p = model_inputs(ranks, params, servers, args.batch)
        model = simulate_node(p, workers, cycles=exchanges)
        want = float(model["samples_per_s"])
        server_ranks = [r for r in ranks if r["role"] == "server"]
        ideal = workers * args.batch / (args.compute_ms / 1e3)
        runs.append(
            {
                "params": params,
                "workers": workers,
                "servers": servers,
                "measured": got,
                "predicted": want,
                "error": want / got - 1,
                "efficiency": got / ideal,
                "predicted_efficiency": want / ideal,
                "server_busy": float(np.mean([r["busy_s"] / r["wall_s"] for r in server_ranks])),
                "predicted_server_busy": model["master_utilisation"],
                "limits": limits(p),
                "load_before": load,
                "load_after": common.load(),
                "inputs": asdict(p),
                "memory_gb": sum(r["max_rss_mb"] for r in ranks) / 1024,
                "calibration": [r["calibration"] for r in ranks[: servers + 1]],
            }
        )
        print(
            f"  {params:.0e} params, {servers} server(s), {workers} workers: {got:.0f}/s measured, {want:.0f}/s "
            f"predicted ({want / got - 1:+.1%}), load {load[0] if load else '?'}, "
            f"{runs[-1]['memory_gb']:.1f} GB",
            flush=True,
        )
        if workers in {int(w) for w in args.workers.split(",") if w} or args.quick:
            rows.append(
                common.row(
                    f"{params:.0e} params, {servers} server(s), {workers} workers: |predicted / measured - 1|",
                    [abs(want / got - 1)],
                    "fraction",
                    "<= 0.15",
                    group="emulation vs model",
                    measured=got,
                    predicted=want,
                    load=load[0] if load else None,
                )
            )
    return {"runs": runs, "rows": rows, "summary": _summary(runs)}


def _summary(runs: list[dict[str, Any]]) -> str:
    parts = [
        f"{r['params']:.0e} {r['servers']}s x {r['workers']}w: {r['measured']:.0f}/s measured, "
        f"{r['predicted']:.0f}/s predicted ({r['error']:+.0%}), servers {r['server_busy']:.0%} busy"
        for r in runs
    ]
    return "emulate: " + "; ".join(parts)
