"""The worker loop: compute gradients on the shard, exchange with the master."""
from __future__ import annotations

import numpy as np

from ..algorithms.downpour import mean_gradient, state_delta
from ..comm import Tag
from ..data.batches import iterate_epoch
from ..data.sharding import shard
from ..flat import Header, Message
from .job import Job


def run_worker(job: Job) -> None:
    config, backend, comm = job.config, job.backend, job.comm
    topology = job.topology
    index = topology.worker_index(comm.rank)
    pieces = shard(job.train.counts, topology.num_workers, index, config.data.shard)
    update = Message(backend.layout)
    reply = Message(backend.layout)
    current = np.empty(backend.layout.size, dtype=np.float32)
    backend.get_weights(current)
    base_state = current[backend.layout.num_trainable :].copy()
    base_step = 0.0
    sync_every = config.algorithm.sync_every

    for epoch in range(config.epochs):
        pending = 0  # batches accumulated since the last exchange
        for batch in iterate_epoch(
            job.train, pieces, config.data.batch_size, config.seed, index, epoch, config.data.prefetch
        ):
            loss = backend.accumulate_gradients(batch.x, batch.y, update.trainable)
            pending += 1
            update.header[Header.LOSS_SUM] += loss
            update.header[Header.SAMPLES] += len(batch.x)
            if pending < sync_every and not batch.last:
                continue
            # Exchange: mean gradient and state delta out, central weights back.
            update.set(Header.BATCHES, pending)
            mean_gradient(update.trainable, pending)
            backend.get_weights(current)
            state_delta(current[backend.layout.num_trainable :], base_state, update.state)
            update.set(Header.EPOCH, epoch)
            update.set(Header.BASE_STEP, base_step)
            receive = comm.irecv(reply.buffer, source=topology.master)
            comm.send(update.buffer, topology.master, Tag.UPDATE_EPOCH_END if batch.last else Tag.UPDATE)
            status = comm.wait(receive)
            backend.set_weights(reply.payload)
            base_state[:] = reply.state
            base_step = reply.get(Header.EPOCH)
            update.buffer[:] = 0.0
            pending = 0
            if status.Get_tag() == Tag.STOP:
                return
