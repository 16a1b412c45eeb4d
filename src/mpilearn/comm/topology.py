"""Which rank plays which role, decided in one place.

Layouts:
- 1 process: it trains alone (solo).
- allreduce: every rank is a peer; rank 0 also validates and writes outputs.
- one master: rank 0 master, every other rank a worker.
- M masters (two-level tree, as in the mpi_learn paper): rank 0 is the top
  master, ranks 1..M-1 sub-masters, and the remaining ranks are workers dealt
  to the sub-masters in contiguous blocks whose sizes differ by at most one.
- S sharded servers: ranks 0..S-1 each hold one contiguous slice of the flat
  weight vector (rank 0 also validates and writes outputs); every other rank
  is a worker that exchanges with all S servers at once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ConfigError


class Role(str, enum.Enum):
    SOLO = "solo"  # a single process trains alone
    MASTER = "master"  # holds the central model, applies updates, validates
    SUBMASTER = "sub-master"  # a master for its block of workers, a client of the top master
    SERVER = "server"  # holds one slice of the central weights (sharded servers; rank 0 is the master)
    WORKER = "worker"  # trains on its shard, exchanges with its master
    PEER = "peer"  # allreduce: trains and averages gradients with all other peers


@dataclass(frozen=True)
class Topology:
    """Rank layout of a job."""

    size: int
    masters: int = 1
    # True for allreduce: no master, every rank computes.
    peers_only: bool = False
    # Sharded parameter servers: ranks 0..servers-1 each hold a slice of the weights.
    servers: int = 1

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"number of processes must be at least 1, got {self.size}")
        if self.servers < 1:
            raise ConfigError(f"--servers must be a positive integer, got {self.servers}")
        if self.servers > 1 and (self.peers_only or self.masters > 1):
            raise ConfigError(
                f"--servers {self.servers} shards one master's weights; it does not combine with "
                + ("--algo allreduce (no master)" if self.peers_only else f"--masters {self.masters} (a tree)")
            )
        if self.size == 1 or self.peers_only:
            return
        if self.servers > 1 and self.size <= self.servers:
            raise ConfigError(
                f"--servers {self.servers} needs more than {self.servers} processes (at least one worker), "
                f"the job has {self.size}"
            )
        if self.masters >= self.size:
            raise ConfigError(
                f"--masters {self.masters} needs more than {self.masters} processes, the job has {self.size}"
            )
        if self.masters > 1 and self.size - self.masters < self.masters - 1:
            raise ConfigError(
                f"--masters {self.masters} with {self.size} processes leaves a sub-master without workers: "
                f"{self.masters - 1} sub-masters need at least {self.masters - 1} workers, "
                f"there are {self.size - self.masters}"
            )

    # ---- who is who ----------------------------------------------------------
    @property
    def solo(self) -> bool:
        return self.size == 1

    @property
    def workers(self) -> tuple[int, ...]:
        """Ranks that compute gradients on data (peers count as workers)."""
        if self.solo:
            return (0,)
        if self.peers_only:
            return tuple(range(self.size))
        return tuple(range(max(self.masters, self.servers), self.size))

    @property
    def num_workers(self) -> int:
        return len(self.workers)

    @property
    def submasters(self) -> tuple[int, ...]:
        return tuple(range(1, self.masters)) if self.masters > 1 and not self.solo and not self.peers_only else ()

    def role(self, rank: int) -> Role:
        if self.solo:
            return Role.SOLO
        if self.peers_only:
            return Role.PEER
        if rank == 0:
            return Role.MASTER
        if rank < self.servers:
            return Role.SERVER
        return Role.SUBMASTER if rank in self.submasters else Role.WORKER

    @property
    def server_ranks(self) -> tuple[int, ...]:
        """Ranks holding a slice of the central weights (rank 0 alone without sharding)."""
        return tuple(range(self.servers)) if not self.solo and not self.peers_only else ()

    def worker_index(self, rank: int) -> int:
        """Position among the workers, used for data sharding and seeds."""
        return self.workers.index(rank)

    def block(self, submaster: int) -> tuple[int, ...]:
        """The contiguous block of workers served by one sub-master."""
        blocks = len(self.submasters)
        index = self.submasters.index(submaster)
        workers = self.workers
        start = len(workers) * index // blocks
        stop = len(workers) * (index + 1) // blocks
        return workers[start:stop]

    def parent(self, rank: int) -> int:
        """The master a worker or sub-master exchanges with."""
        if self.role(rank) is Role.WORKER and self.submasters:
            return next(s for s in self.submasters if rank in self.block(s))
        return 0

    def children(self, rank: int) -> tuple[int, ...]:
        """The ranks a master or sub-master serves."""
        if self.role(rank) is Role.SUBMASTER:
            return self.block(rank)
        if self.role(rank) in (Role.MASTER, Role.SERVER):
            return self.submasters or self.workers
        return ()

    def describe(self) -> str:
        if self.solo:
            return "1 process: local training, no master"
        if self.peers_only:
            return f"{self.size} processes: allreduce peers 0-{self.size - 1}, rank 0 validates"
        if self.servers > 1:
            return (
                f"{self.size} processes: ranks {_span(self.server_ranks)} sharded servers (rank 0 also validates), "
                f"ranks {_span(self.workers)} workers ({self.num_workers}), each exchanging with every server"
            )
        if not self.submasters:
            return f"{self.size} processes: rank 0 master, ranks {_span(self.workers)} workers ({self.num_workers})"
        blocks = "; ".join(f"sub-master {s} serves {_span(self.block(s))}" for s in self.submasters)
        return f"{self.size} processes: rank 0 top master; {blocks}"


def _span(ranks: tuple[int, ...]) -> str:
    return str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}-{ranks[-1]}"


def shard_bounds(size: int, servers: int, index: int) -> tuple[int, int]:
    """[start, stop) of server `index`'s contiguous slice of a flat vector of
    `size` floats; slice lengths differ by at most one."""
    return size * index // servers, size * (index + 1) // servers
