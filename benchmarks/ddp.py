"""`ddp`: mpilearn's allreduce on a torch.nn.Module vs PyTorch DistributedDataParallel.

One mpiexec job of 2 ranks, 1 thread each. The module is
benchmarks/modules.py:build (a small 3D CNN, what `--model
benchmarks/modules.py:build` trains). Each repeat runs, in alternating order,
`mpilearn.fit(..., algorithm="allreduce")` on the module wrapped as a Keras
model and a plain DDP loop (gloo backend, process group initialised from
the MPI ranks over TCP) on the same module, the same in-memory samples, the
same batch and Adam. Ratio: mpilearn samples/s over DDP samples/s, counted
after the first epoch. Target: >= 1.0.
"""

from __future__ import annotations

import argparse
from typing import Any

from . import common, training_runs

MODEL = "benchmarks/modules.py:build"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=MODEL, help="file.py:function returning a torch.nn.Module")
    training_runs.add_common_arguments(parser, repeats=5, epochs=3)


def run(args: argparse.Namespace) -> dict[str, Any]:
    processes = 2
    data = common.shower_arrays(max(4096, training_runs.samples_needed(args, args.model, processes)))
    cases = [
        {"name": "mpilearn allreduce", "kind": "mpilearn", "algo": "allreduce", "threads": args.threads},
        {"name": "ddp", "kind": "ddp", "threads": args.threads},
    ]
    spec = training_runs.spec(args, args.model, cases, data, port=common.free_port())
    result = training_runs.launch(args, spec, processes, common.RESULTS / "logs" / "ddp.log")
    ours, theirs = training_runs.values(result, "mpilearn allreduce"), training_runs.values(result, "ddp")
    name = training_runs.label(args.model)
    rows = [
        common.row(
            "mpilearn allreduce / DDP",
            common.ratios(ours, theirs),
            "ratio",
            ">= 1.0",
            group=f"{name}, 2 ranks x 1 thread",
            load=training_runs.loads(result),
        ),
        common.row("mpilearn allreduce samples/s", ours, "samples/s", group=f"{name}, 2 ranks x 1 thread"),
        common.row("DDP samples/s", theirs, "samples/s", group=f"{name}, 2 ranks x 1 thread"),
    ]
    return {
        "rows": rows,
        "details": {args.model: result},
        "settings": {
            "model": args.model,
            "processes": processes,
            "threads_per_rank": args.threads,
            "backend": "gloo",
            "measure": "samples/s after the first epoch, paired per repeat",
        },
    }
