"""The flat-vector view of a model's variables.

Everything that crosses MPI is one contiguous float32 vector: first a small
header, then the trainable variables in `model.trainable_variables` order,
then the floating-point non-trainable weights (BatchNormalization moving
statistics and similar layer state). One buffer per message means one MPI
call and no pickling on the hot path.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

DTYPE = np.float32

# --bucket-mb's default (none): the gradients in about AUTO_BUCKETS buckets, none over BUCKET_CAP_MB MiB
# (PyTorch DDP's cap): few enough that each bucket's latency stays small at many peers (see the
# allreduce rows of benchmarks/results/simulate.json), enough that a small model overlaps too.
AUTO_BUCKETS = 4
BUCKET_CAP_MB = 25.0


def bucket_bytes(total_bytes: float, bucket_mb: float | None) -> float:
    """The bucket size of --bucket-mb (MiB; None: auto) for gradients of `total_bytes`."""
    if bucket_mb is None:
        return min(BUCKET_CAP_MB * 2**20, total_bytes / AUTO_BUCKETS)
    return bucket_mb * 2**20


class Header(enum.IntEnum):
    """Slots of the float32 header in front of every training message."""

    EPOCH = 0  # worker: epoch of the batches in this update (the master's replies leave it 0)
    SAMPLES = 1  # worker: samples behind this update
    LOSS_SUM = 2  # worker: sum of per-batch mean losses behind this update
    BATCHES = 3  # worker: batches behind this update
    BASE_STEP = 4  # worker: master step of the weights the gradients were computed on
    SKIPPED = 5  # worker: batches skipped for a NaN or infinite loss
    INTERRUPT = 6  # client: number of a SIGTERM/SIGINT it (or its own clients) received, else 0


HEADER_SIZE = len(Header)


@dataclass(frozen=True)
class FlatLayout:
    """Shapes of the variables packed into one vector, trainable ones first."""

    trainable_shapes: tuple[tuple[int, ...], ...]
    state_shapes: tuple[tuple[int, ...], ...]

    @property
    def trainable_sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.trainable_shapes)

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.state_shapes)

    @property
    def num_trainable(self) -> int:
        return sum(self.trainable_sizes)

    @property
    def num_state(self) -> int:
        return sum(self.state_sizes)

    @property
    def size(self) -> int:
        return self.num_trainable + self.num_state

    @property
    def message_size(self) -> int:
        return HEADER_SIZE + self.size

    def new_message(self) -> np.ndarray:
        return np.zeros(self.message_size, dtype=DTYPE)

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        """Views of `flat` (no header), one per variable, in their shapes."""
        if flat.shape != (self.size,):
            raise ValueError(f"flat vector has shape {flat.shape}, layout needs ({self.size},)")
        views = []
        offset = 0
        for shape, size in zip(self.trainable_shapes + self.state_shapes, self.trainable_sizes + self.state_sizes):
            views.append(flat[offset : offset + size].reshape(shape))
            offset += size
        return views

    def buckets(self, bucket_bytes: float) -> tuple["Bucket", ...]:
        """The trainable variables in buckets of about `bucket_bytes` (float32), for reducing
        gradients while backward runs: in reverse order (backward produces the last layers'
        gradients first), a bucket closing once it holds `bucket_bytes` or more, so one
        variable is never split. Each bucket is one contiguous range of the flat vector.
        0 (or less): one bucket of everything."""
        sizes = self.trainable_sizes
        out: list[Bucket] = []
        end = self.num_trainable
        last = len(sizes)  # one past the bucket's last variable
        held = 0
        for index in range(len(sizes) - 1, -1, -1):
            held += sizes[index] * DTYPE().itemsize
            if (bucket_bytes > 0 and held >= bucket_bytes) or index == 0:
                start = end - held // DTYPE().itemsize
                out.append(Bucket(len(out), index, last, start, end))
                end, last, held = start, index, 0
        return tuple(out)

    def pack(self, arrays: list[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
        """Concatenate per-variable arrays into one flat vector (inverse of split)."""
        if len(arrays) != len(self.trainable_shapes) + len(self.state_shapes):
            raise ValueError(
                f"got {len(arrays)} arrays, layout has {len(self.trainable_shapes) + len(self.state_shapes)}"
            )
        out = np.empty(self.size, dtype=DTYPE) if out is None else out
        for view, array in zip(self.split(out), arrays):
            view[...] = array
        return out


@dataclass(frozen=True)
class Bucket:
    """Variables first..last-1 of the trainable ones, at flat[start:end]; number `index` in reduction order."""

    index: int
    first: int
    last: int
    start: int
    end: int


class Message:
    """A header plus payload over one buffer; the payload is split in place."""

    def __init__(self, layout: FlatLayout) -> None:
        self.layout = layout
        self.buffer = layout.new_message()
        self.header = self.buffer[:HEADER_SIZE]
        self.payload = self.buffer[HEADER_SIZE:]
        self.trainable = self.payload[: layout.num_trainable]
        self.state = self.payload[layout.num_trainable :]

    def get(self, slot: Header) -> float:
        return float(self.header[slot])

    def set(self, slot: Header, value: float) -> None:
        self.header[slot] = value
