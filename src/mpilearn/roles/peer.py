"""The allreduce loop, also used by a process that trains alone.

Every peer computes the gradients of its batches, the mean over all peers
comes from allreduces of one flat buffer, and every peer applies the same
optimizer step, so all hold the same weights without a master. The buffer
goes out in buckets, last layers first, each reduced while backward is still
computing the earlier layers' gradients (buckets.py, --bucket-mb; 0: one
allreduce after the pass). Layer state
(moving statistics) is averaged in the same buffer. Rank 0 validates; its
decision to stop is broadcast so all peers stop together.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from signal import SIGINT, SIGTERM
from typing import TYPE_CHECKING, Callable

import numpy as np

from .. import faults, models
from ..algorithms.clients import LossGuard
from ..algorithms.learning_rate import LearningRateControl
from ..comm import WaitTimeout
from ..interrupt import STOP
from .buckets import BucketReducer
from .job import Job
from .watchdog import BUSY_S

if TYPE_CHECKING:
    from ..backends import ModelBackend
    from ..data.batches import Batch


@dataclass
class _EpochStats:
    """One peer's counts over an epoch, gathered on rank 0 at its end."""

    loss_sum: float = 0.0
    batches: int = 0
    samples: int = 0
    updates: int = 0
    skipped: int = 0


def run_peers(job: Job) -> None:
    config, backend, comm, topology = job.config, job.backend, job.comm, job.topology
    algorithm = config.algorithm
    layout = backend.layout
    n = layout.num_trainable
    # Three more slots ride along in every allreduce: peers that received SIGTERM, SIGINT, and
    # peers that want to stop now rather than at the epoch end (see interrupt.py).
    exchange = np.zeros(layout.size + 3, dtype=np.float32)
    buffer, flags = exchange[: layout.size], exchange[layout.size :]
    current = np.empty(layout.size, dtype=np.float32)
    index = topology.worker_index(comm.rank)
    control = LearningRateControl(
        backend.model.optimizer, topology.num_workers, algorithm.lr_scaling, algorithm.warmup_epochs
    )
    per_epoch = job.workload.batches_per_epoch(index)

    guard = LossGuard(config.skip_bad_batches, n)
    # Buckets reduced while backward runs (--bucket-mb); not when a batch's gradients may be skipped after
    # the pass (--skip-bad-batches): those must not leave before they are checked.
    buckets = (
        BucketReducer(comm, layout, exchange, algorithm.bucket_mb, algorithm.compression, job.timeline)
        if comm.size > 1 and algorithm.bucket_mb != 0 and guard.scratch is None
        else None
    )
    trained = 0  # batches of this run, for MPILEARN_INJECT_FAULT
    # Spread validation: the other peers join rank 0's --validate-every validations at the same steps.
    share = job.validation_share
    every = config.validate_every if share is not None else 0
    steps = 0
    for epoch in range(job.start_epoch, config.epochs):
        models.reseed(backend.model, config.seed, index, epoch)
        pending = 0
        stats = _EpochStats()
        for step, batch in enumerate(job.epoch_batches(epoch)):
            trained += 1
            faults.at(comm.world_rank, trained, batch)
            control.update(epoch + step / per_epoch)
            ready = progress = None
            if buckets is not None and (pending + 1 >= algorithm.sync_every or batch.last):  # the step's last pass
                buckets.begin(1.0 / ((pending + 1) * comm.size))
                ready, progress = buckets.ready, buckets.poll
            loss = job.compute(
                functools.partial(_train, guard, backend, buffer[:n], ready, progress), epoch, step, batch
            )
            backward = getattr(backend, "last_backward", None) if ready is not None else None
            if backward is not None:  # inside this pass's compute span: the buckets' row shows what it hid
                job.timeline.record("backward", backward[0], backward[1], 0)
            pending += 1
            if loss is None:
                stats.skipped += 1
            else:
                stats.loss_sum += loss
                stats.batches += 1
                stats.samples += batch.size
            if pending < algorithm.sync_every and not batch.last:
                continue
            # Scaled before the sum, in one pass: the mean over batches and peers of the
            # gradients, and the peers' mean layer state (an fp16 sum also stays in range).
            if pending * comm.size > 1 and not (buckets is not None and buckets.active):  # buckets scale their own
                buffer[:n] *= np.float32(1.0 / (pending * comm.size))
            if layout.num_state:
                backend.get_weights(current)
                np.multiply(current[n:], np.float32(1.0 / comm.size), out=buffer[n:])
            flags[:] = (
                STOP.signum == SIGTERM,
                STOP.signum == SIGINT,
                STOP.requested and not STOP.wait_for_epoch_end(config),
            )
            if comm.size > 1:
                with job.timeline.span("allreduce"):  # with buckets: the part backward did not hide
                    _allreduce(job, exchange, buckets)
            with job.timeline.span("apply"):
                backend.apply_gradients(buffer[:n])
            if layout.num_state:
                buffer[n:] -= current[n:]
                backend.add_state(buffer[n:])
            if flags[0] or flags[1]:
                STOP.note(SIGTERM if flags[0] else SIGINT)
            stop_now = bool(flags[2])  # every peer saw the same sums: all stop after this step
            exchange[:] = 0.0
            pending = 0
            stats.updates += 1
            if job.supervisor is not None:  # progress and --validate-every; peers stop together at epoch ends only
                job.supervisor.on_update(
                    stats.samples * comm.size, stats.loss_sum / max(1, stats.batches), stats.updates
                )
            steps += 1
            if every and steps % every == 0:  # the supervisor's rule: every N steps of this run
                share.join()
            if stop_now:
                STOP.acted = True
                return
        if _end_epoch(job, epoch, stats):
            return


def _train(
    guard: LossGuard,
    backend: ModelBackend,
    out: np.ndarray,
    ready: Callable[[int], None] | None,
    progress: Callable[[], None] | None,
    batch: Batch,
) -> float | None:
    return guard.accumulate(backend, batch, out, ready, progress)


def _allreduce(job: Job, buffer: np.ndarray, buckets: BucketReducer | None) -> None:
    started = time.monotonic()
    try:
        if buckets is not None:
            buckets.finish(job.watchdog.limit())
        else:
            job.comm.allreduce_sum(buffer, job.config.algorithm.compression, job.watchdog.limit())
    except WaitTimeout:
        raise job.watchdog.error("a peer in the allreduce", time.monotonic() - started) from None
    job.watchdog.observe(time.monotonic() - started)


def _end_epoch(job: Job, epoch: int, stats: _EpochStats) -> bool:
    """Rank 0 records every peer's epoch and validates; all learn whether to stop."""
    comm, history = job.comm, job.history
    gathered = (
        comm.gather_object(stats, timeout=job.watchdog.limit(), what=f"the end of epoch {epoch + 1}")
        if comm.size > 1
        else [stats]
    )
    stop = False
    if job.supervisor is not None:
        assert gathered is not None
        comm.busy(BUSY_S)  # the others' wait below must not count validation and checkpoint (withdrawn below)
        for peer, peer_stats in zip(job.topology.workers, gathered):
            # Peers step together: one optimizer step counts once, not once per peer.
            steps = peer_stats.updates if peer == 0 else 0
            history.record_update(peer, peer_stats.loss_sum, peer_stats.batches, peer_stats.samples, steps)
            history.close_worker_epoch(peer)
            history.skipped_batches += peer_stats.skipped
        stop = job.supervisor.epoch_reached(epoch + 1, job.backend.model.optimizer)
        comm.busy(0.0)
    elif job.validation_share is not None:  # rank 0's validation of this epoch end is spread
        job.validation_share.join()
    return (
        bool(comm.bcast_object(stop, timeout=job.watchdog.limit(), what=f"the end of epoch {epoch + 1}"))
        if comm.size > 1
        else stop
    )
