"""`time-to-accuracy`: how much sooner N workers reach the accuracy of one process.

The data set is made with `mpilearn make-data --files 8 --events-per-file 300
--val-files 4 --shape 12,12,12 --classes 4 --seed 7`: 2400 training and 1200
validation showers of 4 particle types, where one process still improves
after 6 epochs (the 3-class 12^3 set plateaus in about 3). Every run is the
command line a user types, every algorithm at its defaults:

    mpilearn train --model calo-cnn --train train.txt --val val.txt --algo ALGO -n P \\
        --threads 1 --batch 32 --epochs E --seed S --validate-every U

For each seed, one process (`-n 1`) sets the reference: its best validation
accuracy within the E epochs gives the target (0.97 x that best) and its time
to the target gives t1. Every algorithm then runs with 1, 2 and 4 workers
(P = workers + 1 with a master, P = workers for allreduce, whose 1-worker run
is the reference itself). Validation runs every U master updates, U chosen so
that every run validates about every 800 samples (a third of an epoch), and
times are training time: the validations' own seconds (`validation_s` of each
history row) are taken off. Per algorithm and worker count the report gives
the speed-up to the target (t1 / tN, per seed, then median and min-max) and
the best accuracy within the budget relative to one process. Runs with more
processes than cores are marked oversubscribed. About 45 runs of 10-40 s.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import common

ALGOS = ("downpour", "sync", "easgd", "gem", "diloco", "allreduce")
TARGET_FRACTION = 0.97
DATA = {"files": 8, "events-per-file": 300, "val-files": 4, "shape": "12,12,12", "classes": 4, "seed": 7}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--workers", default="1,2,4", help="worker counts")
    parser.add_argument("--seeds", type=int, default=3, help="seeds (each one a repeat of the whole grid)")
    parser.add_argument("--first-seed", type=int, default=1, help="seeds FIRST_SEED .. FIRST_SEED + SEEDS - 1")
    parser.add_argument("--epochs", type=int, default=6, help="epoch budget of every run")
    parser.add_argument(
        "--fraction", type=float, default=TARGET_FRACTION, help="target = FRACTION x one process's best"
    )
    parser.add_argument(
        "--validate-samples", type=int, default=800, help="validate about every this many training samples"
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--model", default="calo-cnn")
    parser.add_argument("--timeout", type=float, default=600, help="hard limit per training run, seconds")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        help="more `mpilearn train` options for the algorithms' runs (not the 1-process reference), e.g. "
        '"--inner-steps 4"; repeat it to measure each set of options against the same reference',
    )


def data_set() -> Path:
    """The 4-class 12^3 set, made once and cached."""
    folder = common.CACHE / ("tta-" + "-".join(f"{k}{v}" for k, v in DATA.items()).replace(",", "x"))
    if not (folder / "val.txt").exists():
        options = [item for key, value in DATA.items() for item in (f"--{key}", str(value))]
        common.run(
            [sys.executable, "-m", "mpilearn", "make-data", str(folder), *options], timeout=600, env=common.rank_env(1)
        )
    return folder


def samples_per_update(algo: str, workers: int, batch: int, extra: list[str] | None = None) -> int:
    """Samples behind one master update (one optimizer step for allreduce) at the defaults:
    lockstep modes fold one batch per worker into a step, DiLoCo its inner steps (of every worker in its
    rounds, the default; of one with --no-synchronous); the others one batch per update."""
    if algo == "diloco":  # --inner-steps in --extra, else the default
        from mpilearn.algorithms.defaults import inner_steps_for
        from mpilearn.config import AlgorithmConfig

        extra = extra or []
        rounds = workers if AlgorithmConfig(name="diloco", synchronous="--no-synchronous" not in extra).lockstep else 1
        if "--inner-steps" in extra and extra[extra.index("--inner-steps") + 1] != "auto":
            return batch * int(extra[extra.index("--inner-steps") + 1]) * rounds
        default = AlgorithmConfig().inner_steps
        steps = default if isinstance(default, int) else inner_steps_for(_train_samples() // (batch * workers))[0]
        return batch * steps * rounds
    return batch * workers if algo in ("sync", "allreduce") else batch


def _train_samples() -> int:
    return int(DATA["files"]) * int(DATA["events-per-file"])


def curve(history: dict[str, Any]) -> list[tuple[float, float]]:
    """(training seconds, validation accuracy) of every validation, validation time taken off."""
    points = []
    for row in history.get("epochs", []):
        if row.get("val_accuracy") is not None:
            points.append((row["time_s"] - row.get("validation_s", 0.0), row["val_accuracy"]))
    return points


def time_to(points: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, accuracy in points if accuracy >= target), None)


def _train(
    args: argparse.Namespace, data: Path, algo: str, workers: int, seed: int, log: Path, options: str = ""
) -> dict[str, Any]:
    extra = shlex.split(options)
    # A tree (--masters M in the options) adds its M - 1 sub-masters to the top master and the workers.
    masters = int(extra[extra.index("--masters") + 1]) if "--masters" in extra else 1
    processes = workers if algo == "allreduce" else workers + masters
    every = max(1, round(args.validate_samples / samples_per_update(algo, workers, args.batch, extra)))
    with tempfile.TemporaryDirectory(prefix="mpilearn-tta-") as tmp:
        run_dir = Path(tmp) / "run"
        argv = [
            sys.executable,
            "-m",
            "mpilearn",
            "train",
            "--model",
            args.model,
            "--train",
            str(data / "train.txt"),
            "--val",
            str(data / "val.txt"),
            "--algo",
            algo,
            "-n",
            str(processes),
            "--threads",
            "1",
            "--epochs",
            str(args.epochs),
            "--batch",
            str(args.batch),
            "--seed",
            str(seed),
            "--validate-every",
            str(every),
            "--run-dir",
            str(run_dir),
            "--progress",
            "lines",
            *extra,
        ]
        before = common.load()
        label = (
            "1 process"
            if processes == 1
            else f"{algo} {workers} worker(s), {processes} processes{' ' + options if options else ''}"
        )
        print(f"  seed {seed}: {label} (load {before[0]})", flush=True)
        common.run(argv, args.timeout, common.rank_env(1), log)
        history = json.loads((run_dir / "history.json").read_text())
    points = curve(history)
    return {
        "seed": seed,
        "processes": processes,
        "oversubscribed": processes > common.cores(),
        "curve": points,
        "best": max((a for _, a in points), default=None),
        "train_time_s": history["train_time_s"],
        "samples_per_s": history["samples_per_s"],
        "load_before": before[0] if before else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    algos = [a for a in args.algos.split(",") if a]
    workers = [int(w) for w in args.workers.split(",") if w]
    seeds = args.seeds
    if args.quick:
        algos, workers, seeds, args.epochs = algos[:2], [2], 1, 1
    data = data_set()
    log = common.RESULTS / "logs" / "time-to-accuracy.log"
    # allreduce with 1 worker is one process: the reference itself.
    extras = args.extra or [""]
    configs = [(a, w, e) for w in workers for a in algos for e in extras if not (a == "allreduce" and w == 1)]
    reference: list[dict[str, Any]] = []
    measured: dict[str, list[dict[str, Any]]] = {_key(*c): [] for c in configs}
    for seed in range(args.first_seed, args.first_seed + seeds):
        solo = _train(args, data, "allreduce", 1, seed, log)
        solo["target"] = args.fraction * solo["best"]
        solo["time_to_target_s"] = time_to(solo["curve"], solo["target"])
        reference.append(solo)
        order = configs if seed % 2 else list(reversed(configs))  # alternate to spread drifts of the load
        for algo, w, extra in order:
            result = _train(args, data, algo, w, seed, log, extra)
            result["time_to_target_s"] = time_to(result["curve"], solo["target"])
            measured[_key(algo, w, extra)].append(result)
    return {
        "rows": _rows(algos, configs, reference, measured),
        "reference": reference,
        "details": measured,
        "settings": {
            "algos": algos,
            "workers": workers,
            "seeds": seeds,
            "epochs": args.epochs,
            "fraction": args.fraction,
            "validate_samples": args.validate_samples,
            "batch": args.batch,
            "model": args.model,
            "extra": args.extra,
            "data": "mpilearn make-data " + " ".join(f"--{k} {v}" for k, v in DATA.items()),
            "cores": common.cores(),
        },
    }


def _key(algo: str, workers: int, extra: str) -> str:
    return f"{algo} {workers}w" + (f" {extra}" if extra else "")


def _rows(
    algos: list[str],
    configs: list[tuple[str, int, str]],
    reference: list[dict[str, Any]],
    measured: dict[str, list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    t1 = [r["time_to_target_s"] for r in reference]
    rows = [
        common.row(
            "1 process: best val_accuracy within the budget",
            [r["best"] for r in reference],
            "accuracy",
            group="reference",
            load=[r["load_before"] for r in reference],
        ),
        common.row(
            "1 process: seconds to the target", t1, "s", group="reference", load=[r["load_before"] for r in reference]
        ),
    ]
    for algo, w, extra in configs:
        runs = measured[_key(algo, w, extra)]
        over = " (oversubscribed)" if any(r["oversubscribed"] for r in runs) else ""
        name = f"{algo}{' ' + extra if extra else ''}, {w} worker{'s' if w > 1 else ''}{over}"
        reached = sum(r["time_to_target_s"] is not None for r in runs)
        loads = [r["load_before"] for r in runs]
        rows.append(
            common.row(
                f"{name}: best accuracy / 1 process",
                [r["best"] / s["best"] for r, s in zip(runs, reference)],
                "ratio",
                target=f">= {TARGET_FRACTION}",
                group=f"{w} workers",
                load=loads,
            )
        )
        rows.append(
            common.row(
                f"{name}: speed-up to the target (t1 / t{w})",
                common.ratios(t1, [r["time_to_target_s"] for r in runs]),
                "ratio",
                target=">= 1.3" if w == 2 else None,  # the goal on 2 cores, the master's 3 processes included
                group=f"{w} workers",
                reached=f"{reached}/{len(runs)}",
                load=loads,
            )
        )
    return rows
