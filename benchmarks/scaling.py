"""`scaling`: samples/s with 1, 2 (and 4, oversubscribed) processes.

One mpiexec job per model with as many ranks as the largest case; every case
runs on the first k ranks while the others sleep in a non-spinning barrier,
so all cases of a repeat run side by side, in rotating order:

- `fit 1t`, `fit 2t`: plain model.fit on one process with 1 and 2 threads;
- `solo`: mpilearn on 1 process (1 thread);
- `ALGO xP`: mpilearn with P processes, 1 thread each (allreduce: P peers;
  master algorithms: 1 master + P-1 workers);
- `independent x2`: two solo runs at once, no exchange: the most 2 processes
  can reach on this machine (they share memory bandwidth and caches).

Targets on this 2-core machine: allreduce x2 >= 1.8x solo (physical limit
2x), and >= 1.5x plain fit with 2 threads. Runs with more processes than
cores are reported separately (group "oversubscribed").
"""

from __future__ import annotations

import argparse
from typing import Any

from . import common, training_runs

ALGOS = ("allreduce", "sync", "downpour", "easgd")
MODELS = ("calo-cnn", "mlp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model specs")
    parser.add_argument("--algos", default=",".join(ALGOS), help="comma-separated algorithms")
    parser.add_argument("--procs", default="1,2,4", help="process counts (1 is always measured)")
    training_runs.add_common_arguments(parser, repeats=3, epochs=2)


def cases_for(algos: list[str], procs: list[int], threads: int) -> list[dict[str, Any]]:
    cases = [
        {"name": "fit 1t", "kind": "fit", "threads": threads},
        {"name": "fit 2t", "kind": "fit", "threads": 2 * threads},
        {"name": "solo", "kind": "mpilearn", "algo": "allreduce", "ranks": 1, "threads": threads},
    ]
    for p in procs:
        if p > 1:
            cases += [
                {"name": f"{algo} x{p}", "kind": "mpilearn", "algo": algo, "ranks": p, "threads": threads}
                for algo in algos
            ]
    if 2 in procs:  # two solo runs at once: what 2 cores give with no exchange at all (shared memory bandwidth, caches)
        cases.append(
            {
                "name": "independent x2",
                "kind": "mpilearn",
                "algo": "allreduce",
                "ranks": 2,
                "independent": True,
                "threads": threads,
            }
        )
    return cases


def run(args: argparse.Namespace) -> dict[str, Any]:
    models = [m for m in args.models.split(",") if m]
    algos = [a for a in args.algos.split(",") if a]
    procs = sorted({1, *(int(p) for p in args.procs.split(",") if p)})
    if args.quick:
        models, procs = models[:1], [p for p in procs if p <= 2]
    cores = common.cores()
    log = common.RESULTS / "logs" / "scaling.log"
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    for model in models:
        top = max(procs)
        data = common.shower_arrays(max(4096, training_runs.samples_needed(args, model, top)))
        result = training_runs.launch(
            args, training_runs.spec(args, model, cases_for(algos, procs, args.threads), data), top, log
        )
        details[model] = result
        name = training_runs.label(model)
        load = training_runs.loads(result)
        v = lambda case: training_runs.values(result, case)  # noqa: E731
        if 2 in procs and "allreduce" in algos:
            rows.append(
                common.row(
                    "allreduce x2 / solo",
                    common.ratios(v("allreduce x2"), v("solo")),
                    "ratio",
                    ">= 1.8",
                    group=name,
                    load=load,
                )
            )
            rows.append(
                common.row(
                    "allreduce x2 / fit 2t",
                    common.ratios(v("allreduce x2"), v("fit 2t")),
                    "ratio",
                    ">= 1.5",
                    group=name,
                    load=load,
                )
            )
        if 2 in procs:
            rows.append(
                common.row(
                    "independent x2 / solo (no exchange: the machine's bound)",
                    common.ratios(v("independent x2"), v("solo")),
                    "ratio",
                    group=name,
                )
            )
            if "allreduce" in algos:
                rows.append(
                    common.row(
                        "allreduce x2 / independent x2",
                        common.ratios(v("allreduce x2"), v("independent x2")),
                        "ratio",
                        group=name,
                    )
                )
        rows.append(common.row("fit 2t / fit 1t", common.ratios(v("fit 2t"), v("fit 1t")), "ratio", group=name))
        rows.append(common.row("solo / fit 1t", common.ratios(v("solo"), v("fit 1t")), "ratio", group=name))
        for p in procs:
            if p == 1:
                continue
            group = name if p <= cores else f"{name}, oversubscribed"
            for algo in algos:
                if algo == "allreduce" and p == 2:
                    continue  # the target row above
                rows.append(
                    common.row(f"{algo} x{p} / solo", common.ratios(v(f"{algo} x{p}"), v("solo")), "ratio", group=group)
                )
        independent = ["independent x2"] if 2 in procs else []
        for case in ["fit 1t", "fit 2t", "solo", *independent] + [f"{a} x{p}" for p in procs if p > 1 for a in algos]:
            rows.append(common.row(f"{case} samples/s", v(case), "samples/s", group=f"{name}, samples/s"))
    return {
        "rows": rows,
        "details": details,
        "settings": {
            "models": models,
            "algos": algos,
            "procs": procs,
            "threads_per_rank": args.threads,
            "cores": cores,
            "measure": "samples/s after the first epoch, paired per repeat",
        },
    }
