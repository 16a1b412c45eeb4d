"""MPI message tags. Our traffic runs on a duplicated communicator, so these
values never collide with tags of the user's own MPI code."""

from __future__ import annotations

import enum


class Tag(enum.IntEnum):
    # worker -> master
    UPDATE = 1  # gradients (and state deltas) of some batches
    UPDATE_EPOCH_END = 2  # same, and the last update of the worker's epoch
    LEAVE = 3  # sharded servers: another server told this worker to stop; no answer expected
    # master -> worker
    WEIGHTS = 10  # central weights; go on training
    STOP = 11  # central weights; training is over, stop now
    # validation channel (a duplicate communicator, see roles/spread.py)
    SNAPSHOT = 30  # master -> worker: central weights to validate
    STATE = 31  # worker -> master: the metric state of its validation share
    DONE = 32  # master -> worker: no snapshot follows
    # sharded server -> rank 0
    SLICE = 20  # a server's slice of the weights at an epoch end
    SLICE_STATE = 21  # its optimizer's state (checkpoints on), and on resume rank 0's answer with it
