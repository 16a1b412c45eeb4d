"""Batches of one worker's shard, in a seeded order, read ahead in a thread.

Shuffling never loads a whole file: a piece (a file, or a worker's slice of
one) is cut into chunks of contiguous samples, the chunk order is shuffled,
and samples are shuffled within a window of a few chunks. Each chunk is one
contiguous read, so large HDF5 files are read chunk by chunk; a piece that
fits in one window is shuffled as a whole.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .options import SHUFFLE_CHUNK, SHUFFLE_WINDOW
from .sharding import Piece, shard
from .sources import Arrays, Source, pack_arrays

CHUNK, WINDOW = SHUFFLE_CHUNK, SHUFFLE_WINDOW


@dataclass
class Batch:
    # What the model takes: an array, or a list or dict of arrays for several inputs/targets.
    x: Any
    y: Any
    # Which file the batch started in, for error messages.
    origin: str
    # True for the last batch of the epoch.
    last: bool = False
    # Per-sample loss weights, or None.
    sample_weight: np.ndarray | None = None

    @property
    def size(self) -> int:
        """Samples in the batch (len(x) counts inputs when x is a list)."""
        first = self.y if not isinstance(self.y, (list, tuple, dict)) else next(iter(_values(self.y)))
        return len(first)


def _values(data: Any) -> Iterable[Any]:
    return data.values() if isinstance(data, dict) else data


def epoch_rng(seed: int, worker: int, epoch: int) -> np.random.Generator:
    """One independent stream per (seed, worker, epoch): the same seed gives
    the same order on every run, whatever happened in earlier epochs."""
    return np.random.default_rng([seed, worker, epoch])


def shuffled_blocks(
    source: Source, pieces: Sequence[Piece], rng: np.random.Generator, chunk: int = CHUNK, window: int = WINDOW
) -> Iterator[tuple[str, Arrays]]:
    """(origin, arrays) blocks holding every sample of `pieces` once: pieces
    in shuffled order, then per piece its chunks in shuffled order, the
    samples of each window of `window` chunks shuffled together."""
    order = [pieces[i] for i in rng.permutation(len(pieces))]
    for index, piece in enumerate(order):
        following = order[index + 1].part if index + 1 < len(order) else None
        starts = np.arange(piece.start, piece.stop, chunk)
        chunks = rng.permutation(len(starts))
        for first in range(0, len(chunks), window):
            members = np.sort(chunks[first : first + window])  # read in file order, shuffle afterwards
            reads = [source.read(piece.part, start, stop) for start, stop in _runs(starts[members], chunk, piece.stop)]
            if following is not None:  # this file is open: open or fetch the next one while this one is used
                source.prefetch(following)
                following = None
            arrays = reads[0] if len(reads) == 1 else tuple(np.concatenate(c) for c in zip(*reads))
            permutation = rng.permutation(len(arrays[0]))
            yield source.name(piece.part), tuple(a[permutation] for a in arrays)


def _runs(starts: np.ndarray, chunk: int, end: int) -> list[tuple[int, int]]:
    """Sorted chunk starts -> contiguous (start, stop) ranges, adjacent chunks merged into one read."""
    runs: list[tuple[int, int]] = []
    for start in starts.tolist():
        stop = min(start + chunk, end)
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], stop)
        else:
            runs.append((start, stop))
    return runs


def rebatch(blocks: Iterable[tuple[str, Arrays]], batch_size: int, source: Any) -> Iterator[Batch]:
    """Blocks of samples -> batches of `batch_size`, full except the last
    (a remainder is carried into the next block, not dropped), which is
    marked `last`."""
    carry: list[Arrays] = []
    carried = 0
    origin = ""
    pending: Batch | None = None

    def make() -> Batch:
        arrays = carry[0] if len(carry) == 1 else tuple(np.concatenate(c) for c in zip(*carry))
        x, y, w = pack_arrays(source, arrays)
        return Batch(x, y, origin, sample_weight=w)

    for name, arrays in blocks:
        size = len(arrays[0])
        start = 0
        while start < size:
            if not carried:
                origin = name
            take = min(batch_size - carried, size - start)
            carry.append(tuple(a[start : start + take] for a in arrays))
            carried += take
            start += take
            if carried == batch_size:
                if pending is not None:
                    yield pending
                pending = make()
                carry, carried = [], 0
    if carried:
        if pending is not None:
            yield pending
        pending = make()
    if pending is not None:
        pending.last = True
        yield pending


_END = object()


class Prefetcher:
    """Runs an iterator in a background thread, `depth` items ahead.

    Reading and shuffling the next batches then overlaps the current batch's
    compute (the backend computes outside the GIL). An exception in the
    thread is raised again in the consumer, never lost.
    """

    def __init__(self, items: Iterator[Any], depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name="mpilearn-prefetch", daemon=True)
        self._thread.start()

    def _run(self, items: Iterator[Any]) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer
            self._put(exc)
            return
        self._put(_END)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def shard_batches(counts: Sequence[int], workers: int, mode: str, batch_size: int) -> list[int]:
    """Batches of every worker's shard in one pass."""
    return [math.ceil(sum(p.size for p in shard(counts, workers, w, mode)) / batch_size) for w in range(workers)]


def steps_per_epoch(counts: Sequence[int], workers: int, mode: str, batch_size: int, policy: str = "cycle") -> int:
    """The steps every worker takes per epoch when the algorithm needs them
    all in step: the largest shard's batches (`cycle`: smaller shards are
    cycled) or the smallest shard's (`drop`: larger shards stop early)."""
    batches = shard_batches(counts, workers, mode, batch_size)
    return min(batches) if policy == "drop" else max(batches)


def _blocks(
    source: Source, pieces: Sequence[Piece], seed: int, worker: int, epoch: int, cycle: int, chunk: int, window: int
) -> Iterator[tuple[str, Arrays]]:
    """The samples of one pass: a batch function orders its own (it gets the
    seed and epoch); other sources are shuffled chunk-wise from the seed."""
    own = source.epoch_blocks(pieces, epoch)
    if own is not None:
        return own
    rng = epoch_rng(seed, worker, epoch) if cycle == 0 else np.random.default_rng([seed, worker, epoch, cycle])
    return shuffled_blocks(source, pieces, rng, chunk, window)


def even_batches(
    source: Source,
    pieces: Sequence[Piece],
    batch_size: int,
    seed: int,
    worker: int,
    epoch: int,
    steps: int,
    chunk: int = CHUNK,
    window: int = WINDOW,
) -> Iterator[Batch]:
    """Exactly `steps` batches: a shard with fewer batches is cycled
    (reshuffled on each further pass), one with more stops early; see the
    even-work policies in steps_per_epoch."""
    produced = 0
    cycle = 0
    while True:
        for batch in rebatch(_blocks(source, pieces, seed, worker, epoch, cycle, chunk, window), batch_size, source):
            produced += 1
            batch.last = produced == steps
            yield batch
            if batch.last:
                return
        cycle += 1


def worker_epoch(
    source: Source,
    pieces: Sequence[Piece],
    batch_size: int,
    seed: int,
    worker: int,
    epoch: int,
    steps: int | None = None,
    chunk: int = CHUNK,
    window: int = WINDOW,
) -> Iterator[Batch]:
    """One epoch of one worker's batches, not read ahead; `steps` forces an exact count."""
    if steps is None:
        return rebatch(_blocks(source, pieces, seed, worker, epoch, 0, chunk, window), batch_size, source)
    return even_batches(source, pieces, batch_size, seed, worker, epoch, steps, chunk, window)


class BatchStream:
    """Consecutive epochs of batches through one read-ahead thread, so the
    first batches of the next epoch are read while this epoch's last ones
    train (the worker never waits for data at an epoch start).

    `make(epoch)` gives the batches of one epoch, the last marked `last`. An
    epoch abandoned before its last batch (training stopped), or a request
    out of sequence, restarts the thread at the requested epoch, so the
    order of any epoch depends on nothing but its number.
    """

    def __init__(self, make: Callable[[int], Iterator[Batch]], epochs: int, prefetch: int) -> None:
        self._make = make
        self._epochs = epochs
        self._prefetch = prefetch
        self._prefetcher: Prefetcher | None = None
        self._items: Iterator[Batch] | None = None
        self._next: int | None = None

    def _chain(self, first: int) -> Iterator[Batch]:
        for epoch in range(first, max(self._epochs, first + 1)):
            yield from self._make(epoch)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        if self._prefetch <= 0:
            yield from self._make(epoch)
            return
        if self._items is None or self._next != epoch:
            self.close()
            self._prefetcher = Prefetcher(self._chain(epoch), self._prefetch)
            self._items = iter(self._prefetcher)
        self._next = None  # until the epoch is consumed to its last batch
        for batch in self._items:
            yield batch
            if batch.last:
                self._next = epoch + 1
                return

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
        self._prefetcher = self._items = self._next = None
