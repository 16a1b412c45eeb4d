"""What every role needs, built the same way on every rank before training starts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .. import startup_times
from ..backends import ModelBackend
from ..comm import Communicator
from ..comm.topology import Topology
from ..config import RunConfig
from ..data.batches import Batch
from ..data.pipeline import epoch_steps, shard_mode
from ..data.sharding import Piece, shard
from ..data.sources import Source
from ..errors import NonFiniteLossError
from ..history import History
from ..timeline import Timeline
from .watchdog import Watchdog

if TYPE_CHECKING:
    from ..data.pipeline import WorkerData
    from ..supervisor import Supervisor


@dataclass(frozen=True)
class Workload:
    """How the training samples divide into steps: pure arithmetic over the shards, the same on every rank."""

    config: RunConfig
    train: Source
    topology: Topology

    def pieces(self, worker_index: int) -> list[Piece]:
        return shard(
            self.train.counts, self.topology.num_workers, worker_index, shard_mode(self.config.data, self.train)
        )

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

    @cached_property
    def updates_per_epoch(self) -> int:
        """Roughly the master updates in one epoch (Keras's `steps` param)."""
        algorithm = self.config.algorithm
        per_update = self.config.data.batch_size * algorithm.exchange_every
        if algorithm.lockstep:
            per_update *= self.topology.num_workers
        return max(1, math.ceil(self.samples_per_epoch / per_update))


@dataclass(frozen=True)
class Job:
    config: RunConfig
    comm: Communicator
    topology: Topology
    backend: ModelBackend
    workload: Workload
    history: History
    timeline: Timeline
    watchdog: Watchdog
    # This rank's shard as a stream of batches, on ranks that train (workers, peers).
    reader: WorkerData | None
    # Rank 0: progress, callbacks, validation, checkpoints and the decision to stop (supervisor.py).
    supervisor: Supervisor | None
    # First epoch to train (a resumed run starts after its checkpoint).
    start_epoch: int = 0
    # The model defines its own train_step (a GAN): workers send weight deltas.
    own_train_step: bool = False
    # This rank's share of a spread validation (roles/spread.py: WorkerShare, PeerShare), on ranks other than 0.
    validation_share: Any = None
    # Rank 0 of sharded servers on resume: the checkpoint's optimizer state, for every server's slice.
    restored_state: list[Any] | None = None

    @property
    def model(self) -> Any:
        return self.backend.model

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        assert self.reader is not None, "only ranks that train read batches"
        return self.reader.epoch(epoch)

    def compute(self, train: Callable[[Batch], float | None], epoch: int, step: int, batch: Batch) -> float | None:
        """One batch's local work (its loss, None when skipped). A NaN or infinite loss ends the run
        with where it happened and what to do."""
        with self.timeline.span("compute"):
            try:
                loss = train(batch)
                startup_times.finish("first batch")  # after the first batch, a flag test
                return loss
            except NonFiniteLossError as error:
                rank = self.comm.rank
                raise NonFiniteLossError(
                    f"{self.topology.role(rank).value} rank {rank}: {error} at epoch {epoch + 1}, batch {step + 1} "
                    f"(batch starts in file {batch.origin}); lower the learning rate, check the data, or pass "
                    "--skip-bad-batches"
                ) from None
