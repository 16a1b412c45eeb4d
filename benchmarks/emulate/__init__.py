"""`emulate`: downpour on 8 to 32+ real MPI workers with emulated compute,
against the scaling model.

Every run is one `mpiexec` job of S servers and W workers exchanging
mpilearn's real messages (1e6 float32 parameters by default: 4 MB each way)
through its Communicator, Uplink/ShardedUplink and OptimizerCenter; a batch
is a fixed sleep plus one pass over the gradient, so a worker costs almost
no CPU and memory (no keras or torch in the ranks; see ranks.py). It
measures where one server saturates and how S sharded servers move that
point, and compares each measured throughput with the scaling model's
prediction for the same run, fed with the copy and SGD times measured by a
calibration run and the shared-memory link of results/transport.json
(the cores this job gets, measured before each run by spinning ranks, shared
by its ranks: on a busy shared machine a job gets less than the 2 cores).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .. import common

WORKERS = (8, 16, 32)
SERVERS = (1, 4)
STEADY_SKIP = 3  # exchanges at each end of a worker's run left out of its rate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", default=",".join(map(str, WORKERS)), help="worker counts")
    parser.add_argument("--servers", default=",".join(map(str, SERVERS)), help="server counts (S sharded servers)")
    parser.add_argument("--params", type=float, default=1e6, help="model parameters (float32 on the wire)")
    parser.add_argument("--compute-ms", type=float, default=40.0, help="emulated compute of one batch (a sleep, ms)")
    parser.add_argument("--exchanges", type=int, default=30, help="exchanges per worker")
    parser.add_argument("--batch", type=int, default=32)


def _ranks(spec: dict[str, Any], processes: int, timeout: float) -> Any:
    with tempfile.TemporaryDirectory(prefix="mpilearn-emulate-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        argv = [sys.executable, "-m", "benchmarks.emulate.ranks", str(spec_path), str(out_path)]
        common.run(common.mpi_argv(processes, argv) if processes else argv, timeout, common.rank_env(1))
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


def predicted(calibration: dict[str, Any], args: argparse.Namespace, workers: int, servers: int,
              cores: float) -> tuple[float, Any]:
    from ..simulate import Params, simulate
    from ..simulate.inputs import measured_inputs

    inputs = measured_inputs()
    n = int(args.params)
    size = str(servers)
    p = Params(
        compute_s=calibration["pass_s"][size if servers == 1 else "1"], sleep_s=args.compute_ms / 1e3, params=n,
        batch=args.batch, apply_s=calibration["sgd_s"]["1"], copy_s=calibration["copy_s"]["1"],
        server_apply_s=calibration["sgd_s"][size], server_copy_s=calibration["copy_s"][size], servers=servers,
        bandwidth=inputs.get("bandwidth") or 5e9, latency=inputs.get("latency") or 5e-6,
        master_fixed_s=inputs.get("master_fixed_s") or 1e-4,
        worker_fixed_s=max(0.0, (inputs.get("worker_fixed_s") or 5e-4) - 2 * (inputs.get("latency") or 5e-6)),
        jitter=0.0, cores=cores, worker_reset_s=0.5 * calibration["copy_s"]["1"],
    )
    return float(simulate(p, "downpour", workers, cycles=args.exchanges)["samples_per_s"]), p


def run(args: argparse.Namespace) -> dict[str, Any]:
    workers = [int(w) for w in args.workers.split(",") if w]
    servers = [int(s) for s in args.servers.split(",") if s]
    exchanges = args.exchanges
    if args.quick:
        workers, servers, exchanges = [min(workers[0], 4)], servers[:2], 10
        args.exchanges = exchanges
    calibration = _ranks({"calibrate": True, "params": args.params, "servers": servers}, 0, 600)
    runs, rows = [], []
    for s in servers:
        for w in workers:
            load = common.load()
            # The cores this job gets right now (all of them on a quiet machine): the model's CPU.
            cores = min(float(common.cores()), _ranks({"spin": 2.0}, common.cores(), 120))
            spec = {"params": args.params, "servers": s, "compute_s": args.compute_ms / 1e3, "exchanges": exchanges,
                    "batch": args.batch}
            ranks = _ranks(spec, s + w, 1800)
            got = measured_rate(ranks, args.batch)
            want, params = predicted(calibration, args, w, s, cores)
            server_ranks = [r for r in ranks if r["role"] == "server"]
            busy = float(np.mean([r["busy_s"] / r["wall_s"] for r in server_ranks]))
            ideal = w * args.batch / (args.compute_ms / 1e3)
            runs.append({"workers": w, "servers": s, "measured": got, "predicted": want, "error": want / got - 1,
                         "efficiency": got / ideal, "server_busy": busy, "cores_available": cores, "load_before": load, "load_after": common.load(),
                         "inputs": asdict(params)})
            rows.append(common.row(f"downpour, {s} server(s), {w} workers: |predicted / measured - 1|",
                                   [abs(want / got - 1)], "fraction", "<= 0.15", group="emulation vs model",
                                   measured=got, predicted=want, load=load[0] if load else None))
    return {"calibration": calibration, "runs": runs, "rows": rows, "summary": _summary(runs)}


def _summary(runs: list[dict[str, Any]]) -> str:
    parts = [f"{r['servers']}s x {r['workers']}w: {r['measured']:.0f}/s measured, {r['predicted']:.0f}/s predicted "
             f"({r['error']:+.0%}), servers {r['server_busy']:.0%} busy, {r['cores_available']:.2f} cores" for r in runs]
    return "emulate: " + "; ".join(parts)
