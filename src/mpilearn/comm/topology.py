"""Which rank plays which role, decided in one place."""
from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ConfigError


class Role(str, enum.Enum):
    SOLO = "solo"  # a single process trains alone
    MASTER = "master"  # holds the central model, applies updates, validates
    WORKER = "worker"  # trains on its shard, exchanges with its master


@dataclass(frozen=True)
class Topology:
    """Rank layout of a master/worker job."""

    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"number of processes must be at least 1, got {self.size}")

    @property
    def master(self) -> int:
        return 0

    @property
    def workers(self) -> tuple[int, ...]:
        return tuple(range(1, self.size)) if self.size > 1 else ()

    @property
    def num_workers(self) -> int:
        """Processes that compute gradients (the solo process counts as one)."""
        return max(1, self.size - 1)

    def role(self, rank: int) -> Role:
        if self.size == 1:
            return Role.SOLO
        return Role.MASTER if rank == self.master else Role.WORKER

    def worker_index(self, rank: int) -> int:
        """Position of a worker among the workers, used for data sharding."""
        return 0 if self.size == 1 else rank - 1

    def describe(self) -> str:
        if self.size == 1:
            return "1 process: local training, no master"
        return f"{self.size} processes: rank 0 master, ranks 1-{self.size - 1} workers ({self.num_workers})"
