"""The three cases of the scale issue at 1024 and 4096 workers, each layout
with its share of server ranks:

- calo-cnn with this machine's measured CPU workers;
- a GPU-speed worker (2 ms a batch) with a 1e7-parameter model;
- a 2.5e7-parameter model (ResNet-50 size) at GPU speed (~0.1 s a batch of 32).

Server-side costs come from the measured curves (master.json) at the size
each server holds, so fixed costs of the optimizer step do not shrink with
the slice. GPU workers take their own optimizer step on the device
(`GPU_APPLY_PARAMS_PER_S`); their passes over the weights stay host copies at
the measured speed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from .inputs import LINKS, loglog
from .model import simulate, single_worker_rate
from .params import Params

COUNTS = (1024, 4096)
PAPER_H = 500  # DiLoCo's inner steps per outer step (arXiv:2311.08105)
SERVER_SHARE = 1 / 32  # servers per worker in the sharded layouts: about 3% of the ranks
GPU_MEMORY_BYTES_PER_S = 9e11  # a V100-class GPU's memory
GPU_APPLY_PARAMS_PER_S = GPU_MEMORY_BYTES_PER_S / 28  # a fused Adam step reads and writes ~28 bytes a parameter


def _sized(p: Params, inputs: dict[str, Any], n: float) -> tuple[float, float]:
    """(optimizer step, one pass) at n parameters, from the measured curves."""
    if "apply" not in inputs:
        return p.apply_s * n / p.params, p.copy_s * n / p.params
    return loglog(*inputs["apply"], n), loglog(*inputs["copy"], n)


def gpu_case(base: Params, inputs: dict[str, Any], params: int, compute_s: float) -> Params:
    apply_s, copy_s = _sized(base, inputs, params)
    return replace(
        base,
        compute_s=compute_s,
        params=params,
        apply_s=apply_s,
        copy_s=copy_s,
        worker_apply_s=params / GPU_APPLY_PARAMS_PER_S,
        local_apply_s=params / GPU_APPLY_PARAMS_PER_S,
        worker_reset_s=params * 4 / GPU_MEMORY_BYTES_PER_S,
    )


def cases(
    calo: Params, inputs: dict[str, Any], inner_steps: int, link: str = "ib-100g"
) -> dict[str, tuple[Params, int]]:
    """name -> (params, DiLoCo's H): mpilearn's default H for calo-cnn's small
    epochs; the paper's H = 500 at GPU speed, where 500 steps take a second."""
    bandwidth, latency = LINKS[link]
    net = replace(
        calo,
        bandwidth=bandwidth,
        latency=latency,
        allreduce_bandwidth=None,
        allreduce_latency=None,
        worker_link=True,
        cores=None,
    )
    return {
        f"calo-cnn, CPU workers [{link}]": (net, inner_steps),
        f"1e7 parameters, 2 ms/batch GPU worker [{link}]": (gpu_case(net, inputs, 10_000_000, 2e-3), PAPER_H),
        f"2.5e7 parameters (ResNet-50 size), 0.1 s/batch GPU worker [{link}]": (
            gpu_case(net, inputs, 25_000_000, 0.1),
            PAPER_H,
        ),
    }


def sharded(p: Params, inputs: dict[str, Any], servers: int) -> Params:
    apply_s, copy_s = _sized(p, inputs, p.params / servers)
    return replace(p, servers=servers, server_apply_s=apply_s, server_copy_s=copy_s)


def layouts(p: Params, inputs: dict[str, Any], workers: int, inner_steps: int) -> list[tuple[str, str, Params, int]]:
    """(label, algo, params, server ranks) for one worker count."""
    s = max(1, round(workers * SERVER_SHARE))
    subs = round(math.sqrt(workers))
    return [
        ("downpour, 1 server", "downpour", p, 1),
        ("downpour, N/32 sharded servers", "downpour", sharded(p, inputs, s), s),
        ("downpour, N/32 sharded servers, --sync-every 4", "downpour", replace(sharded(p, inputs, s), sync_every=4), s),
        ("downpour, sqrt(N) sub-masters", "downpour", replace(p, masters=subs + 1), subs + 1),
        (
            "downpour, sqrt(N) sub-masters, top every 8",
            "downpour",
            replace(p, masters=subs + 1, upstream_every=8),
            subs + 1,
        ),
        (f"diloco async H={inner_steps}, 1 server", "diloco", replace(p, sync_every=inner_steps), 1),
        (
            f"diloco async H={inner_steps}, N/32 sharded servers",
            "diloco",
            replace(sharded(p, inputs, s), sync_every=inner_steps),
            s,
        ),
        (
            f"diloco sync H={inner_steps}, N/32 sharded servers",
            "diloco-sync",
            replace(sharded(p, inputs, s), sync_every=inner_steps),
            s,
        ),
        ("sync, N/32 sharded servers", "sync", sharded(p, inputs, s), s),
        ("allreduce, ring", "allreduce", p, 0),
        ("allreduce, Rabenseifner (MPICH)", "allreduce", replace(p, allreduce_algorithm="rabenseifner"), 0),
        ("allreduce, hierarchical (4 ranks a node)", "allreduce", replace(p, allreduce_algorithm="hierarchical"), 0),
        # The straggler term: synchronous steps wait for the slowest of N per-batch compute times.
        (
            "allreduce, Rabenseifner, compute jitter 2% (not 5%)",
            "allreduce",
            replace(p, allreduce_algorithm="rabenseifner", jitter=0.02),
            0,
        ),
        (
            "allreduce, Rabenseifner, no compute jitter",
            "allreduce",
            replace(p, allreduce_algorithm="rabenseifner", jitter=0.0),
            0,
        ),
    ]


def run_cases(
    calo: Params,
    inputs: dict[str, Any],
    cycles: int,
    inner_steps: int,
    counts: tuple[int, ...] = COUNTS,
    link: str = "ib-100g",
) -> list[dict[str, Any]]:
    rows = []
    for name, (p, h) in cases(calo, inputs, inner_steps, link).items():
        single = single_worker_rate(p)
        for workers in counts:
            for label, algo, q, servers in layouts(p, inputs, workers, h):
                got = simulate(q, algo, workers, cycles)
                rows.append(
                    {
                        "case": name,
                        "layout": label,
                        "algo": algo,
                        "workers": workers,
                        "server_ranks": servers,
                        "server_share": servers / (workers + servers),
                        "efficiency": got["samples_per_s"] / (workers * single),
                        "master_utilisation": got.get("master_utilisation"),
                    }
                )
    return rows
