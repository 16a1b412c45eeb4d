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
TARGET = ">= 1.10"


def _sizes(text: str) -> list[float | None]:
    """MiB per bucket, comma-separated; "auto" (None): mpilearn's default."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        sizes = [None if part == "auto" else float(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bucket-mb takes auto or numbers, comma-separated; got {text!r}") from None
    if not sizes or any(size is not None and size < 0 for size in sizes):
        raise argparse.ArgumentTypeError(f"--bucket-mb takes auto or numbers >= 0; got {text!r}")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=MODEL, help="file.py:function returning a torch.nn.Module")
    parser.add_argument(
        "--bucket-mb",
        type=_sizes,
        default=[None],
        metavar="MIB[,MIB...]",
        help="mpilearn's --bucket-mb, one case per size, side by side in one job (0: one allreduce after "
        "backward, no overlap; auto: mpilearn's default); the first is the headline ratio (default: auto)",
    )
    training_runs.add_common_arguments(parser, repeats=5, epochs=3)


def _size(size: float | None) -> str:
    return "auto" if size is None else f"{size:g} MiB"


def _case_name(size: float | None, first: bool) -> str:
    return "mpilearn allreduce" if first else f"mpilearn allreduce, bucket {_size(size)}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    processes = 2
    data = common.shower_arrays(max(4096, training_runs.samples_needed(args, args.model, processes)))
    sizes = list(dict.fromkeys(args.bucket_mb))
    cases: list[dict[str, Any]] = [
        {
            "name": _case_name(size, k == 0),
            "kind": "mpilearn",
            "algo": "allreduce",
            "threads": args.threads,
            **({} if size is None else {"bucket_mb": size}),
        }
        for k, size in enumerate(sizes)
    ]
    cases.append({"name": "ddp", "kind": "ddp", "threads": args.threads})
    spec = training_runs.spec(args, args.model, cases, data, port=common.free_port())
    result = training_runs.launch(args, spec, processes, common.RESULTS / "logs" / "ddp.log")
    theirs = training_runs.values(result, "ddp")
    group = f"{training_runs.label(args.model)}, 2 ranks x 1 thread"
    rows = []
    for k, size in enumerate(sizes):
        ours = training_runs.values(result, _case_name(size, k == 0))
        label = "mpilearn allreduce" if k == 0 else f"mpilearn allreduce (bucket {_size(size)})"
        rows.append(
            common.row(
                f"{label} / DDP",
                common.ratios(ours, theirs),
                "ratio",
                TARGET,
                group=group,
                load=training_runs.loads(result),
                bucket_mb=_size(size),
            )
        )
        rows.append(common.row(f"{label} samples/s", ours, "samples/s", group=group, bucket_mb=_size(size)))
    rows.append(common.row("DDP samples/s", theirs, "samples/s", group=group))
    return {
        "rows": rows,
        "details": {args.model: result},
        "settings": {
            "model": args.model,
            "processes": processes,
            "threads_per_rank": args.threads,
            "backend": "gloo",
            "bucket_mb": [_size(size) for size in sizes],
            "ddp_bucket_cap_mb": 25,
            "measure": "samples/s after the first epoch, paired per repeat",
        },
    }
