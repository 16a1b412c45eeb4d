"""Ending a job from a rank that never started MPI (see mpilearn.early_failure)."""

from __future__ import annotations

import os
import threading


def abort_before_start(status: int, join_limit_s: float) -> None:
    """Join MPI's start-up, which completes the other ranks' (they wait for every rank in MPI_Init), then
    MPI_Abort ends them all. If they never all arrive, this process leaves after `join_limit_s` anyway."""
    timer = threading.Timer(join_limit_s, os._exit, (status,))
    timer.daemon = True
    timer.start()
    from mpi4py import MPI

    MPI.COMM_WORLD.Abort(status)
