"""`backends`: throughput of one process with one thread on each Keras
backend: mpilearn's training loop (`solo`: its compiled gradient step and
optimizer step) against plain `model.fit` on the same model, batch and
data, in one job per backend, the cases alternating. Steady samples/s
(the first epoch, with tracing and compilation, is not counted).

This is the table that says which backend to pick on a CPU machine, and
whether mpilearn's per-backend step costs what Keras's own costs.
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from . import common, training_runs

BACKENDS = ("torch", "jax", "tensorflow")
MODELS = ("calo-cnn", "mlp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated Keras backends")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model specs")
    training_runs.add_common_arguments(parser, repeats=3, epochs=3)


def run(args: argparse.Namespace) -> dict[str, Any]:
    backends = [b for b in args.backends.split(",") if b and importlib.util.find_spec(b) is not None]
    models = [m for m in args.models.split(",") if m][: 1 if args.quick else None]
    cases = [
        {"name": "fit", "kind": "fit", "threads": args.threads},
        {"name": "solo", "kind": "mpilearn", "algo": "allreduce", "ranks": 1, "threads": args.threads},
    ]
    log = common.RESULTS / "logs" / "backends.log"
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    for model in models:
        data = common.shower_arrays(max(1024, training_runs.samples_needed(args, model, 1)))
        name = training_runs.label(model)
        for backend in backends:
            run_spec = training_runs.spec(args, model, cases, data, label_suffix=f" ({backend})")
            print(f"  {name} on {backend} (load {common.load()[0]})", flush=True)
            result = common.run_ranks(
                "train",
                run_spec,
                1,
                args.threads,
                args.timeout,
                bind=args.bind,
                extra_env={"KERAS_BACKEND": backend},
                log=log,
            )
            details[f"{name}/{backend}"] = result
            solo, fit = training_runs.values(result, "solo"), training_runs.values(result, "fit")
            load = training_runs.loads(result)
            rows.append(
                common.row(f"{backend}: mpilearn / model.fit", common.ratios(solo, fit), "ratio", group=name, load=load)
            )
            rows.append(common.row(f"{backend}: mpilearn samples/s", solo, "samples/s", group=f"{name}, samples/s"))
            rows.append(common.row(f"{backend}: model.fit samples/s", fit, "samples/s", group=f"{name}, samples/s"))
    return {
        "rows": rows,
        "details": details,
        "settings": {
            "backends": backends,
            "models": models,
            "threads_per_rank": args.threads,
            "batch": args.batch,
            "measure": "steady samples/s (epochs after the first), one process",
        },
    }
