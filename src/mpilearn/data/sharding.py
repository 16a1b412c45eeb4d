"""Which samples each worker reads: pure arithmetic, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import DataError


@dataclass(frozen=True)
class Piece:
    """Samples [start, stop) of part `part` (a file, or an in-memory array)."""

    part: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def shard_files(counts: Sequence[int], workers: int, index: int) -> list[Piece]:
    """Whole files, dealt round robin: every file goes to exactly one worker
    and the worker shares differ by at most one file."""
    if not 0 <= index < workers:
        raise ValueError(f"worker index {index} outside 0..{workers - 1}")
    if len(counts) < workers:
        raise DataError(
            f"{len(counts)} training files for {workers} workers: every worker needs at least one file "
            "(use --shard samples to split files between workers, or use fewer workers)"
        )
    return [Piece(i, 0, counts[i]) for i in range(index, len(counts), workers)]


def shard_samples(counts: Sequence[int], workers: int, index: int) -> list[Piece]:
    """Worker `index`'s contiguous slice of all samples (the files one after
    the other), so any number of workers can share few files: shares differ
    by at most one sample, and each worker reads only the files its slice
    crosses."""
    if not 0 <= index < workers:
        raise ValueError(f"worker index {index} outside 0..{workers - 1}")
    total = sum(counts)
    if total < workers:
        raise DataError(f"{total} training samples cannot be shared by {workers} workers")
    begin, end = total * index // workers, total * (index + 1) // workers
    pieces = []
    offset = 0
    for part, count in enumerate(counts):
        start, stop = max(begin - offset, 0), min(end - offset, count)
        if start < stop:
            pieces.append(Piece(part, start, stop))
        offset += count
    return pieces


def shard(counts: Sequence[int], workers: int, index: int, mode: str) -> list[Piece]:
    return shard_samples(counts, workers, index) if mode == "samples" else shard_files(counts, workers, index)
