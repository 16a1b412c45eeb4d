"""What every role needs, built the same way on every rank."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..backends import ModelBackend
from ..comm import Communicator
from ..comm.topology import Topology
from ..config import RunConfig
from ..data.batches import Batch, iterate_epoch, steps_per_epoch
from ..data.sharding import Piece, shard
from ..data.sources import Source
from ..history import History
from ..timeline import Timeline


@dataclass
class Job:
    config: RunConfig
    comm: Communicator
    topology: Topology
    backend: ModelBackend
    train: Source
    # Validation samples, loaded on the rank that validates (rank 0).
    validation: tuple[np.ndarray, np.ndarray] | None
    history: History
    # Called after each validation with the epoch row; returns True to stop training.
    on_epoch_end: Callable[[dict[str, Any]], bool]
    timeline: Timeline
    run_dir: Path | None = None

    @property
    def model(self) -> Any:
        return self.backend.model

    def pieces(self, worker_index: int) -> list[Piece]:
        return shard(self.train.counts, self.topology.num_workers, worker_index, self.config.data.shard)

    @cached_property
    def steps_per_epoch(self) -> int | None:
        """Equal steps for every worker when the algorithm runs in lockstep."""
        if not self.config.algorithm.lockstep:
            return None
        data = self.config.data
        return steps_per_epoch(self.train.counts, self.topology.num_workers, data.shard, data.batch_size)

    def batches_per_epoch(self, worker_index: int) -> int:
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        return math.ceil(sum(p.size for p in self.pieces(worker_index)) / self.config.data.batch_size)

    @cached_property
    def samples_per_epoch(self) -> int:
        """Samples all workers process in one epoch (cycled shards included)."""
        return sum(
            min(self.batches_per_epoch(w) * self.config.data.batch_size, sum(p.size for p in self.pieces(w)))
            if self.steps_per_epoch is None
            else self.steps_per_epoch * self.config.data.batch_size
            for w in range(self.topology.num_workers)
        )

    def epoch_batches(self, worker_index: int, epoch: int) -> Iterator[Batch]:
        data = self.config.data
        return iterate_epoch(
            self.train, self.pieces(worker_index), data.batch_size, self.config.seed, worker_index, epoch,
            data.prefetch, self.steps_per_epoch,
        )
