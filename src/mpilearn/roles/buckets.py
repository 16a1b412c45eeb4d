"""Gradient buckets reduced while backward runs: the allreduce loop's overlap.

The trainable part of the flat gradient is cut into buckets of about
`--bucket-mb` MiB, last variables first (FlatLayout.buckets), since backward
produces the last layers' gradients first. The backend reports each
variable whose gradient is in the flat buffer (`ready`, from torch's
post-accumulate-grad hooks inside backward); once every variable of a bucket
has come, the bucket is scaled and its nonblocking allreduce starts, and every
report polls the reductions under way, which is what moves their bytes (MPI
has no progress thread). After backward only the reductions still under way,
and the small tail (layer state and the stop flags), are waited for.

Buckets start strictly in their order, on every rank alike, whatever order the
hooks fire in: nonblocking collectives must start in the same order
everywhere. Each bucket's reduction is a span of its own timeline row.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..flat import DTYPE, FlatLayout, bucket_bytes
from ..timeline import Timeline

# The timeline row (tid) of the bucket reductions: they overlap the compute spans of row 0.
BUCKET_ROW = 2


class BucketReducer:
    """The reductions of one step's buckets of `exchange` (trainable gradients, then the tail)."""

    def __init__(
        self,
        comm: Any,
        layout: FlatLayout,
        exchange: np.ndarray,
        bucket_mb: float | None,
        compression: str,
        timeline: Timeline,
    ) -> None:
        self.comm, self.compression, self.timeline = comm, compression, timeline
        self.buckets = layout.buckets(bucket_bytes(layout.num_trainable * DTYPE().itemsize, bucket_mb))
        self.views = [exchange[b.start : b.end] for b in self.buckets]
        self.tail = exchange[layout.num_trainable :]  # layer state and flags: known only after the pass
        self.bucket_of = np.zeros(len(layout.trainable_shapes), dtype=np.int64)
        for bucket in self.buckets:
            self.bucket_of[bucket.first : bucket.last] = bucket.index
        self.counts = [b.last - b.first for b in self.buckets]
        self.missing: list[int] = []
        self.scale = 1.0
        self.reductions: list[Any] = []
        self.times: list[list[float]] = []  # per started reduction: [start, end or 0.0]
        self.polled = 0  # reductions before this one are complete
        self.active = False

    def begin(self, scale: float) -> None:
        """A step's last pass is about to run: gradients are multiplied by `scale` as their bucket starts."""
        self.missing = list(self.counts)
        self.scale = scale
        self.reductions, self.times, self.polled = [], [], 0
        self.active = True

    def ready(self, index: int) -> None:
        """Variable `index`'s gradient is in the buffer (the backend's callback)."""
        bucket = int(self.bucket_of[index])
        self.missing[bucket] -= 1
        while len(self.reductions) < len(self.buckets) and self.missing[len(self.reductions)] == 0:
            self._start(self.views[len(self.reductions)], self.scale)
        self.poll()

    def _start(self, view: np.ndarray, scale: float) -> None:
        if scale != 1.0:
            view *= np.float32(scale)
        self.times.append([time.time(), 0.0])
        self.reductions.append(self.comm.start_allreduce_sum(view, self.compression))

    def poll(self) -> None:
        """Drive the reductions under way; note when each completes."""
        for k in range(self.polled, len(self.reductions)):
            if self.times[k][1] == 0.0 and self.reductions[k].test():
                self.times[k][1] = time.time()
        while self.polled < len(self.reductions) and self.times[self.polled][1]:
            self.polled += 1

    def finish(self, timeout: float | None) -> None:
        """After the pass: start what has not started (and the tail), wait for all of it, draw the spans."""
        if not self.active:
            raise RuntimeError("BucketReducer.finish without begin")
        self.active = False
        if len(self.reductions) < len(self.buckets):  # a backend that did not report every variable
            self.missing = [0] * len(self.buckets)
            for view in self.views[len(self.reductions) :]:
                self._start(view, self.scale)
        self._start(self.tail, 1.0)  # scaled by the caller; never empty (the stop flags)
        self.poll()
        self.comm.wait_reductions(self.reductions, timeout)
        end = time.time()
        if self.timeline.enabled:
            for k, (start, done) in enumerate(self.times):
                name = f"allreduce bucket {k}" if k < len(self.buckets) else "allreduce tail"
                self.timeline.record(name, start, done or end, BUCKET_ROW)
