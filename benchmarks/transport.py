"""`transport`: mpilearn's Communicator against raw mpi4py, 2 ranks.

Ping-pong: `Communicator.send/recv` (isend/irecv + the non-spinning wait)
against blocking `Comm.Send/Recv`; allreduce: `Communicator.allreduce_sum`
(Iallreduce + polled wait, what the allreduce loop calls: it scales its
gradients for the mean before, in a pass it makes anyway) against
`Comm.Allreduce` (in place, sum). Buffers of 1e5, 1e6 and 1e7 float32; blocks of about 0.2 s of each
variant alternate, the ratio of each pair is reported. Bytes/s: 2 x buffer
per round trip (ping-pong), buffer per call (allreduce). Target >= 0.95.

Also the CPU a rank burns while it waits 3 s for a message: our polled wait
against MPICH's blocking Recv, and how late each notices the message; and
while it waits 3 s on a send of the largest buffer to a busy peer (ours spins
for the expected transfer time, SEND_SPIN_BYTES_PER_S, then sleeps). For
information, the same Communicator with a 50 us longest sleep between polls
(RunConfig.poll_max_s, default 1 ms) and the wait before sends spun for their
transfer time ("before the send spin": the 2 ms spin of every wait) are
measured alongside.
"""

from __future__ import annotations

import argparse
from typing import Any

from . import common

SIZES = (100_000, 1_000_000, 10_000_000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES), help="buffer sizes in float32")
    parser.add_argument("--rounds", type=int, default=7, help="alternating blocks of each variant")
    parser.add_argument("--block", type=float, default=0.2, help="seconds per block")
    parser.add_argument("--wait", type=float, default=3.0, help="seconds the waiting rank waits")
    parser.add_argument("--bind", action="store_true", help="bind each rank to a core (mpiexec -bind-to core)")
    parser.add_argument("--timeout", type=float, default=600)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    spec = {
        "sizes": sizes,
        "rounds": 2 if args.quick else args.rounds,
        "block_s": 0.05 if args.quick else args.block,
        "wait_s": 0.5 if args.quick else args.wait,
    }
    result = common.run_ranks(
        "transport", spec, 2, 1, args.timeout, bind=args.bind, log=common.RESULTS / "logs" / "transport.log"
    )
    rows: list[dict[str, Any]] = []
    load = [result.get("load_end", [None])[0]]
    for kind, label in (("pingpong", "send/recv ping-pong"), ("allreduce", "allreduce")):
        for size in sizes:
            entry = result[kind][str(size)]
            rates = entry["bytes_per_s"]
            group = f"{size:.0e} floats ({entry['bytes'] / 1e6:g} MB)"
            rows.append(
                common.row(
                    f"{label}: ours / raw",
                    common.ratios(rates["ours"], rates["raw"]),
                    "ratio",
                    ">= 0.95",
                    group=group,
                    load=load,
                )
            )
            variants = {
                "ours_fast_poll": f"ours with poll_max_s {result.get('fast_poll_s', 5e-5) * 1e6:.0f} us",
                "ours_before": "ours before the send spin",
            }
            for variant, name in variants.items():
                if variant in rates:
                    ratio = common.ratios(rates[variant], rates["raw"])
                    rows.append(common.row(f"{label}: {name} / raw", ratio, "ratio", group=group))
            rows.append(common.row(f"{label}: ours GB/s", [r / 1e9 for r in rates["ours"]], "GB/s", group=group))
            rows.append(common.row(f"{label}: raw GB/s", [r / 1e9 for r in rates["raw"]], "GB/s", group=group))
    for name, label in (
        ("ours", "polled wait (ours)"),
        ("raw", "blocking Recv (MPICH)"),
        ("ours_fast_poll", f"polled wait, poll_max_s {result.get('fast_poll_s', 5e-5) * 1e6:.0f} us"),
    ):
        if name not in result["wait"]:
            continue
        wait = result["wait"][name]
        rows.append(_cpu_row(f"{label}: CPU s per s waited", wait))
        rows.append(common.row(f"{label}: wake-up latency", [wait["wake_latency_s"] * 1e3], "ms", group="waiting rank"))
    for name, label in (("ours", "wait on our send (ours)"), ("raw", "blocking Send (MPICH)")):
        send = result.get("send_wait", {}).get(name)
        if send is None:
            continue
        rows.append(_cpu_row(f"{label}, {send['bytes'] / 1e6:g} MB, receiver busy: CPU s per s waited", send))
    return {
        "rows": rows,
        "details": result,
        "settings": {
            "sizes": sizes,
            "ranks": 2,
            "rounds": spec["rounds"],
            "block_s": spec["block_s"],
            "wait_s": spec["wait_s"],
            "poll_max_s": result.get("poll_max_s"),
            "send_spin_bytes_per_s": result.get("send_spin_bytes_per_s"),
        },
    }


def _cpu_row(metric: str, wait: dict[str, Any]) -> dict[str, Any]:
    """The CPU a waiting rank burned per second it waited."""
    return common.row(
        metric, [wait["cpu_fraction"]], "fraction", group="waiting rank", wall_s=wait["wall_s"], cpu_s=wait["cpu_s"]
    )
