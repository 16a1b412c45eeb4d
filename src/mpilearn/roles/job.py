"""What every role needs, built the same way on every rank."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .. import checkpoint
from ..backends import ModelBackend
from ..comm import Communicator
from ..comm.topology import Topology
from ..config import RunConfig
from ..data.batches import Batch
from ..data.pipeline import epoch_steps, shard_mode
from ..data.sharding import Piece, shard
from ..data.sources import Source
from ..history import History
from ..log import get_logger
from ..timeline import Timeline
from .watchdog import Watchdog


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
    watchdog: Watchdog
    run_dir: Path | None = None
    # First epoch to train (a resumed run starts after its checkpoint).
    start_epoch: int = 0
    # The model defines its own train_step (a GAN): workers send weight deltas.
    own_train_step: bool = False
    _last_checkpoint: float = field(default_factory=time.monotonic)
    # Rank 0, after each update (peers: each step; see supervisor.py): progress, --validate-every,
    # background validation results. Returns True to stop; masters stop at once, peers at the epoch end.
    on_update: Callable[..., bool] = field(default=lambda *counts: False)
    # --background-validation on a master: takes epoch ends off the loop (supervisor.BackgroundValidation).
    background: Any = None
    # This rank's shard as a stream of batches (data.pipeline.WorkerData) on ranks that train.
    reader: Any = None

    def checkpoint(self, completed_epochs: int, optimizer: Any, force: bool = False) -> None:
        """On rank 0 after validating: write a checkpoint when one is due
        (`force`: stopping for a signal, with checkpoints on)."""
        settings = self.config.checkpoint
        if not settings.enabled or self.run_dir is None:
            return
        due = force or (settings.every_epochs and completed_epochs % settings.every_epochs == 0) or (
            settings.every_seconds and time.monotonic() - self._last_checkpoint >= settings.every_seconds
        )
        if not due:
            return
        with self.timeline.span("checkpoint"):
            weights = np.empty(self.backend.layout.size, dtype=np.float32)
            self.backend.get_weights(weights)
            state = {
                "config": self.config.to_dict(),
                "fingerprint": checkpoint.fingerprint(self.backend.layout),
                "history": self.history.snapshot(),
            }
            self.backend.sync_optimizer()
            values = checkpoint.optimizer_values(optimizer) if optimizer is not None else []
            path = checkpoint.save(self.run_dir, completed_epochs, weights, values, state, settings.keep)
        self._last_checkpoint = time.monotonic()
        get_logger().info("checkpoint %s", path)

    @property
    def model(self) -> Any:
        return self.backend.model

    def pieces(self, worker_index: int) -> list[Piece]:
        return shard(self.train.counts, self.topology.num_workers, worker_index, shard_mode(self.config.data, self.train))

    @cached_property
    def steps_per_epoch(self) -> int | None:
        """Equal steps for every worker when the algorithm runs in lockstep."""
        if not self.config.algorithm.lockstep:
            return None
        return epoch_steps(self.config.data, self.train, self.topology.num_workers)

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
        assert self.reader is not None, "a worker reads through its WorkerData"
        return self.reader.epoch(epoch)
