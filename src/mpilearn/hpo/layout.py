"""Which rank is the coordinator, which block and fold each other rank
trains in: pure arithmetic, computed identically on every rank.

    rank 0                 coordinator (Optuna ask/tell, the study's storage)
    ranks 1..B             block 0      (fold k: ranks 1 + k*B/K .. , K = --n-fold)
    ranks B+1..2B          block 1
    ...

Each fold of a block (the whole block when K = 1) is one training job with
the usual layout of --algo: rank 0 of the fold is its master (or validating
peer). A fold of one rank trains alone, which is allowed for every algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..comm.topology import Topology
from ..config import AlgorithmConfig
from ..errors import ConfigError

COORDINATOR = 0


@dataclass(frozen=True)
class Layout:
    size: int
    block_size: int
    n_fold: int = 1

    def __post_init__(self) -> None:
        if self.size < 2:
            raise ConfigError(
                f"mpilearn optimize needs at least 2 processes (rank 0 coordinates, the others train), got {self.size}: "
                f"use -n {1 + self.block_size} or more"
            )
        trainers = self.size - 1
        if self.block_size > trainers:
            raise ConfigError(
                f"--block-size {self.block_size} is larger than the {trainers} training ranks "
                f"({self.size} processes minus the coordinator): use -n {1 + self.block_size} or a smaller block"
            )
        if trainers % self.block_size:
            low = 1 + (trainers // self.block_size) * self.block_size
            raise ConfigError(
                f"--block-size {self.block_size} does not divide the {trainers} training ranks "
                f"({self.size} processes minus the coordinator): use -n {low} or -n {low + self.block_size}"
            )
        if self.block_size % self.n_fold:
            raise ConfigError(
                f"--n-fold {self.n_fold} splits each block into {self.n_fold} equal sub-blocks, "
                f"but --block-size {self.block_size} is not a multiple of {self.n_fold}"
            )

    @property
    def blocks(self) -> int:
        return (self.size - 1) // self.block_size

    @property
    def fold_size(self) -> int:
        return self.block_size // self.n_fold

    def block_of(self, rank: int) -> int | None:
        """The block of a rank; None for the coordinator."""
        return None if rank == COORDINATOR else (rank - 1) // self.block_size

    def fold_of(self, rank: int) -> int | None:
        """The fold a rank trains inside its block; None for the coordinator."""
        return None if rank == COORDINATOR else ((rank - 1) % self.block_size) // self.fold_size

    def leader(self, block: int) -> int:
        """The world rank that talks to the coordinator for a block (its rank 0)."""
        return 1 + block * self.block_size

    def fold_leader(self, fold: int) -> int:
        """Rank, within the block's communicator, of a fold's rank 0."""
        return fold * self.fold_size

    def check_algorithm(self, algorithm: AlgorithmConfig) -> Topology:
        """The layout of one fold's training; a fold too small for --algo is refused here."""
        try:
            return Topology(self.fold_size, algorithm.masters, peers_only=not algorithm.has_master)
        except ConfigError as error:
            where = (
                f"each fold of a block has {self.fold_size}" if self.n_fold > 1 else f"each block has {self.block_size}"
            )
            raise ConfigError(f"{where} processes: {error}") from None

    def describe(self, topology: Topology) -> str:
        spans = [
            f"{self.leader(b)}-{self.leader(b) + self.block_size - 1}" if self.block_size > 1 else str(self.leader(b))
            for b in range(self.blocks)
        ]
        shown = ", ".join(spans if len(spans) <= 4 else [*spans[:2], "...", spans[-1]])
        folds = f", each split into {self.n_fold} folds of {self.fold_size}" if self.n_fold > 1 else ""
        plural = "s" if self.blocks > 1 else ""
        return (
            f"{self.size} processes: rank 0 coordinates; {self.blocks} block{plural} of {self.block_size} "
            f"(ranks {shown}){folds}; each training: {topology.describe()}"
        )
