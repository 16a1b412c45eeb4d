"""One process alone: the same batches, gradients and optimizer, no MPI traffic."""
from __future__ import annotations

import numpy as np

from ..algorithms.downpour import mean_gradient
from ..data.batches import iterate_epoch
from ..data.sharding import shard
from .job import Job
from .validation import evaluate

SOLO_RANK = 0


def run_solo(job: Job) -> None:
    config, backend, history = job.config, job.backend, job.history
    pieces = shard(job.train.counts, 1, 0, config.data.shard)
    grads = np.zeros(backend.layout.num_trainable, dtype=np.float32)
    sync_every = config.algorithm.sync_every
    for epoch in range(config.epochs):
        pending, loss_sum, samples = 0, 0.0, 0
        for batch in iterate_epoch(job.train, pieces, config.data.batch_size, config.seed, 0, epoch, config.data.prefetch):
            loss_sum += backend.accumulate_gradients(batch.x, batch.y, grads)
            samples += len(batch.x)
            pending += 1
            if pending < sync_every and not batch.last:
                continue
            mean_gradient(grads, pending)
            backend.apply_gradients(grads)
            history.record_update(SOLO_RANK, loss_sum, pending, samples)
            grads[:] = 0.0
            pending, loss_sum, samples = 0, 0.0, 0
        history.close_worker_epoch(SOLO_RANK)
        row = history.record_epoch(epoch + 1, evaluate(job.model, job.validation, config.data.batch_size))
        if job.on_epoch_end(row):
            history.stopped_early = epoch + 1 < config.epochs
            return
