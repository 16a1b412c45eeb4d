"""Batches of one worker's shard, in a seeded order, read ahead in a thread."""
from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from .sharding import Piece
from .sources import Source


@dataclass
class Batch:
    x: np.ndarray
    y: np.ndarray
    # Which file the batch started in, for error messages.
    origin: str
    # True for the last batch of the epoch.
    last: bool = False


def epoch_rng(seed: int, worker: int, epoch: int) -> np.random.Generator:
    """One independent stream per (seed, worker, epoch): the same seed gives
    the same order on every run, whatever happened in earlier epochs."""
    return np.random.default_rng([seed, worker, epoch])


def epoch_batches(source: Source, pieces: Sequence[Piece], batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
    """Every sample of `pieces` exactly once: pieces in shuffled order,
    samples shuffled within a piece, batches full except the epoch's last
    (a remainder is carried into the next piece, not dropped)."""
    carry_x: list[np.ndarray] = []
    carry_y: list[np.ndarray] = []
    carried = 0
    origin = ""
    pending: Batch | None = None
    for index in rng.permutation(len(pieces)):
        piece = pieces[index]
        x, y = source.read(piece.part, piece.start, piece.stop)
        order = rng.permutation(len(x))
        x, y = x[order], y[order]
        start = 0
        while start < len(x):
            if not carried:
                origin = source.name(piece.part)
            take = min(batch_size - carried, len(x) - start)
            carry_x.append(x[start : start + take])
            carry_y.append(y[start : start + take])
            carried += take
            start += take
            if carried == batch_size:
                if pending is not None:
                    yield pending
                pending = Batch(_join(carry_x), _join(carry_y), origin)
                carry_x, carry_y, carried = [], [], 0
    if carried:
        if pending is not None:
            yield pending
        pending = Batch(_join(carry_x), _join(carry_y), origin)
    if pending is not None:
        pending.last = True
        yield pending


def _join(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


_END = object()


class Prefetcher:
    """Runs an iterator in a background thread, `depth` items ahead.

    Reading and shuffling the next batches then overlaps the current batch's
    compute (HDF5 reads and numpy copies release the GIL). An exception in
    the thread is raised again in the consumer, never lost.
    """

    def __init__(self, items: Iterator[Batch], depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name="mpilearn-prefetch", daemon=True)
        self._thread.start()

    def _run(self, items: Iterator[Batch]) -> None:
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

    def __iter__(self) -> Iterator[Batch]:
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


def steps_per_epoch(counts: Sequence[int], workers: int, mode: str, batch_size: int) -> int:
    """Batches of the largest shard: the steps every worker takes per epoch
    when the algorithm needs them all in step."""
    from .sharding import shard

    return max(math.ceil(sum(p.size for p in shard(counts, workers, w, mode)) / batch_size) for w in range(workers))


def even_batches(
    source: Source, pieces: Sequence[Piece], batch_size: int, seed: int, worker: int, epoch: int, steps: int
) -> Iterator[Batch]:
    """Exactly `steps` batches: a shard smaller than the largest one is
    cycled (reshuffled on each further pass) instead of leaving its peers
    waiting. This is the documented even-work policy of synchronous modes."""
    produced = 0
    cycle = 0
    while True:
        rng = epoch_rng(seed, worker, epoch) if cycle == 0 else np.random.default_rng([seed, worker, epoch, cycle])
        for batch in epoch_batches(source, pieces, batch_size, rng):
            produced += 1
            batch.last = produced == steps
            yield batch
            if batch.last:
                return
        cycle += 1


def iterate_epoch(
    source: Source,
    pieces: Sequence[Piece],
    batch_size: int,
    seed: int,
    worker: int,
    epoch: int,
    prefetch: int,
    steps: int | None = None,
) -> Iterator[Batch]:
    """One epoch of batches, read ahead by `prefetch`; `steps` forces an exact count."""
    if steps is None:
        batches = epoch_batches(source, pieces, batch_size, epoch_rng(seed, worker, epoch))
    else:
        batches = even_batches(source, pieces, batch_size, seed, worker, epoch, steps)
    if prefetch <= 0:
        yield from batches
        return
    prefetcher = Prefetcher(batches, prefetch)
    try:
        yield from prefetcher
    finally:
        prefetcher.close()
