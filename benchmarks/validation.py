"""`validation`: rank-0, background and spread validation, and rank 0's memory.

Real `mpilearn train` runs (downpour, the calorimeter CNN on 25x25x25
showers, 1 thread per rank) on HDF5 files, with a validation set 4x one
worker's training shard, at 1 master + 2 workers and at 4 ranks (1 master +
3 workers), for `--validate-on master`, `--background-validation` and
`--validate-on workers`. From each run's timeline: the wall time per epoch,
the master's validation share (rank 0's validation spans over the run's wall
time; spread, the master only waits for the workers' states then) and the
validation wall time (rank 0's validation span; background: its thread's),
plus the master's copy of the snapshot. Target: spread validation cuts the
validation wall time >= 1.6x with 2 workers.

Memory: rank 0's peak RSS (getrusage) in runs validating on rank 0 with a
validation set 1x and 4x larger than `--memory-limit`: streamed, the peak no
longer grows with the validation set.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import common

TARGET = ">= 1.6"
# mpilearn.fit options of each way to validate.
MODES: dict[str, dict[str, Any]] = {
    "rank 0": {"validate_on": "master"},
    "background": {"background_validation": True},
    "spread": {"validate_on": "workers"},
}
# The mpilearn command line, with rank 0 printing its peak resident memory at exit.
PEAK = (
    "import atexit, resource, os, runpy, sys; atexit.register(lambda: os.environ.get('PMI_RANK', '0') == '0' and "
    "print('PEAK_RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)); sys.argv[0] = 'mpilearn'; "
    "runpy.run_module('mpilearn', run_name='__main__')"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="calo-cnn")
    parser.add_argument("--train-samples", type=int, default=768, help="training samples (4 files)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--layouts", default="3,4", help="process counts (1 master + the rest workers)")
    parser.add_argument("--memory-limit", default="32M", help="rank 0's limit in the memory runs")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--compare-src",
        default="",
        metavar="DIR",
        help="also measure rank 0's memory with the mpilearn package in DIR (an earlier version's src/)",
    )


def _files(folder: Path, name: str, samples: int, files: int, seed: int) -> Path:
    """`files` HDF5 files of simulated showers and their list, written once."""
    import h5py

    from mpilearn.data.synthetic import simulate_showers

    listing = folder / f"{name}.txt"
    if listing.exists():
        return listing
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        x, y = simulate_showers(samples // files, (25, 25, 25), 3, np.random.default_rng([seed, i]))
        path = folder / f"{name}_{i}.h5"
        with h5py.File(path, "w") as handle:
            handle["features"], handle["labels"] = x, y
        paths.append(str(path))
    listing.write_text("".join(p + "\n" for p in paths))
    return listing


def _launch(processes: int, args: list[str], log: Path, timeout: float, src: str = "") -> tuple[dict[str, Any], int]:
    """One training run (with the package in `src` when given); its history and rank 0's peak RSS (bytes)."""
    argv = common.mpi_argv(processes, [sys.executable, "-c", PEAK, "train", *args])
    env = common.rank_env(1)
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, env["PYTHONPATH"]])
    output = common.run(argv, timeout, env, log)
    peak = re.search(r"PEAK_RSS (\d+)", output)
    run_dir = Path(args[args.index("--run-dir") + 1])
    return json.loads((run_dir / "history.json").read_text()), int(peak.group(1)) * 1024 if peak else 0


def _spans(trace: dict[str, Any], name: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for event in trace["traceEvents"]:
        if event.get("ph") == "X" and event["name"] == name:
            out.setdefault(event["pid"], []).append(event["dur"] / 1e6)
    return out


def _measure(trace: dict[str, Any], mode: str, epochs: int) -> dict[str, float | None]:
    """Wall time from the first span to the last on any rank (the last validation included, which
    background validation finishes after the training loop), the master's validation share of it,
    the validation wall time and the master's copy of the snapshot (spread)."""
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    wall = (max(e["ts"] + e["dur"] for e in events) - min(e["ts"] for e in events)) / 1e6
    copy = _spans(trace, "validation snapshot").get(0, [])
    spans = _spans(trace, "validate (background)" if mode == "background" else "validate").get(0, [])
    workers = [s for rank, spans_ in _spans(trace, "validate").items() if rank != 0 for s in spans_]
    return {
        "epoch_s": wall / epochs,
        "master_share": sum(spans) / wall,
        "validation_s": float(np.mean(spans)) if spans else None,
        "worker_validate_s": float(np.mean(workers)) if workers else None,
        "snapshot_copy_ms": float(np.median(copy)) * 1e3 if copy else None,
    }


def _modes_job(processes: int, spec: dict[str, Any], log: Path, timeout: float) -> dict[str, Any]:
    """Every mode, repeats in rotating order, in one mpiexec job (start-up paid once)."""
    path = Path(spec["folder"]) / f"spec-{processes}.json"
    path.write_text(json.dumps(spec))
    out = path.with_suffix(".out.json")
    out.unlink(missing_ok=True)
    argv = common.mpi_argv(processes, [sys.executable, "-m", "benchmarks.validation", str(path), str(out)])
    common.run(argv, timeout, common.rank_env(1), log)
    return json.loads(out.read_text())


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = common.CACHE / "validation"
    log = common.RESULTS / "logs" / "validation.log"
    train = _files(folder, "train", args.train_samples, 4, 1)
    layouts = [int(n) for n in args.layouts.split(",") if n]
    if args.quick:
        layouts, args.epochs = layouts[:1], 1
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    for processes in layouts:
        workers = processes - 1
        val_samples = 4 * args.train_samples // workers  # 4x one worker's shard
        val = _files(folder, f"val{val_samples}", val_samples, 4, 2)
        spec = {
            "folder": str(folder / "runs" / str(processes)),
            "model": args.model,
            "train": str(train),
            "val": str(val),
            "epochs": args.epochs,
            "batch": args.batch,
            "repeats": args.repeats,
        }
        Path(spec["folder"]).mkdir(parents=True, exist_ok=True)
        measured = _modes_job(processes, spec, log, args.timeout)
        group = f"1 master + {workers} workers, {val_samples} validation samples"
        details[str(processes)] = measured
        for mode in MODES:
            entries = measured[mode]
            loads = [e["load"] for e in entries]
            rows.append(
                common.row(f"{mode}: wall s per epoch", [e["epoch_s"] for e in entries], "s", group=group, load=loads)
            )
            rows.append(
                common.row(
                    f"{mode}: master's validation share",
                    [e["master_share"] for e in entries],
                    "fraction",
                    group=group,
                    load=loads,
                )
            )
            rows.append(
                common.row(
                    f"{mode}: validation wall s", [e["validation_s"] for e in entries], "s", group=group, load=loads
                )
            )
        rows.append(
            common.row(
                "spread: snapshot copy on the master",
                [e["snapshot_copy_ms"] for e in measured["spread"]],
                "ms",
                group=group,
            )
        )
        rows.append(
            common.row(
                "spread: a worker's validation span",
                [e["worker_validate_s"] for e in measured["spread"]],
                "s",
                group=group,
            )
        )
        ratio = common.ratios(
            [e["validation_s"] for e in measured["rank 0"]], [e["validation_s"] for e in measured["spread"]]
        )
        rows.append(
            common.row(
                "rank-0 / spread validation wall time", ratio, "ratio", TARGET if workers == 2 else None, group=group
            )
        )
    rows += _memory(args, folder, log)
    return {
        "rows": rows,
        "details": details,
        "settings": {
            "model": args.model,
            "train_samples": args.train_samples,
            "epochs": args.epochs,
            "batch": args.batch,
            "threads_per_rank": 1,
            "layouts": layouts,
            "memory_limit": args.memory_limit,
        },
    }


def _ranks(spec_path: str, out_path: str) -> None:
    """Rank side of one layout's job: mpilearn.fit per mode and repeat; rank 0 writes the measurements."""
    import h5py

    import mpilearn
    from mpilearn import models
    from mpilearn.comm import world

    spec = json.loads(Path(spec_path).read_text())
    first = Path(spec["train"]).read_text().split()[0]
    with h5py.File(first) as handle:
        shape = tuple(handle["features"].shape[1:])
    measured: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    names = list(MODES)
    for repeat in range(spec["repeats"]):
        for mode in names[repeat % len(names) :] + names[: repeat % len(names)]:
            model = models.build_model(spec["model"], shape, 3)
            models.compile_model(model, "adam", None, "categorical_crossentropy", ("accuracy",))
            base = Path(spec["folder"]) / f"{mode.replace(' ', '')}-{repeat}"
            load = common.load()[0]
            history = mpilearn.fit(
                model,
                spec["train"],
                validation=spec["val"],
                epochs=spec["epochs"],
                batch_size=spec["batch"],
                threads=1,
                quiet=True,
                run_dir=str(base),
                timeline=str(base) + ".trace.json",
                **MODES[mode],
            )
            if world().rank == 0:
                trace = json.loads(Path(str(base) + ".trace.json").read_text())
                entry = _measure(trace, mode, spec["epochs"])
                entry.update(load=load, val_loss=history["epochs"][-1].get("val_loss"))
                measured[mode].append(entry)
    if world().rank == 0:
        Path(out_path).write_text(json.dumps(measured))


def _memory(args: argparse.Namespace, folder: Path, log: Path) -> list[dict[str, Any]]:
    """Rank 0's peak RSS validating on rank 0, the validation set 1x and 4x over the memory limit."""
    from mpilearn.data.options import parse_size

    limit = parse_size(args.memory_limit)
    sample = 25**3 * 4 + 3 * 4
    rows = []
    train = _files(folder, "train", args.train_samples, 4, 1)
    versions = [("streamed", "")] + ([("before (all in memory)", args.compare_src)] if args.compare_src else [])
    for factor in (1, 4):
        samples = factor * limit // sample + 1
        val = _files(folder, f"val{samples}", samples, 4, 3)
        for version, src in versions:
            peaks, loads = [], []
            flags = [] if src else ["--memory-limit", args.memory_limit, "--validate-on", "master"]
            for repeat in range(1 if args.quick else args.repeats):
                run_dir = folder / "runs" / f"memory-{factor}-{repeat}{'-before' if src else ''}"
                loads.append(common.load()[0])
                _, peak = _launch(
                    2,
                    [
                        "--model",
                        args.model,
                        "--train",
                        str(train),
                        "--val",
                        str(val),
                        "--epochs",
                        "1",
                        "--batch",
                        str(args.batch),
                        "--threads",
                        "1",
                        "--progress",
                        "lines",
                        "--run-dir",
                        str(run_dir),
                        *flags,
                    ],
                    log,
                    args.timeout,
                    src,
                )
                peaks.append(peak / 2**20)
            rows.append(
                common.row(
                    f"{version}: rank 0 peak RSS, validation set {factor}x --memory-limit {args.memory_limit}",
                    peaks,
                    "MiB",
                    load=loads,
                    group=f"1 master + 1 worker, {samples} validation samples ({samples * sample / 2**20:.0f} MiB)",
                )
            )
    return rows


def summarize(result: dict[str, Any]) -> str:
    return common.summary_of("validation", result["rows"])


if __name__ == "__main__":
    _ranks(sys.argv[1], sys.argv[2])
