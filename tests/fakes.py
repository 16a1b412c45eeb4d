"""Small stand-ins shared by the unit tests."""

from __future__ import annotations

import numpy as np

from mpilearn.data.sources import Source


class IdSource(Source):
    """A source of several in-memory parts whose samples carry their global id (x and y are the id);
    records every read as (part, start, stop)."""

    def __init__(self, counts: list[int]) -> None:
        self.counts = tuple(counts)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        self._ids = [np.arange(offsets[i], offsets[i + 1], dtype=np.float32) for i in range(len(counts))]
        self.reads: list[tuple[int, int, int]] = []

    def read(self, part: int, start: int, stop: int):
        self.reads.append((part, start, stop))
        ids = self._ids[part][start:stop]
        return ids.reshape(-1, 1), ids.copy()

    def name(self, part: int) -> str:
        return f"part{part}"
