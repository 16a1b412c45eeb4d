"""`time-to-accuracy`: wall time until the validation accuracy reaches a target.

The demo data set (`mpilearn make-data`: 4 training files of 500 showers at
25^3, 1 validation file), the calo-cnn model, Adam, batch 32, 1 thread per
rank, through the command line as a user runs it:

    mpilearn train --model calo-cnn --train train.txt --val val.txt --algo ALGO -n P \\
        --threads 1 --target-metric val_accuracy,>=,T

for 1 and 2 workers of every algorithm (master algorithms: P = workers + 1;
allreduce: P = workers). The time is the `time_s` of the first validation
row of history.json at or above the target (training loop only, in-loop
validations included: a validation at each epoch end unless
--validate-every is given, so times come in steps of an epoch). Runs
alternate their order between repeats. With 2 workers, master algorithms
run 3 processes on this 2-core machine. The longest benchmark: 20 training
runs of 15-30 s (about 7 minutes here); EASGD and GEM with their default
hyperparameters often need more than the default 2 epochs (--max-epochs).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import common

ALGOS = ("downpour", "sync", "easgd", "gem", "allreduce")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--workers", default="1,2", help="worker counts")
    parser.add_argument("--target", type=float, default=0.75, help="validation accuracy to reach")
    parser.add_argument("--max-epochs", type=int, default=2)
    parser.add_argument("--validate-every", type=int, default=0, help="also validate every N master updates")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default="calo-cnn")
    parser.add_argument("--timeout", type=float, default=600, help="hard limit per training run, seconds")


def _time_to(history: dict[str, Any], target: float) -> tuple[float | None, float | None, float]:
    """(time_s, epoch) of the first row reaching the target, and the best accuracy."""
    best = 0.0
    for row in history.get("epochs", []):
        accuracy = row.get("val_accuracy")
        if accuracy is None:
            continue
        best = max(best, accuracy)
        if accuracy >= target:
            return row["time_s"], row["epoch"], best
    return None, None, best


def run(args: argparse.Namespace) -> dict[str, Any]:
    algos = [a for a in args.algos.split(",") if a]
    workers = [int(w) for w in args.workers.split(",") if w]
    repeats, max_epochs, target = args.repeats, args.max_epochs, args.target
    if args.quick:
        algos, workers, repeats, max_epochs, target = ["downpour", "allreduce"][: len(algos)], workers[:1], 1, 1, min(target, 0.5)
    data = common.demo_files()
    configs = [(algo, w) for w in workers for algo in algos]
    log = common.RESULTS / "logs" / "time-to-accuracy.log"
    measured: dict[str, list[dict[str, Any]]] = {f"{a} {w}w": [] for a, w in configs}
    for repeat in range(repeats):
        order = configs if repeat % 2 == 0 else list(reversed(configs))
        for algo, w in order:
            processes = w if algo == "allreduce" else w + 1
            with tempfile.TemporaryDirectory(prefix="mpilearn-tta-") as tmp:
                run_dir = Path(tmp) / "run"
                argv = [sys.executable, "-m", "mpilearn", "train", "--model", args.model, "--train", str(data / "train.txt"),
                        "--val", str(data / "val.txt"), "--algo", algo, "-n", str(processes), "--threads", "1",
                        "--epochs", str(max_epochs), "--batch", "32", "--seed", str(repeat),
                        "--target-metric", f"val_accuracy,>=,{target}", "--run-dir", str(run_dir), "--progress", "lines"]
                if args.validate_every:
                    argv += ["--validate-every", str(args.validate_every)]
                before = common.load()
                print(f"  {algo} {w} worker(s), {processes} process(es) (load {before[0]})", flush=True)
                common.run(argv, args.timeout, common.rank_env(1), log)
                history = json.loads((run_dir / "history.json").read_text())
            seconds, epoch, best = _time_to(history, target)
            measured[f"{algo} {w}w"].append({"repeat": repeat, "time_s": seconds, "epoch": epoch, "best_val_accuracy": best,
                                             "train_time_s": history["train_time_s"], "samples_per_s": history["samples_per_s"],
                                             "load_before": before, "processes": processes})
    rows: list[dict[str, Any]] = []
    for algo, w in configs:
        runs = measured[f"{algo} {w}w"]
        reached = [r["time_s"] for r in runs]
        rows.append(common.row(f"{algo}, {w} worker{'s' if w > 1 else ''}: seconds to val_accuracy >= {target}", reached, "s",
                               group=f"target {target}", reached=f"{sum(t is not None for t in reached)}/{len(runs)}",
                               epochs=[r["epoch"] for r in runs], load=[r["load_before"][0] for r in runs]))
    for algo in algos:
        if 1 in workers and 2 in workers:
            one, two = measured[f"{algo} 1w"], measured[f"{algo} 2w"]
            rows.append(common.row(f"{algo}: time 1 worker / time 2 workers",
                                   common.ratios([r["time_s"] for r in one], [r["time_s"] for r in two]), "ratio",
                                   group="speed-up"))
    return {"rows": rows, "details": measured,
            "settings": {"algos": algos, "workers": workers, "target": target, "max_epochs": max_epochs, "repeats": repeats,
                         "model": args.model, "data": "mpilearn make-data: 4 x 500 training showers at 25^3, 1 x 500 validation"}}
