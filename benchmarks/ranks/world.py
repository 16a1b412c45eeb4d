"""COMM_WORLD as the benchmark ranks use it, the machine's load, and the torch thread count."""

from __future__ import annotations

import os
import time
from typing import Any


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


class Ranks:
    """COMM_WORLD, with a barrier that sleeps instead of spinning, so that a
    rank left out of a single-process case does not steal a core."""

    def __init__(self) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    def barrier(self) -> None:
        request = self.comm.Ibarrier()
        while not request.Test():
            time.sleep(0.001)

    def bcast(self, obj: Any) -> Any:
        return self.comm.bcast(obj, root=0)

    def gather(self, obj: Any) -> Any:
        return self.comm.gather(obj, root=0)


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
