"""`overhead`: 1 master + 1 worker against plain single-process `model.fit`.

One mpiexec job of 2 ranks per model. Each repeat runs, in rotating order,
plain `model.fit` on rank 0 (rank 1 sleeps in a non-spinning barrier) and
`mpilearn.fit` with each algorithm that has a master, on the same in-memory
samples, model, batch, backend (torch) and 1 thread per rank. The ratio of
each repeat is mpilearn's samples/s over fit's in that repeat; samples/s are
counted after the first epoch (start-up and warm-up excluded, the same way
for both). Target: >= 1.0.
"""

from __future__ import annotations

import argparse
from typing import Any

from . import common, training_runs

ALGOS = ("downpour", "sync", "easgd", "gem")
MODELS = ("calo-cnn", "mlp")
TARGET = ">= 1.0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model specs")
    parser.add_argument("--algos", default=",".join(ALGOS), help="comma-separated algorithms with a master")
    parser.add_argument(
        "--extra-case",
        action="append",
        default=[],
        metavar="NAME:ALGO[:VAR=VALUE,...]",
        help="one more mpilearn case with environment variables set around it, for A/B tests of a "
        "prototype put on PYTHONPATH (e.g. 'downpour overlap:downpour:MPILEARN_OVERLAP=1')",
    )
    parser.add_argument(
        "--pipeline",
        default="",
        metavar="MODES",
        help="comma-separated --pipeline values (auto, on, off) to run every algorithm with, side by side in the "
        "same job (e.g. off,on); default: each algorithm as it comes",
    )
    parser.add_argument("--no-breakdown", action="store_true", help="skip the CPU-time breakdown of one step (profile)")
    training_runs.add_common_arguments(parser)


def _extra(text: str, threads: int) -> dict[str, Any]:
    name, algo, *rest = text.split(":")
    environ = dict(item.split("=", 1) for item in ",".join(rest).split(",") if item)
    return {"name": name, "kind": "mpilearn", "algo": algo, "threads": threads, "environ": environ}


def _case(algo: str, pipeline: str | None, threads: int) -> dict[str, Any]:
    """One algorithm, with --pipeline MODE when given (its case then named "ALGO pipeline MODE")."""
    case: dict[str, Any] = {"name": algo, "kind": "mpilearn", "algo": algo, "threads": threads}
    if pipeline is not None:
        case.update(name=f"{algo} pipeline {pipeline}", pipeline=pipeline)
    return case


def run(args: argparse.Namespace) -> dict[str, Any]:
    models = [m for m in args.models.split(",") if m]
    algos = [a for a in args.algos.split(",") if a]
    modes: list[str | None] = [m for m in args.pipeline.split(",") if m] or [None]
    if args.quick:
        algos = algos[:2]
    log = common.RESULTS / "logs" / "overhead.log"
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    for model in models:
        data = common.shower_arrays(max(4096, training_runs.samples_needed(args, model, 2)))
        cases = [{"name": "fit", "kind": "fit", "threads": args.threads}]
        cases += [_case(algo, mode, args.threads) for algo in algos for mode in modes]
        cases += [_extra(text, args.threads) for text in args.extra_case]
        names = [c["name"] for c in cases if c["kind"] == "mpilearn"]
        result = training_runs.launch(args, training_runs.spec(args, model, cases, data), 2, log)
        details[model] = result
        name = training_runs.label(model)
        fit = training_runs.values(result, "fit")
        for algo in names:
            rows.append(
                common.row(
                    f"{algo} 1+1 / fit",
                    common.ratios(training_runs.values(result, algo), fit),
                    "ratio",
                    TARGET,
                    group=name,
                    load=training_runs.loads(result),
                )
            )
        rows.append(common.row("fit samples/s", fit, "samples/s", group=name))
        for algo in names:
            rows.append(
                common.row(f"{algo} 1+1 samples/s", training_runs.values(result, algo), "samples/s", group=name)
            )
    if not args.no_breakdown:
        spec = {
            "models": models,
            "data": str(common.shower_arrays(4096)),
            "batch": args.batch,
            "threads": args.threads,
            "repeats": 1 if args.quick else 3,
            "optimizer": "adam",
            "lr": None,
            "seed": 0,
        }
        steps = common.run_ranks("steps", spec, 0, args.threads, args.timeout, log=log)
        details["cpu_breakdown"] = steps
        for model, entry in steps.items():
            if not isinstance(entry, dict):
                continue  # load_end
            for piece, values in entry["cpu_s"].items():
                rows.append(
                    common.row(
                        f"CPU ms per batch: {piece}",
                        [v * 1e3 for v in values],
                        "ms CPU",
                        group=f"{training_runs.label(model)}, one process (profile)",
                    )
                )
    return {
        "rows": rows,
        "details": details,
        "settings": {
            "models": models,
            "algos": algos,
            "pipeline": [m for m in modes if m],
            "threads_per_rank": args.threads,
            "processes": 2,
            "measure": "samples/s after the first epoch, paired per repeat",
        },
    }
