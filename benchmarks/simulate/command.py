"""`python -m benchmarks simulate`: predictions, saturation points and the
validation against the real runs, as the result the report renders."""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from .. import common
from .inputs import LINKS, measured_inputs, params_for, training_label
from .model import ring_allreduce_s, saturation_workers, simulate, single_worker_rate
from .params import Params
from .scenarios import run_cases

WORKER_COUNTS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
ALGOS = ("downpour", "sync", "easgd", "allreduce")
DILOCO_H = 16  # what --inner-steps auto gives epochs of 16 steps or more (algorithms/defaults.py INNER_STEPS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--workers", default=",".join(str(w) for w in WORKER_COUNTS), help="worker counts to predict")
    parser.add_argument(
        "--masters", default="1,5", help="master counts (M >= 2: a top master and M-1 sub-masters; downpour)"
    )
    parser.add_argument(
        "--upstream-every",
        default="0,8",
        help="sub-master steps per exchange with the top "
        "(0: --sync-every, what mpilearn does; others: a decoupled period, a proposal)",
    )
    parser.add_argument(
        "--link",
        default="measured,ib-100g",
        help=f"comma-separated links: measured (this machine's shared memory, from transport.json) or "
        f"a network preset ({', '.join(LINKS)})",
    )
    parser.add_argument("--sync-every", type=int, default=1)
    parser.add_argument(
        "--bucket-mb",
        type=float,
        default=None,
        help="allreduce: mpilearn's --bucket-mb, buckets reduced while backward runs "
        "(0: one allreduce after the pass, nothing hidden; default: mpilearn's auto size)",
    )
    parser.add_argument("--jitter", type=float, default=0.05, help="coefficient of variation of the compute time")
    parser.add_argument("--cycles", type=int, default=20, help="exchanges per worker simulated")
    parser.add_argument(
        "--inner-steps", type=int, default=DILOCO_H, help="DiLoCo's H for calo-cnn in the 1024/4096-worker cases"
    )
    parser.add_argument("--no-cases", action="store_true", help="skip the 1024/4096-worker cases")
    # Direct inputs (instead of the measurements): one synthetic model named "given".
    parser.add_argument("--compute-ms", type=float, default=None, help="compute time per batch (ms)")
    parser.add_argument("--params", type=float, default=None, help="model parameters")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--apply-ms", type=float, default=None, help="master optimizer step (ms)")
    parser.add_argument("--copy-ms", type=float, default=None, help="one pass over the weights (ms)")
    parser.add_argument("--bandwidth", type=float, default=None, help="link bytes/s")
    parser.add_argument("--latency-us", type=float, default=None, help="link latency (us)")


def _given(args: argparse.Namespace) -> Params:
    n = int(args.params or 1e6)
    return Params(
        compute_s=(args.compute_ms or 100.0) / 1e3,
        params=n,
        batch=args.batch,
        apply_s=(args.apply_ms if args.apply_ms is not None else 28 * n / 15e9 * 1e3) / 1e3,
        copy_s=(args.copy_ms if args.copy_ms is not None else 8 * n / 15e9 * 1e3) / 1e3,
        local_apply_s=12 * n / 15e9,
        bandwidth=args.bandwidth or 12.5e9,
        latency=(args.latency_us if args.latency_us is not None else 2.0) / 1e6,
        jitter=args.jitter,
        bucket_mb=args.bucket_mb,
    )


def _with_link(p: Params, args: argparse.Namespace, link: str = "measured") -> Params:
    changes: dict[str, Any] = {"sync_every": args.sync_every, "bucket_mb": args.bucket_mb}
    if link in LINKS:  # a network: the ring runs at the link's speed
        changes["bandwidth"], changes["latency"] = LINKS[link]
        changes["allreduce_bandwidth"] = changes["allreduce_latency"] = None
    if args.bandwidth:
        changes["bandwidth"] = args.bandwidth
    if args.latency_us is not None:
        changes["latency"] = args.latency_us / 1e6
    if args.apply_ms is not None:
        changes["apply_s"] = args.apply_ms / 1e3
    if args.compute_ms is not None:
        changes["compute_s"] = args.compute_ms / 1e3
    return replace(p, **changes)


def predictions(
    name: str,
    p: Params,
    algos: list[str],
    workers: list[int],
    masters: list[int],
    cycles: int,
    upstream: tuple[int, ...] = (0,),
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    single = single_worker_rate(p)
    table, saturation = [], {}
    layouts = [(1, 0)] + [(m, u) for m in masters if m > 1 for u in upstream]
    for algo in algos:
        for m, every in layouts if algo == "downpour" else [(1, 0)]:
            q = replace(p, masters=m, upstream_every=every or None)
            label = (
                algo
                if m == 1
                else f"{algo}, {m - 1} sub-masters" + (f", top every {every} (proposed)" if every else "")
            )
            first_saturated = None
            for w in workers:
                if m > 1 and w < 2 * (m - 1):
                    continue
                got = simulate(q, algo, w, cycles)
                efficiency = got["samples_per_s"] / (w * single)
                util = got.get("master_utilisation")
                if first_saturated is None and util is not None and util >= 0.95:
                    first_saturated = w
                table.append(
                    {
                        "model": name,
                        "algo": label,
                        "workers": w,
                        "samples_per_s": got["samples_per_s"],
                        "efficiency": efficiency,
                        "master_utilisation": util,
                        "submaster_utilisation": got.get("submaster_utilisation"),
                    }
                )
            if algo != "allreduce":
                saturation[label] = {
                    "analytic": saturation_workers(q, algo) if m == 1 else None,
                    "simulated_first_at_95pct": first_saturated,
                }
    return table, saturation


def validate(inputs: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Predicted vs measured for the real runs of scaling.json on this machine
    (its cores shared by the ranks). The model is calibrated on the solo run
    (its compute time comes from it), so what it predicts is each run's speed
    relative to solo; the measured ratio is taken per repeat (the run and the
    solo run of the same repeat, side by side), which cancels most of the
    drift of a shared machine's load."""
    scaling = inputs.get("scaling")
    if not scaling:
        return []
    cores = scaling["machine"]["cores"]
    out = []
    for model, result in scaling["details"].items():
        if "params" not in result or not result["cases"].get("solo"):
            continue
        p = replace(params_for(model, result, inputs, args), cores=cores)
        solo = {
            m["repeat"]: m["steady_samples_per_s"] for m in result["cases"]["solo"] if m.get("steady_samples_per_s")
        }
        predicted_solo = float(
            np.median([simulate(p, "allreduce", 1, args.cycles, seed)["samples_per_s"] for seed in range(3)])
        )
        for case, measurements in result["cases"].items():
            measured = [m["steady_samples_per_s"] for m in measurements if m.get("steady_samples_per_s")]
            if not measured or case.startswith(("fit", "independent")):  # not mpilearn algorithms
                continue
            if case == "solo":
                algo, processes = "allreduce", 1
            else:
                algo, _, count = case.partition(" x")
                processes = int(count)
            workers = processes if algo == "allreduce" else processes - 1
            predicted = float(
                np.median([simulate(p, algo, workers, args.cycles, seed)["samples_per_s"] for seed in range(3)])
            )
            ratios = [
                m["steady_samples_per_s"] / solo[m["repeat"]]
                for m in measurements
                if m.get("steady_samples_per_s") and solo.get(m["repeat"])
            ]
            measured_ratio = float(np.median(ratios)) if ratios else float("nan")
            predicted_ratio = predicted / predicted_solo
            out.append(
                {
                    "model": training_label(model),
                    "case": case,
                    "processes": processes,
                    "measured": float(np.median(measured)),
                    "measured_min": min(measured),
                    "measured_max": max(measured),
                    "predicted": predicted,
                    "measured_ratio": measured_ratio,
                    "measured_ratio_min": min(ratios) if ratios else None,
                    "measured_ratio_max": max(ratios) if ratios else None,
                    "predicted_ratio": predicted_ratio,
                    "error": predicted_ratio / measured_ratio - 1,
                    "calibration": case == "solo",
                    "oversubscribed": processes > cores,
                }
            )
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    algos = [a for a in args.algos.split(",") if a]
    workers = [int(w) for w in args.workers.split(",") if w]
    masters = [int(m) for m in args.masters.split(",") if m]
    cycles = args.cycles
    if args.quick:
        workers, masters, cycles = [w for w in workers if w <= 64] or workers[:2], masters[:2], min(cycles, 8)
        args.upstream_every = args.upstream_every.split(",")[0]
    inputs = measured_inputs() if args.compute_ms is None or args.params is None else {"sources": {}}
    links = [link for link in args.link.split(",") if link]
    unknown = [link for link in links if link != "measured" and link not in LINKS]
    if unknown:
        raise SystemExit(f"--link: unknown {', '.join(unknown)}; choose from measured, {', '.join(LINKS)}")
    base: dict[str, Params] = {}
    if args.compute_ms is not None and args.params is not None:
        base["given"] = _given(args)
        links = [link if link != "measured" else "given" for link in links]
    elif inputs.get("scaling"):
        for model, result in inputs["scaling"]["details"].items():
            if "params" in result:
                base[training_label(model)] = params_for(model, result, inputs, args)
    if not base:  # nothing measured yet: an example model
        base["example (no measurements)"] = _given(args)
        links = [link if link != "measured" else "given" for link in links]
    models = {f"{name} [{link}]": _with_link(p, args, link) for name, p in base.items() for link in links}
    table: list[dict[str, Any]] = []
    saturation: dict[str, Any] = {}
    upstream = tuple(int(u) for u in args.upstream_every.split(",") if u)
    for name, p in models.items():
        rows, sat = predictions(name, p, algos, workers, masters, cycles, upstream)
        if "allreduce" in algos and p.allreduce_latency is None and inputs.get("allreduce_latency"):
            # What the ring costs if every one of its steps waits as long as the measured polled allreduce does.
            polled = replace(p, allreduce_latency=inputs["allreduce_latency"])
            extra, _ = predictions(name, polled, ["allreduce"], workers, [1], cycles)
            for row in extra:
                row["algo"] = "allreduce, measured polling delay per ring step"
            rows += extra
        table += rows
        saturation[name] = sat
    checks = [] if args.quick or "scaling" not in inputs else validate(inputs, args)
    allreduce_check = _allreduce_check(inputs)
    rows = _result_rows(table, checks, saturation)
    calo = base.get("calo-cnn")
    cases = (
        []
        if args.quick or args.no_cases or calo is None
        else run_cases(calo, inputs, min(cycles, 10), args.inner_steps)
    )
    rows += _case_rows(cases)
    return {
        "inputs": {name: asdict(p) for name, p in models.items()},
        "sources": inputs.get("sources", {}),
        "links": links,
        "predictions": table,
        "saturation": saturation,
        "validation": checks,
        "allreduce_validation": allreduce_check,
        "cases": cases,
        "rows": rows,
        "summary": _summary(checks, saturation),
    }


def _allreduce_check(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """The ring formula at 2 peers, with the link fitted to ping-pong, against the measured allreduce."""
    if "allreduce_measured" not in inputs:
        return []
    out = []
    for size, seconds in inputs["allreduce_measured"].items():
        predicted = ring_allreduce_s(4 * int(size), 2, inputs["bandwidth"], inputs["latency"])  # the ping-pong link
        fitted = ring_allreduce_s(4 * int(size), 2, inputs["allreduce_bandwidth"], inputs["allreduce_latency"])
        out.append(
            {
                "floats": int(size),
                "measured_s": seconds,
                "predicted_s": predicted,
                "error": predicted / seconds - 1,
                "fitted_s": fitted,
            }
        )
    return out


def _result_rows(
    table: list[dict[str, Any]], checks: list[dict[str, Any]], saturation: dict[str, Any]
) -> list[dict[str, Any]]:
    rows = []
    for c in checks:
        if c["calibration"]:
            continue
        group = "validation, oversubscribed" if c["oversubscribed"] else "validation"
        target = "<= 0.15"
        rows.append(
            common.row(
                f"{c['model']} {c['case']}: |predicted / measured - 1| (speed relative to solo)",
                [abs(c["error"])],
                "fraction",
                target,
                group=group,
                predicted_ratio=c["predicted_ratio"],
                measured_ratio=c["measured_ratio"],
            )
        )
    for model, sat in saturation.items():
        for algo, s in sat.items():
            if s["analytic"] is not None:
                rows.append(
                    common.row(
                        f"{model} {algo}: workers one master can feed",
                        [s["analytic"]],
                        "workers",
                        group="saturation",
                        simulated_first_at_95pct=s["simulated_first_at_95pct"],
                    )
                )
    return rows


def _case_rows(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per case and worker count: the best asynchronous layout with servers at
    most 5% of the ranks, and the best allreduce (goals at 1024 workers)."""
    rows = []
    for name in dict.fromkeys(c["case"] for c in cases):
        for workers in sorted({c["workers"] for c in cases if c["case"] == name}):
            mine = [c for c in cases if c["case"] == name and c["workers"] == workers]
            asynchronous = [
                c for c in mine if c["algo"] in ("downpour", "easgd", "diloco") and c["server_share"] <= 0.05
            ]
            # What-if rows (another compute jitter than the case's) explain the goal, they do not meet it.
            allreduce = [c for c in mine if c["algo"] == "allreduce" and "jitter" not in c["layout"]]
            for kind, group in (("asynchronous, servers <= 5% of ranks", asynchronous), ("allreduce", allreduce)):
                if not group:
                    continue
                best = max(group, key=lambda c: c["efficiency"])
                goal = workers == 1024 and (kind != "allreduce" or name.startswith("calo-cnn"))
                rows.append(
                    common.row(
                        f"{name}, {workers} workers: best {kind} ({best['layout']})",
                        [best["efficiency"]],
                        "efficiency",
                        ">= 0.9" if goal else None,
                        group="1024/4096 workers",
                    )
                )
    return rows


def _summary(checks: list[dict[str, Any]], saturation: dict[str, Any]) -> str:
    real = [c for c in checks if not c["calibration"] and not c["oversubscribed"]]
    parts = []
    if real:
        worst = max(abs(c["error"]) for c in real)
        within = sum(abs(c["error"]) <= 0.15 for c in real)
        parts.append(f"validation: {within}/{len(real)} runs within 15% (worst {worst:.0%})")
    for model, sat in saturation.items():
        s = sat.get("downpour")
        if s and s["analytic"]:
            parts.append(f"{model}: one downpour master saturates at ~{s['analytic']:.0f} workers")
    return "simulate: " + ("; ".join(parts) if parts else "no measurements yet (example model)")
