"""`master`: updates per second one master sustains, per optimizer and model size.

One process, 1 thread (the master's share of a node). For models of about
1e5, 1e6 and 1e7 parameters (4 square Dense layers) it times the master's
step, `backend.apply_gradients(flat_gradient)`, with each optimizer that has
a fused torch path (Adam, AdamW, SGD, RMSprop, Adagrad, Nadam, Keras's
defaults), side by side through the fused path and through Keras's own
optimizer (`backend.fast_optimizer = False`), and the ratio of the two. Next
to each: the memory-bandwidth bound, bytes the update must touch (Adam: read
gradient, parameter, m, v and write parameter, m, v: 28 bytes a parameter;
AdamW and Nadam the same; SGD 12; RMSprop and Adagrad 20) over the numpy copy
bandwidth (read + write) measured in the same process between the repeats.
Also the master's reply copy (weights into the outgoing buffer), which the
scaling model adds to the service time.
Target: fused Adam at 1e7 within 2x of the bound.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from . import common

# Optimizer (keras.optimizers.get name, its defaults) -> bytes an update touches per parameter.
TOUCHED_BYTES = {"adam": 28, "adamw": 28, "sgd": 12, "rmsprop": 20, "adagrad": 20, "nadam": 28}
OPTIMIZERS = tuple(TOUCHED_BYTES)
VARIANTS = {
    f"{optimizer} {path}": {"optimizer": optimizer, "fast": path == "fused", "touched": optimizer}
    for optimizer in OPTIMIZERS
    for path in ("fused", "keras")
}
SIZES = (100_000, 1_000_000, 10_000_000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES), help="parameter counts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    repeats = 2 if args.quick else args.repeats
    if args.quick:
        sizes = [s for s in sizes if s <= 1_000_000] or sizes[:1]
    spec = {
        "sizes": sizes,
        "variants": {k: {"optimizer": v["optimizer"], "fast": v["fast"]} for k, v in VARIANTS.items()},
        "repeats": repeats,
        "threads": args.threads,
        "min_steps": 3,
        "max_steps": 200,
        "min_time_s": 0.1 if args.quick else 0.4,
    }
    result = common.run_ranks("master", spec, 0, args.threads, args.timeout, log=common.RESULTS / "logs" / "master.log")
    wrong = [key for key, ran in result["fused_ran"].items() if ran != VARIANTS[key.split("/", 1)[1]]["fast"]]
    if wrong:  # a "fused" variant that fell back to Keras (or the reverse) would be mislabelled
        raise common.BenchmarkError(f"the fused path did not run as labelled: {', '.join(wrong)}")
    bandwidth = result["bandwidth"]
    rows: list[dict[str, Any]] = []
    for size in sizes:
        params = result["params"][str(size)]
        group = f"{params / 1e6:.2g}M parameters" if params >= 1e6 else f"{params / 1e3:.0f}k parameters"
        for name, variant in VARIANTS.items():
            times = result["apply_s"][f"{size}/{name}"]
            bound = [TOUCHED_BYTES[variant["touched"]] * params / bw for bw in bandwidth]
            target = "<= 2.0" if name == "adam fused" and size == max(sizes) and size >= 10_000_000 else None
            rows.append(
                common.row(
                    f"{name}: time / bandwidth bound",
                    common.ratios(times, bound),
                    "ratio",
                    target,
                    group=group,
                    load=[result.get("load_end", [None])[0]],
                )
            )
            rows.append(
                common.row(
                    f"{name}: updates/s",
                    [1 / t for t in times],
                    "updates/s",
                    group=group,
                    step_ms=common.stats([t * 1e3 for t in times])["median"],
                    bound_ms=common.stats([b * 1e3 for b in bound])["median"],
                )
            )
        for optimizer in OPTIMIZERS:
            fused, keras = (result["apply_s"][f"{size}/{optimizer} {path}"] for path in ("fused", "keras"))
            rows.append(
                common.row(
                    f"{optimizer} keras / {optimizer} fused (step time)",
                    common.ratios(keras, fused),
                    "ratio",
                    group=group,
                )
            )
        rows.append(common.row("reply copy ms", [t * 1e3 for t in result["reply_s"][str(size)]], "ms", group=group))
    rows.append(
        common.row("numpy copy bandwidth (read + write)", [b / 1e9 for b in bandwidth], "GB/s", group="machine")
    )
    if result.get("update_bandwidth"):
        rows.append(
            common.row(
                "numpy in-place add bandwidth (2 reads + 1 write)",
                [b / 1e9 for b in result["update_bandwidth"]],
                "GB/s",
                group="machine",
            )
        )
        top = max(sizes)
        params = result["params"][str(top)]
        rows.append(
            common.row(
                "adam fused: time / in-place bandwidth bound",
                common.ratios(
                    result["apply_s"][f"{top}/adam fused"],
                    [TOUCHED_BYTES["adam"] * params / bw for bw in result["update_bandwidth"]],
                ),
                "ratio",
                group=f"{params / 1e6:.2g}M parameters" if params >= 1e6 else f"{params / 1e3:.0f}k parameters",
            )
        )
    loop = _loop_overheads(args, repeats)
    rows += loop.pop("rows")
    return {
        "rows": rows,
        "details": result,
        "loop": loop,
        "settings": {
            "sizes": sizes,
            "threads": args.threads,
            "repeats": repeats,
            "touched_bytes_per_parameter": TOUCHED_BYTES,
            "layers": 4,
        },
        "bandwidth_bytes_per_s": float(np.median(bandwidth)),
    }


def _loop_overheads(args: argparse.Namespace, repeats: int) -> dict[str, Any]:
    """Fixed costs of one exchange, apart from the model's size: 1 master + 1
    worker (and 2 allreduce peers) training a tiny model (8 inputs, 16
    units), with mpilearn's timeline. Master busy time per update is the
    loop's time outside its `wait` spans; the worker's fixed cost is its
    cycle minus its compute and the master's busy time (both latencies
    included; the tiny model's optimizer step and reply copy are taken out,
    as they are measured by size). The scaling model (simulate) adds these
    to every exchange."""
    cases = [
        {"name": "downpour", "kind": "mpilearn", "algo": "downpour", "spans": True, "threads": args.threads},
        {"name": "allreduce", "kind": "mpilearn", "algo": "allreduce", "spans": True, "threads": args.threads},
    ]
    spec = {
        "model": "mlp",
        "model_args": {"units": 16, "layers_count": 1},
        "label": "tiny",
        "data": {"random": [8, 3]},
        "batch": 8,
        "batches": 40 if args.quick else 300,
        "epochs": 2,
        "repeats": repeats,
        "threads": args.threads,
        "optimizer": "adam",
        "lr": None,
        "seed": 0,
        "cases": cases,
    }
    result = common.run_ranks("train", spec, 2, args.threads, args.timeout, log=common.RESULTS / "logs" / "master.log")
    master_busy, worker_fixed, compute, ar_step, ar_fixed = [], [], [], [], []
    for run in result["cases"]["downpour"]:
        updates, total, spans = run["updates"], run["train_time_s"], run["spans"]
        wait = spans["0"].get("wait", [0, 0.0])[1]
        # The optimizer step and the reply copy are measured by size; the rest is the loop's own cost.
        busy = (total - wait - spans["0"].get("apply", [0, 0.0])[1] - spans["0"].get("reply", [0, 0.0])[1]) / updates
        work = spans["1"].get("compute", [0, 0.0])[1] / updates
        master_busy.append(busy)
        compute.append(work)
        worker_fixed.append(total / updates - work - busy)
    for run in result["cases"]["allreduce"]:
        updates, total, spans = run["updates"], run["train_time_s"], run["spans"]
        ar_step.append(spans["0"].get("allreduce", [0, 0.0])[1] / updates)
        ar_fixed.append(
            (total - sum(spans["0"].get(name, [0, 0.0])[1] for name in ("compute", "allreduce", "apply"))) / updates
        )
    group = "exchange fixed costs (tiny model)"
    us = lambda values: [v * 1e6 for v in values]  # noqa: E731
    rows = [
        common.row("master loop per update, besides optimizer step and reply copy", us(master_busy), "us", group=group),
        common.row("worker cycle minus compute and master", us(worker_fixed), "us", group=group),
        common.row("tiny-batch compute", us(compute), "us", group=group),
        common.row("allreduce of a tiny buffer", us(ar_step), "us", group=group),
        common.row("allreduce step minus compute, allreduce and optimizer step", us(ar_fixed), "us", group=group),
    ]
    return {
        "rows": rows,
        "master_busy_s": common.stats(master_busy)["median"],
        "worker_fixed_s": common.stats(worker_fixed)["median"],
        "allreduce_small_s": common.stats(ar_step)["median"],
        "allreduce_fixed_s": common.stats(ar_fixed)["median"],
        "details": result,
    }
