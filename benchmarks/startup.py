"""`startup`: launch to first batch of `mpilearn train -n 3 --model calo-cnn`, in parts per rank.

Each repeat runs, in rotating order, `python -c "import keras"` (the bound:
one process's import of Keras, which every rank pays) and `mpilearn train
-n 3` on small data (`mpilearn make-data`, 2 files of 64 events, 1 epoch),
once per source tree of `--compare` (default: this checkout). The time to
the first batch is taken from outside: from just before the launcher starts
to the end of the first batch of the last worker, from the run's `--timeline`
(wall-clock spans), so a tree without the start-up record (an older main)
is measured the same way. Where history.json has the "startup" section,
each rank's parts are reported too (mpilearn/startup_times.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import common

PROCESSES = 3
MODEL = "calo-cnn"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=5, help="runs of each case (default: 5)")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=SRC",
        help="a case per mpilearn source tree (its src/ put first on PYTHONPATH), e.g. before=/path/main/src "
        "(default: one case, this checkout)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one launch may take")


def _data() -> Path:
    folder = common.CACHE / "startup"
    if not (folder / "train.txt").exists():
        common.run(
            [sys.executable, "-m", "mpilearn", "make-data", str(folder), "--files", "2", "--val-files", "0"]
            + ["--events-per-file", "64", "--shape", "25,25,25", "--seed", "1"],
            timeout=600,
            env=common.rank_env(1),
        )
    return folder / "train.txt"


def _import_keras(timeout: float, log: Path) -> float:
    started = time.perf_counter()
    common.run([sys.executable, "-c", "import keras"], timeout, common.rank_env(1), log)
    return time.perf_counter() - started


def _first_batches(trace: Path) -> dict[int, float]:
    """Rank -> wall-clock end (s) of its first "compute" span."""
    events = json.loads(trace.read_text())
    events = events.get("traceEvents", events) if isinstance(events, dict) else events
    ends: dict[int, float] = {}
    for event in events:
        if event.get("ph") == "X" and event.get("name") == "compute" and event.get("tid", 0) == 0:
            end = (event["ts"] + event["dur"]) / 1e6
            ends[event["pid"]] = min(end, ends.get(event["pid"], end))
    return ends


def _train(train_list: Path, src: str, timeout: float, log: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mpilearn-startup-") as tmp:
        run_dir, trace = Path(tmp) / "run", Path(tmp) / "trace.json"
        argv = [sys.executable, "-m", "mpilearn", "train", "-n", str(PROCESSES), "--model", MODEL]
        argv += ["--train", str(train_list), "--epochs", "1", "--run-dir", str(run_dir), "--timeline", str(trace)]
        env = common.rank_env(1)
        if src:
            env["PYTHONPATH"] = f"{src}:{env['PYTHONPATH']}"
        load = common.load()[0] if common.load() else None
        launched = time.time()
        common.run(argv, timeout, env, log)
        firsts = _first_batches(trace)
        history = json.loads((run_dir / "history.json").read_text())
    if not firsts:
        raise common.BenchmarkError(f"{' '.join(argv)}: the timeline has no compute span")
    return {
        "load_before": load,
        "first_batch_s": max(firsts.values()) - launched,
        "per_rank_first_batch_s": {str(r): t - launched for r, t in sorted(firsts.items())},
        "startup": history.get("startup"),
    }


def _cases(args: argparse.Namespace) -> list[tuple[str, str]]:
    cases = []
    for text in args.compare:
        name, sep, src = text.partition("=")
        if not sep or not name or not src:
            raise common.BenchmarkError(f"--compare {text}: expected NAME=SRC")
        cases.append((name, str(Path(src).resolve())))
    return cases or [("mpilearn", "")]


def run(args: argparse.Namespace) -> dict[str, Any]:
    log = common.RESULTS / "logs" / "startup.log"
    train_list = _data()
    cases = _cases(args)
    repeats = 1 if args.quick else args.repeats
    keras: list[float] = []
    keras_loads: list[float | None] = []
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in cases}
    for repeat in range(repeats):
        order = [("import keras", "")] + cases
        shift = repeat % len(order)
        for name, src in order[shift:] + order[:shift]:
            if name == "import keras":
                keras_loads.append(common.load()[0] if common.load() else None)
                keras.append(_import_keras(args.timeout, log))
            else:
                runs[name].append(_train(train_list, src, args.timeout, log))
    rows = [common.row("python -c 'import keras'", keras, "s", group="bound", load=keras_loads)]
    for name, _ in cases:
        measured = runs[name]
        loads = [m["load_before"] for m in measured]
        firsts = [m["first_batch_s"] for m in measured]
        rows.append(common.row("launch to first batch", firsts, "s", group=name, load=loads))
        rows.append(
            common.row("launch to first batch / import keras", common.ratios(firsts, keras), "ratio", group=name)
        )
        rows += _part_rows(name, measured, loads)
    return {
        "rows": rows,
        "details": {"import_keras_s": keras, "runs": runs},
        "settings": {
            "command": f"mpilearn train -n {PROCESSES} --model {MODEL} --epochs 1 (2 files x 64 events, 25^3)",
            "cases": {name: src or "this checkout" for name, src in cases},
            "repeats": repeats,
            "threads_per_rank": 1,
            "measure": "wall s from before the launcher starts to the last worker's first batch (--timeline)",
        },
    }


def _part_rows(name: str, measured: list[dict[str, Any]], loads: list[Any]) -> list[dict[str, Any]]:
    """Per rank: its time to the first batch and each part, from history.json's "startup" section."""
    records = [m["startup"] for m in measured if m.get("startup")]
    if not records:
        return []
    rows = [common.row("history.json first_batch_s", [r["first_batch_s"] for r in records], "s", group=name)]
    for rank in records[0]["ranks"]:
        number, role = rank["rank"], rank["role"]
        per = [r["ranks"][number] for r in records]
        group = f"{name}: rank {number} ({role})"
        rows.append(common.row("total", [p["total_s"] for p in per], "s", group=group, load=loads))
        parts = [part for part in rank["parts"]]
        for part in parts:
            rows.append(common.row(part, [p["parts"].get(part, 0.0) for p in per], "s", group=group))
    return rows
