"""Inputs from the measurements in benchmarks/results/*.json, and the network presets."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

from .. import common
from .params import WORKER_PASSES, Params

LINKS = {
    "ib-100g": (12.5e9, 2e-6),  # (bytes/s, latency s): InfiniBand EDR/HDR100
    "eth-25g": (3.1e9, 10e-6),
    "eth-10g": (1.25e9, 30e-6),
}


def _load(name: str) -> dict[str, Any] | None:
    path = common.RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def loglog(xs: list[float], ys: list[float], x: float) -> float:
    """Piecewise-linear interpolation in log-log space (extrapolated at the
    ends): memory-bound costs change slope where arrays leave the caches."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.maximum(np.asarray(ys, float), 1e-12))
    if x <= xs[0]:
        i = 0
    elif x >= xs[-1]:
        i = len(xs) - 2
    else:
        i = int(np.searchsorted(xs, x)) - 1
    slope = (ly[i + 1] - ly[i]) / (lx[i + 1] - lx[i])
    return float(np.exp(ly[i] + slope * (math.log(x) - lx[i])))


def _line_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares a + b x, with a >= 0 and b > 0."""
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    if slope <= 0:
        slope, intercept = float(np.median(np.asarray(ys) / np.asarray(xs))), 0.0
    return max(float(intercept), 0.0), float(slope)


def measured_inputs() -> dict[str, Any]:
    """Everything simulate takes from results/*.json (None where missing)."""
    out: dict[str, Any] = {"sources": {}}
    master = _load("master")
    if master:
        details = master["details"]
        sizes = sorted(int(s) for s in details["params"])
        params = [details["params"][str(s)] for s in sizes]

        def curve(values: list[float]) -> tuple[list[float], list[float]]:
            return params, values

        out["apply"] = curve([float(np.median(details["apply_s"][f"{s}/adam fused"])) for s in sizes])
        out["local_apply"] = curve([float(np.median(details["apply_s"][f"{s}/sgd keras"])) for s in sizes])
        out["copy"] = curve([float(np.median(details["reply_s"][str(s)])) for s in sizes])
        loop = master.get("loop", {})
        out["master_fixed_s"] = loop.get("master_busy_s")
        out["worker_fixed_s"] = loop.get("worker_fixed_s")
        out["allreduce_fixed_s"] = loop.get("allreduce_fixed_s")
        out["sources"]["master"] = master["date"]
    transport = _load("transport")
    if transport:
        ping = transport["details"]["pingpong"]
        nbytes = [ping[s]["bytes"] for s in sorted(ping, key=int)]
        one_way = [ping[s]["bytes"] / float(np.median(ping[s]["bytes_per_s"]["ours"])) for s in sorted(ping, key=int)]
        latency, per_byte = _line_fit(nbytes, one_way)
        out["bandwidth"], out["latency"] = 1 / per_byte, max(latency, 1e-6)
        allreduce = transport["details"]["allreduce"]
        out["allreduce_measured"] = {
            s: allreduce[s]["bytes"] / float(np.median(allreduce[s]["bytes_per_s"]["ours"])) for s in allreduce
        }
        # The ring formula at p = 2 is bytes / bandwidth + 2 latency: fit both to the measured 2-rank allreduce.
        sizes = sorted(allreduce, key=int)
        ar_latency, ar_per_byte = _line_fit(
            [allreduce[s]["bytes"] for s in sizes], [out["allreduce_measured"][s] for s in sizes]
        )
        out["allreduce_bandwidth"], out["allreduce_latency"] = 1 / ar_per_byte, max(ar_latency / 2, 1e-6)
        out["sources"]["transport"] = transport["date"]
    overhead = _load("overhead")
    if overhead and overhead.get("details", {}).get("cpu_breakdown"):
        # CPU time of each piece at the models' own sizes, in one process (overhead --breakdown).
        out["per_model"] = {
            model: entry["cpu_s"]
            for model, entry in overhead["details"]["cpu_breakdown"].items()
            if isinstance(entry, dict)
        }
        out["sources"]["overhead"] = overhead["date"]
    scaling = _load("scaling")
    if scaling:
        out["scaling"] = scaling
        out["sources"]["scaling"] = scaling["date"]
    return out


def params_for(model: str, model_result: dict[str, Any], inputs: dict[str, Any], args: argparse.Namespace) -> Params:
    """The model's Params from one scaling.json entry and the other measurements."""
    n = int(model_result["params"])
    batch = int(model_result.get("batch", 32))

    pieces = inputs.get("per_model", {}).get(model, {})

    def at(key: str, piece: str, default: float) -> float:
        if piece in pieces:  # measured at this model's size
            return float(np.median(pieces[piece]))
        if key not in inputs:
            return default
        return loglog(*inputs[key], n)

    apply_s = at("apply", "fused optimizer step", 28 * n / 15e9)
    copy_s = at("copy", "get_weights (one pass)", 8 * n / 15e9)
    solo = float(
        np.median([m["steady_samples_per_s"] for m in model_result["cases"]["solo"] if m.get("steady_samples_per_s")])
    )
    compute_s = batch / solo - apply_s - WORKER_PASSES["allreduce"] * copy_s  # solo = compute + step + buffer reset
    return Params(
        compute_s=compute_s,
        params=n,
        batch=batch,
        apply_s=apply_s,
        copy_s=copy_s,
        local_apply_s=at("local_apply", "keras sgd step (easgd worker)", 12 * n / 15e9),
        bandwidth=inputs.get("bandwidth") or 2.5e9,
        latency=inputs.get("latency") or 5e-6,
        master_fixed_s=inputs.get("master_fixed_s") or 1e-4,
        # The tiny-model cycle includes both latencies, which the links add again.
        worker_fixed_s=max(0.0, (inputs.get("worker_fixed_s") or 5e-4) - 2 * (inputs.get("latency") or 5e-6)),
        allreduce_fixed_s=inputs.get("allreduce_fixed_s") or 2e-4,
        jitter=args.jitter,
        allreduce_bandwidth=inputs.get("allreduce_bandwidth"),
        allreduce_latency=inputs.get("allreduce_latency"),
    )


def training_label(model: str) -> str:
    from ..training_runs import label

    return label(model)
