"""`jitter`: how much a worker's per-batch compute time varies, the input of
the scaling model's straggler term.

A synchronous step (sync, allreduce) waits for the slowest of N workers'
batches, so the spread of one worker's batch times sets what every step
loses at scale (`simulate`: its `--jitter`, the coefficient of variation of
a log-normal compute time). Each case runs `mpilearn train -n 1 --model M
--threads 1` on the demo data with `--timeline`, and takes the "compute"
span of every batch after the first epoch (compile and warm-up excluded):

- "alone": one training, the other core idle;
- "side by side": two independent trainings at once, one per core, as the
  workers of a full node run (both are measured).

Reported per case: the median batch time, the coefficient of variation
(std / mean, outliers included: a straggler is an outlier), the same from
the median absolute deviation (most batches' spread) and the 99th
percentile over the median. Each epoch's last, partial batch is left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from . import common

MODEL = "calo-cnn"
EPOCHS = 3  # the first is warm-up
ASSUMED_JITTER = 0.05  # simulate's --jitter default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=2, help="runs of each case (default: 2)")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one training may take")


def batch_times(trace: Path) -> tuple[list[float], list[float]]:
    """(start s, duration s) of every "compute" span of the run's timeline, in order."""
    events = json.loads(trace.read_text())
    events = events.get("traceEvents", events) if isinstance(events, dict) else events
    spans = sorted((e["ts"], e["dur"]) for e in events if e.get("ph") == "X" and e.get("name") == "compute")
    return [ts / 1e6 for ts, _ in spans], [dur / 1e6 for _, dur in spans]


def steady(durations: list[float], epochs: int = EPOCHS) -> np.ndarray:
    """The batches after the first epoch, without each epoch's last batch (a partial one: the demo's 2000
    samples make 62 batches of 32 and one of 16)."""
    per_epoch = len(durations) // epochs
    kept = [d for i, d in enumerate(durations) if i >= per_epoch and i % per_epoch != per_epoch - 1]
    return np.asarray(kept, dtype=float)


def spread(times: np.ndarray) -> dict[str, float]:
    mean = float(times.mean())
    return {
        "median_ms": float(np.median(times)) * 1e3,
        "cv": float(times.std() / mean) if mean else 0.0,
        # The same from the median absolute deviation: the spread of most batches, without the few slow
        # ones (an epoch's first batches, after validation, are slower on every worker at once).
        "robust_cv": float(1.4826 * np.median(np.abs(times - np.median(times))) / np.median(times)),
        "p99_over_median": float(np.percentile(times, 99) / np.median(times)),
        "batches": int(times.size),
    }


def _argv(args: argparse.Namespace, data: Path, run_dir: Path, trace: Path) -> list[str]:
    return [
        sys.executable, "-m", "mpilearn", "train", "-n", "1", "--model", args.model, "--threads", "1",
        "--train", str(data / "train.txt"), "--epochs", str(EPOCHS), "--batch", str(args.batch),
        "--run-dir", str(run_dir), "--timeline", str(trace), "--seed", "1",
    ]  # fmt: skip


def _trainings(args: argparse.Namespace, data: Path, count: int) -> list[np.ndarray]:
    """`count` trainings started together; each one's steady batch times."""
    log = common.RESULTS / "logs" / "jitter.log"
    with tempfile.TemporaryDirectory(prefix="mpilearn-jitter-") as tmp:
        traces = [Path(tmp) / f"trace{i}.json" for i in range(count)]
        argvs = [_argv(args, data, Path(tmp) / f"run{i}", trace) for i, trace in enumerate(traces)]
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda argv: common.run(argv, args.timeout, common.rank_env(1), log), argvs))
        return [steady(batch_times(trace)[1]) for trace in traces]


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = common.demo_files()
    repeats = 1 if args.quick else args.repeats
    cases = {"alone": 1, "side by side": 2}
    measured: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    loads: dict[str, list[float | None]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, count in cases.items():
            load = common.load()
            for times in _trainings(args, data, count):
                measured[name].append(spread(times))
                loads[name].append(load[0] if load else None)
    rows = []
    cv = float(np.median([v["cv"] for v in measured["side by side"]]))
    robust = float(np.median([v["robust_cv"] for v in measured["side by side"]]))
    at_cv, at_robust = allreduce_efficiency(cv), allreduce_efficiency(robust)
    for workers, (at_measured, at_assumed) in at_cv.items():
        group = f"scaling model: allreduce (Rabenseifner), calo-cnn CPU workers [ib-100g], {workers} workers"
        target = ">= 0.9" if workers == 1024 else None
        rows.append(common.row(f"efficiency at the measured CV ({cv:.3f})", [at_measured], "fraction", target, group))
        rows.append(
            common.row(f"efficiency at the robust CV ({robust:.3f})", [at_robust[workers][0]], "fraction", None, group)
        )
        rows.append(
            common.row(f"efficiency at simulate's assumed {ASSUMED_JITTER}", [at_assumed], "fraction", None, group)
        )
    for name, values in measured.items():
        group = f"{args.model}, {name}"
        rows.append(common.row("batch compute time", [v["median_ms"] for v in values], "ms", group=group))
        rows.append(
            common.row("coefficient of variation", [v["cv"] for v in values], "fraction", group=group, load=loads[name])
        )
        rows.append(
            common.row(
                "coefficient of variation, robust (MAD)", [v["robust_cv"] for v in values], "fraction", group=group
            )
        )
        rows.append(common.row("p99 / median", [v["p99_over_median"] for v in values], "ratio", group=group))
    return {
        "rows": rows,
        "details": {"cases": measured},
        "settings": {
            "model": args.model,
            "batch": args.batch,
            "epochs": EPOCHS,
            "data": "the demo data (4 x 500 showers at 25^3)",
            "repeats": repeats,
            "measure": "the timeline's compute span of every batch after the first epoch",
        },
    }


def measured_cv(result: dict[str, Any], case: str = "side by side") -> float | None:
    """The median coefficient of variation of a jitter result (None: not measured)."""
    values = [v["cv"] for v in result.get("details", {}).get("cases", {}).get(case, [])]
    return float(np.median(values)) if values else None


def allreduce_efficiency(jitter: float, counts: tuple[int, ...] = (1024, 4096)) -> dict[int, tuple[float, float]]:
    """The scaling model's allreduce (Rabenseifner, MPICH's choice) on calo-cnn CPU workers, as `simulate`'s
    cases build it from benchmarks/results/*.json: efficiency at `jitter` and at the assumed one, per worker count."""
    from dataclasses import replace

    from .simulate.inputs import measured_inputs, params_for
    from .simulate.model import simulate, single_worker_rate
    from .simulate.scenarios import cases

    inputs = measured_inputs()
    scaling = (inputs.get("scaling") or {}).get("details", {})
    if MODEL not in scaling:
        return {}
    calo = params_for(MODEL, scaling[MODEL], inputs, argparse.Namespace(jitter=ASSUMED_JITTER))
    net, _ = next(iter(cases(calo, inputs, 16).values()))  # the calo-cnn case, on simulate's default link
    net = replace(net, allreduce_algorithm="rabenseifner")
    single = single_worker_rate(net)
    out = {}
    for workers in counts:
        out[workers] = tuple(
            simulate(replace(net, jitter=j), "allreduce", workers, 10)["samples_per_s"] / (workers * single)
            for j in (jitter, ASSUMED_JITTER)
        )
    return out  # type: ignore[return-value]
