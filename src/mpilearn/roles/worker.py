"""The worker loop: local work on the shard, exchanges with the master."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import faults, models
from ..algorithms import Scaled
from ..algorithms.clients import LossGuard
from ..algorithms.learning_rate import LearningRateControl
from ..errors import NonFiniteLossError
from .job import Job
from .uplink import ShardedUplink, Uplink


def run_worker(job: Job) -> None:
    config, backend, comm, topology = job.config, job.backend, job.comm, job.topology
    algorithm = config.algorithm
    index = topology.worker_index(comm.rank)
    spec = algorithm.spec
    assert spec.client is not None, f"{spec.name} has no workers"
    worker_optimizer = (
        spec.worker_optimizer(config, backend.model.optimizer) if spec.worker_optimizer is not None else None
    )
    rule = spec.client(algorithm, backend, worker_optimizer, job.own_train_step)
    rule.guard = LossGuard(config.skip_bad_batches, backend.layout.num_trainable)
    # The learning rate that lives on the worker (its own optimizer, or the proxy step's rule).
    local_lr: Any = {
        Scaled.WORKER: worker_optimizer,
        Scaled.PROXY: rule if worker_optimizer is None else worker_optimizer,
        Scaled.INNER: backend.model.optimizer,
    }.get(spec.scales)
    control = LearningRateControl(local_lr, topology.num_workers, algorithm.lr_scaling, algorithm.warmup_epochs)
    if topology.servers > 1:
        uplink: Uplink = ShardedUplink(comm, topology.server_ranks, rule, backend.layout, job.watchdog)
    else:
        uplink = Uplink(comm, topology.parent(comm.rank), rule, backend.layout, job.watchdog)
        uplink.validation = job.validation_share  # spread validation: snapshots come while the worker waits
    per_epoch = job.workload.batches_per_epoch(index)
    # --pipeline: each exchange stays in flight while the next batches train (drained at epoch ends).
    pipelined = algorithm.pipelined
    if pipelined and job.timeline.enabled:
        uplink.timeline = job.timeline

    trained = 0  # batches of this run, for MPILEARN_INJECT_FAULT
    for epoch in range(job.start_epoch, config.epochs):
        models.reseed(backend.model, config.seed, index, epoch)
        pending = 0  # batches since the last exchange
        for step, batch in enumerate(job.epoch_batches(epoch)):
            trained += 1
            faults.at(comm.world_rank, trained, batch)
            control.update(epoch + step / per_epoch)
            loss = job.compute(lambda b: rule.train(b, uplink.update), epoch, step, batch)
            pending += 1
            if loss is None:
                uplink.add_skipped(1)
            else:
                uplink.add_stats(loss, 1, batch.size)
            if pending < algorithm.exchange_every and not batch.last:
                continue
            if not np.isfinite(uplink.update.payload).all():
                raise NonFiniteLossError(
                    f"worker rank {comm.rank}: the update after epoch {epoch + 1}, batch {step + 1} "
                    f"(file {batch.origin}) holds NaN or infinite values"
                )
            with job.timeline.span("exchange"):
                if pipelined:
                    stop = uplink.send_ahead(epoch, batch.last, pending) or (batch.last and uplink.drain())
                else:
                    stop = uplink.exchange(epoch, batch.last, pending)
            if stop:
                return
            pending = 0
