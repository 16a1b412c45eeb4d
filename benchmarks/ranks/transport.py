"""`transport`: ping-pong and allreduce bandwidth of mpilearn's Communicator
against raw mpi4py, and the CPU a waiting rank burns."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .world import Ranks


def _timed_blocks(ranks: Ranks, run_block: Callable[[int], None], iterations: int) -> float:
    ranks.comm.Barrier()
    start = time.perf_counter()
    run_block(iterations)
    elapsed = time.perf_counter() - start
    return float(ranks.comm.allreduce(elapsed, op=ranks.MPI.MAX))


def transport(spec: dict[str, Any]) -> dict[str, Any] | None:
    from mpilearn.comm import Communicator

    ranks = Ranks()
    MPI = ranks.MPI
    if ranks.size != 2:
        raise SystemExit("the transport benchmark runs on exactly 2 ranks")
    ours = Communicator(MPI.COMM_WORLD)
    # The same Communicator with a shorter longest sleep between polls (mpilearn's RunConfig.poll_max_s).
    fast = Communicator(MPI.COMM_WORLD, spec.get("fast_poll_s", 5e-5))
    # The wait before sends spun for their expected transfer time (SEND_SPIN_BYTES_PER_S), and the
    # fast-poll variant as it was measured then.
    before = Communicator(MPI.COMM_WORLD)
    before.send_spin_rate = fast.send_spin_rate = 0.0
    raw = MPI.COMM_WORLD.Dup()
    peer = 1 - ranks.rank
    tag = 11
    out: dict[str, Any] = {
        "pingpong": {},
        "allreduce": {},
        "poll_max_s": ours.poll_max_s,
        "fast_poll_s": fast.poll_max_s,
        "send_spin_bytes_per_s": ours.send_spin_rate,
    }

    for floats in spec["sizes"]:
        buffer = np.zeros(int(floats), dtype=np.float32)  # zeros: repeated sums stay finite

        def pingpong_with(comm: Any) -> Callable[[int], None]:
            def pingpong(k: int) -> None:
                for _ in range(k):
                    if ranks.rank == 0:
                        comm.send(buffer, peer, tag)
                        comm.recv(buffer, peer, tag)
                    else:
                        comm.recv(buffer, peer, tag)
                        comm.send(buffer, peer, tag)

            return pingpong

        def allreduce_with(comm: Any) -> Callable[[int], None]:
            def allreduce(k: int) -> None:
                for _ in range(k):
                    comm.allreduce_sum(buffer)

            return allreduce

        ours_pingpong, fast_pingpong, before_pingpong = pingpong_with(ours), pingpong_with(fast), pingpong_with(before)
        ours_allreduce, fast_allreduce = allreduce_with(ours), allreduce_with(fast)

        def raw_pingpong(k: int) -> None:
            for _ in range(k):
                if ranks.rank == 0:
                    raw.Send([buffer, MPI.FLOAT], peer, tag)
                    raw.Recv([buffer, MPI.FLOAT], peer, tag)
                else:
                    raw.Recv([buffer, MPI.FLOAT], peer, tag)
                    raw.Send([buffer, MPI.FLOAT], peer, tag)

        def raw_allreduce(k: int) -> None:
            for _ in range(k):
                raw.Allreduce(MPI.IN_PLACE, [buffer, MPI.FLOAT], op=MPI.SUM)

        for kind, variants, moved in (
            (
                "pingpong",
                {
                    "ours": ours_pingpong,
                    "raw": raw_pingpong,
                    "ours_fast_poll": fast_pingpong,
                    "ours_before": before_pingpong,
                },
                2 * buffer.nbytes,
            ),
            (
                "allreduce",
                {"ours": ours_allreduce, "raw": raw_allreduce, "ours_fast_poll": fast_allreduce},
                buffer.nbytes,
            ),
        ):
            # Iterations per block: about spec["block_s"] seconds of the raw call.
            probe = max(_timed_blocks(ranks, variants["raw"], 3) / 3, 1e-6)
            iterations = int(min(max(spec["block_s"] / probe, 3), 20000))
            iterations = ranks.bcast(iterations)
            rates: dict[str, list[float]] = {name: [] for name in variants}
            for rnd in range(spec["rounds"]):
                names = list(variants) if rnd % 2 == 0 else list(reversed(variants))  # alternate who goes first
                for name in names:
                    seconds = _timed_blocks(ranks, variants[name], iterations)
                    rates[name].append(moved * iterations / seconds)
            out[kind][str(int(floats))] = {"bytes": buffer.nbytes, "iterations": iterations, "bytes_per_s": rates}

    # A rank that waits 3 s for a message: CPU seconds burnt (ours polls with a sleep; MPICH's Recv spins).
    waits: dict[str, Any] = {}
    token = np.zeros(1, dtype=np.float32)
    for name in ("ours", "raw", "ours_fast_poll"):
        ranks.comm.Barrier()
        if ranks.rank == 0:
            time.sleep(spec["wait_s"])
            sent = time.monotonic()
            if name == "raw":
                raw.Send([token, MPI.FLOAT], peer, tag)
            else:
                (ours if name == "ours" else fast).send(token, peer, tag)
            info = {"sent": sent}
        else:
            wall, cpu = time.monotonic(), time.process_time()
            if name == "raw":
                raw.Recv([token, MPI.FLOAT], peer, tag)
            else:
                (ours if name == "ours" else fast).recv(token, peer, tag)
            info = {"received": time.monotonic(), "wall_s": time.monotonic() - wall, "cpu_s": time.process_time() - cpu}
        both = ranks.gather(info)
        if ranks.rank == 0:
            sender, receiver = both
            waits[name] = {
                "wall_s": receiver["wall_s"],
                "cpu_s": receiver["cpu_s"],
                "cpu_fraction": receiver["cpu_s"] / receiver["wall_s"],
                "wake_latency_s": receiver["received"] - sender["sent"],
            }
    out["wait"] = waits

    # A rank that sends the largest buffer to a peer busy for 3 s before it posts its receive: the
    # sender's wait spins for the expected transfer time, then sleeps (raw: MPICH's Send spins throughout).
    sends: dict[str, Any] = {}
    big = np.zeros(max(int(s) for s in spec["sizes"]), dtype=np.float32)
    for name in ("ours", "raw"):
        ranks.comm.Barrier()
        if ranks.rank == 1:
            time.sleep(spec["wait_s"])
            if name == "raw":
                raw.Recv([big, MPI.FLOAT], peer, tag)
            else:
                ours.recv(big, peer, tag)
            info = {"received": time.monotonic()}
        else:
            wall, cpu = time.monotonic(), time.process_time()
            if name == "raw":
                raw.Send([big, MPI.FLOAT], peer, tag)
            else:
                ours.send(big, peer, tag)
            info = {"wall_s": time.monotonic() - wall, "cpu_s": time.process_time() - cpu}
        both = ranks.gather(info)
        if ranks.rank == 0:
            sender = both[0]
            sends[name] = {**sender, "bytes": big.nbytes, "cpu_fraction": sender["cpu_s"] / sender["wall_s"]}
    out["send_wait"] = sends
    return out if ranks.rank == 0 else None
