"""Sharding arithmetic: every sample read by exactly one worker per epoch."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpilearn.data.sharding import shard, shard_files, shard_samples
from mpilearn.errors import DataError

counts_strategy = st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20)


@given(counts=counts_strategy, workers=st.integers(min_value=1, max_value=20))
def test_file_sharding_covers_every_file_once(counts: list[int], workers: int) -> None:
    if len(counts) < workers:
        with pytest.raises(DataError, match="training files for"):
            shard_files(counts, workers, 0)
        return
    shards = [shard_files(counts, workers, w) for w in range(workers)]
    parts = sorted(p.part for s in shards for p in s)
    assert parts == list(range(len(counts)))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # remainder spread evenly
    assert all(p.start == 0 and p.stop == counts[p.part] for s in shards for p in s)


@given(counts=counts_strategy, workers=st.integers(min_value=1, max_value=20))
def test_sample_sharding_covers_every_sample_once(counts: list[int], workers: int) -> None:
    if sum(counts) < workers:
        with pytest.raises(DataError):
            shard_samples(counts, workers, 0)
        return
    seen = {part: [] for part in range(len(counts))}
    for w in range(workers):
        for piece in shard_samples(counts, workers, w):
            seen[piece.part].extend(range(piece.start, piece.stop))
    for part, n in enumerate(counts):
        assert sorted(seen[part]) == list(range(n))
    sizes = [sum(piece.size for piece in shard_samples(counts, workers, w)) for w in range(workers)]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1  # no worker left without data


def test_shard_dispatches_on_mode() -> None:
    assert [p.part for p in shard([5, 5, 5], 2, 1, "files")] == [1]
    assert [(p.start, p.stop) for p in shard([10], 2, 1, "samples")] == [(5, 10)]


def test_too_few_files_names_the_fix() -> None:
    with pytest.raises(DataError, match="--shard samples"):
        shard_files([3, 3], 3, 0)
