"""The master loop: apply workers' updates as they come, validate per epoch."""
from __future__ import annotations

from collections import Counter

from ..comm import Tag
from ..flat import Header, Message
from ..log import get_logger
from .job import Job
from .validation import evaluate


def run_master(job: Job) -> None:
    config, backend, comm, history = job.config, job.backend, job.comm, job.history
    log = get_logger()
    workers = job.topology.workers
    inbox = [Message(backend.layout) for _ in workers]
    outbox = [Message(backend.layout) for _ in workers]
    receives = [comm.irecv(inbox[i].buffer, source=w) for i, w in enumerate(workers)]
    sends = [comm.NULL_REQUEST for _ in workers]
    active = len(workers)
    epoch_ends: Counter[int] = Counter()
    stopping = False
    step = 0

    while active:
        i, status = comm.wait_any(receives)
        worker, update = workers[i], inbox[i]
        backend.apply_gradients(update.trainable)
        backend.add_state(update.state)
        step += 1
        history.record_update(
            worker, update.get(Header.LOSS_SUM), int(update.get(Header.BATCHES)), int(update.get(Header.SAMPLES))
        )
        epoch_done = None
        last_epoch_of_worker = False
        if status.Get_tag() == Tag.UPDATE_EPOCH_END:
            epoch = int(update.get(Header.EPOCH))
            history.close_worker_epoch(worker)
            epoch_ends[epoch] += 1
            epoch_done = epoch if epoch_ends[epoch] == len(workers) else None
            last_epoch_of_worker = epoch + 1 >= config.epochs

        # Answer before validating, so this worker computes while we validate.
        stop_worker = stopping or last_epoch_of_worker
        comm.wait(sends[i])
        backend.get_weights(outbox[i].payload)
        outbox[i].set(Header.EPOCH, step)
        sends[i] = comm.isend(outbox[i].buffer, worker, Tag.STOP if stop_worker else Tag.WEIGHTS)
        if stop_worker:
            receives[i] = comm.NULL_REQUEST
            active -= 1
        else:
            receives[i] = comm.irecv(update.buffer, source=worker)

        if epoch_done is not None and not stopping:
            row = history.record_epoch(epoch_done + 1, evaluate(job.model, job.validation, config.data.batch_size))
            if job.on_epoch_end(row):
                stopping = True
                history.stopped_early = epoch_done + 1 < config.epochs
                log.info("stopping: requested after epoch %d", epoch_done + 1)
    for request in sends:
        comm.wait(request)
