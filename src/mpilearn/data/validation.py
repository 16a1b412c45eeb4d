"""Validation samples for `model.evaluate`, streamed from their source.

A rank's share of the validation set (every sample on the rank that
validates alone, a contiguous slice of the samples on each rank of a
distributed validation) is read in batch-sized contiguous blocks, in file
order, by a read-ahead thread, so memory holds a few batches whatever the
size of the set. `--preload` reads the share into memory once instead (after
checking that it fits), which is faster when it does. A batch function
(`--val file.py:function`) is streamed as it gives its batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from .batches import Prefetcher, rebatch
from .preload import PreloadedSource, check_fits, shard_bytes
from .python_sources import GeneratorSource
from .sharding import Piece, shard_samples
from .sources import Arrays, Source, pack_arrays

# Samples per evaluation batch (at least the training batch size), as model.evaluate used on rank 0.
EVALUATE_BATCH = 256
# Batches alive at once besides the read-ahead queue: one being cut, one being read, one being evaluated.
BATCHES_IN_FLIGHT = 3


class XY(NamedTuple):
    x: Any
    y: Any


class XYW(NamedTuple):
    x: Any
    y: Any
    sample_weight: Any


def validation_pieces(counts: Sequence[int], ranks: int, index: int) -> list[Piece]:
    """Rank `index`'s contiguous slice of all validation samples; shares differ
    by at most one sample and are empty when there are fewer samples than ranks."""
    total = sum(counts)
    if total >= ranks:
        return shard_samples(counts, ranks, index)
    return shard_samples(counts, total, index) if index < total else []


def sharded(source: Source) -> bool:
    """Can the samples be read by position (and so split between ranks)? A batch function cuts its own."""
    return not source.shards_itself


class ValidationReader:
    """One rank's share of the validation samples as evaluation batches.

    `memory_limit` (bytes) caps the batch size so that the batches alive at
    once fit in it; with `preload` the whole share must fit instead.
    """

    def __init__(
        self,
        source: Source,
        pieces: Sequence[Piece] | None,
        batch_size: int,
        prefetch: int,
        preload: bool = False,
        memory_limit: int | None = None,
        available: int | None = None,
        ranks_on_node: int = 1,
        who: str = "rank 0",
    ) -> None:
        self.pieces = list(pieces) if pieces is not None else None  # None: a batch function, read as it comes
        self.prefetch = max(1, prefetch)
        batch = max(batch_size, EVALUATE_BATCH)
        signature = getattr(source, "signature", None)
        if memory_limit is not None and signature is not None and not preload:
            batch = min(batch, max(1, memory_limit // ((self.prefetch + BATCHES_IN_FLIGHT) * signature.sample_bytes())))
        self.batch_size = batch
        self.origin = source
        if preload and self.pieces is not None:
            check_fits(
                shard_bytes(source.signature, self.pieces),
                memory_limit,
                available,
                ranks_on_node,
                f"the validation samples of {who}",
            )
            source = PreloadedSource(source, self.pieces)
        self.source = source

    @property
    def samples(self) -> int | None:
        return None if self.pieces is None else sum(p.size for p in self.pieces)

    @property
    def steps(self) -> int | None:
        """Evaluation batches of this share (None: unknown, a batch function)."""
        return None if self.samples is None else math.ceil(self.samples / self.batch_size)

    def first_sample(self) -> tuple[Any, ...]:
        """One sample as (x, y[, w]), to build a model's metrics without evaluating a share."""
        source = self.origin
        if isinstance(source, GeneratorSource):
            arrays = next(iter(source.epoch_blocks([Piece(0, 0, 0)], 0)))[1]
            arrays = tuple(a[:1] for a in arrays)
        else:
            part = next(i for i, n in enumerate(source.counts) if n)
            arrays = source.read(part, 0, 1)
        return _packed(source, arrays)

    def _blocks(self) -> Iterator[tuple[str, Arrays]]:
        source = self.source
        if self.pieces is None:
            assert isinstance(source, GeneratorSource)
            yield from source.epoch_blocks([Piece(0, 0, 0)], 0)
            return
        for piece in self.pieces:
            for start in range(piece.start, piece.stop, self.batch_size):
                yield source.name(piece.part), source.read(piece.part, start, min(start + self.batch_size, piece.stop))

    def batches(self) -> Iterator[tuple[Any, ...]]:
        """(x, y) or (x, y, sample_weight) batches in file order, read ahead in a thread."""
        prefetcher = Prefetcher(rebatch(self._blocks(), self.batch_size, self.source), self.prefetch)
        try:
            for batch in prefetcher:
                # Named tuples: torch's data loader turns a plain tuple into a list on its way to the model's
                # test_step, where a custom one (a GAN's) may expect the tuple that evaluate(x, y) passes.
                yield (
                    XY(batch.x, batch.y) if batch.sample_weight is None else XYW(batch.x, batch.y, batch.sample_weight)
                )
        finally:
            prefetcher.close()

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


def _packed(source: Any, arrays: Arrays) -> tuple[Any, ...]:
    x, y, w = pack_arrays(source, arrays)
    return (x, y) if w is None else (x, y, w)
