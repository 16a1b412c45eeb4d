"""Batching: every sample exactly once per epoch, in an order fixed by the
seed, read ahead by the same thread whatever the epoch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import IdSource
from mpilearn.data.batches import BatchStream, worker_epoch
from mpilearn.data.sharding import shard
from mpilearn.data.sources import ArraySource


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    workers=st.integers(1, 4),
    batch=st.integers(1, 17),
    seed=st.integers(0, 2**16),
)
def test_each_sample_once_per_epoch_in_seeded_order(counts, workers, batch, seed) -> None:
    source = IdSource(counts)
    mode = "files" if len(counts) >= workers else "samples"
    if mode == "samples" and sum(counts) < workers:
        return
    seen = []
    for w in range(workers):
        pieces = shard(source.counts, workers, w, mode)
        batches = list(worker_epoch(source, pieces, batch, seed, w, 0))
        again = list(worker_epoch(source, pieces, batch, seed, w, 0))
        assert [b.y.tolist() for b in batches] == [b.y.tolist() for b in again]  # same seed, same order
        assert all(len(b.y) == batch for b in batches[:-1]) and 0 < len(batches[-1].y) <= batch
        assert [b.last for b in batches] == [False] * (len(batches) - 1) + [True]
        seen.extend(int(v) for b in batches for v in b.y)
    assert sorted(seen) == list(range(sum(counts)))


def test_epochs_are_reshuffled_and_read_ahead_keeps_order() -> None:
    x = np.arange(100, dtype=np.float32).reshape(-1, 1)
    source = ArraySource(x, x[:, 0].copy())
    pieces = shard(source.counts, 1, 0, "samples")

    def make(epoch: int):
        return worker_epoch(source, pieces, 8, 3, 0, epoch)

    inline = [[b.y.tolist() for b in BatchStream(make, 2, prefetch=0).epoch(e)] for e in (0, 1)]
    stream = BatchStream(make, 2, prefetch=3)
    try:
        threaded = [[b.y.tolist() for b in stream.epoch(e)] for e in (0, 1)]
    finally:
        stream.close()
    assert inline == threaded == [[b.y.tolist() for b in make(e)] for e in (0, 1)]
    assert inline[0] != inline[1]


def test_read_ahead_errors_reach_the_consumer() -> None:
    class Broken(IdSource):
        def read(self, part, start, stop):
            raise OSError("disk on fire")

    source = Broken([10])
    stream = BatchStream(lambda epoch: worker_epoch(source, shard(source.counts, 1, 0, "files"), 4, 0, 0, epoch), 1, 2)
    try:
        with pytest.raises(OSError, match="disk on fire"):
            list(stream.epoch(0))
    finally:
        stream.close()
