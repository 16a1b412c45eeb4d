"""Shared by the training-throughput benchmarks (overhead, scaling, ddp):
the data, the per-model sizes, and launching `benchmarks.ranks train`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import common

# Batches per worker per epoch, chosen so an epoch takes ~1-2 s on one core
# of this machine: calo-cnn computes ~150-250 samples/s, mlp ~350-600 (2M
# parameters: its messages are 8 MB, so it is the communication-heavy case).
BATCHES = {"calo-cnn": 10, "mlp": 24, "benchmarks/modules.py:build": 10}
QUICK_BATCHES = 3
MODEL_LABELS = {"benchmarks/modules.py:build": "torch-cnn"}


def label(model: str) -> str:
    return MODEL_LABELS.get(model, model)


def add_common_arguments(parser: argparse.ArgumentParser, repeats: int = 3, epochs: int = 3) -> None:
    parser.add_argument("--repeats", type=int, default=repeats, help="repeats of every case (median and spread)")
    parser.add_argument(
        "--epochs", type=int, default=epochs, help="epochs per case; the first is warm-up and not counted"
    )
    parser.add_argument("--batches", type=int, default=None, help="batches per worker per epoch (default: per model)")
    parser.add_argument("--batch", type=int, default=32, help="batch size per worker")
    parser.add_argument("--threads", type=int, default=1, help="compute threads per rank")
    parser.add_argument("--bind", action="store_true", help="bind each rank to a core (mpiexec -bind-to core)")
    parser.add_argument(
        "--timeline", default="", metavar="DIR", help="write an mpilearn timeline of each case's first repeat into DIR"
    )
    parser.add_argument(
        "--profile",
        default="",
        metavar="DIR",
        help="cProfile every case into DIR (slows them: ratios are then not measurements)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="hard limit per mpiexec job, seconds")


def batches_for(args: argparse.Namespace, model: str) -> int:
    if args.batches:
        return args.batches
    return QUICK_BATCHES if args.quick else BATCHES.get(model, 10)


def samples_needed(args: argparse.Namespace, model: str, max_processes: int) -> int:
    return max_processes * batches_for(args, model) * args.batch


def spec(
    args: argparse.Namespace,
    model: str,
    cases: list[dict[str, Any]],
    data: Path,
    repeats: int | None = None,
    label_suffix: str = "",
    **extra: Any,
) -> dict[str, Any]:
    for folder in (args.timeline, args.profile):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
    out = {
        "model": model,
        "label": label(model) + label_suffix,
        "data": str(data),
        "batch": args.batch,
        "batches": batches_for(args, model),
        "epochs": 2 if args.quick else max(2, args.epochs),
        "repeats": repeats if repeats is not None else (1 if args.quick else args.repeats),
        "threads": args.threads,
        "optimizer": "adam",
        "lr": None,
        "seed": 0,
        "cases": cases,
        "timeline_dir": str(Path(args.timeline).resolve()) if args.timeline else "",
        "profile_dir": str(Path(args.profile).resolve()) if args.profile else "",
    }
    out.update(extra)
    return out


def launch(args: argparse.Namespace, run_spec: dict[str, Any], processes: int, log: Path) -> dict[str, Any]:
    print(
        f"  {run_spec['label']}: {processes} rank(s), cases {', '.join(c['name'] for c in run_spec['cases'])} "
        f"(load {common.load()[0]})",
        flush=True,
    )
    return common.run_ranks("train", run_spec, processes, args.threads, args.timeout, bind=args.bind, log=log)


def values(result: dict[str, Any], case: str, key: str = "steady_samples_per_s") -> list[float | None]:
    """Per repeat, in repeat order."""
    return [m.get(key) for m in sorted(result["cases"].get(case, []), key=lambda m: m["repeat"])]


def loads(*results: dict[str, Any]) -> list[float]:
    """1-minute load averages seen before each case of these runs."""
    return [m["load_before"][0] for r in results for ms in r["cases"].values() for m in ms if m.get("load_before")]
