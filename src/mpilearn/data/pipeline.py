"""From the data options to sources and to one worker's stream of batches.

Rank 0 opens the training source (inspecting every file or batch function
once) and the validation samples; the other ranks rebuild the same source
from rank 0's counts and signature without touching the data. Each worker
then reads its shard through `WorkerData`: from the files, from node-local
copies (--cache-dir) or from memory (--preload), one read-ahead thread
spanning consecutive epochs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ..config import DataConfig
from ..errors import DataError
from .batches import Batch, BatchStream, steps_per_epoch, worker_epoch
from .cache import CachedSource, FileCache
from .preload import PreloadedSource, available_memory, check_fits, format_size, shard_bytes
from .python_sources import GeneratorSource, PyDatasetSource, is_pydataset, load_function
from .sharding import Piece, shard
from .sources import ArraySource, Hdf5Source, Signature, Source
from .validation import sharded, validation_pieces


def _from_python(given: Any, what: str, workers: int, seed: int, inspect_batches: bool = True) -> Source:
    """A Python data argument: (x, y[, sample_weight]) arrays, a PyDataset, or a batch function."""
    if is_pydataset(given):
        return PyDatasetSource(given, what)
    if callable(given):
        return GeneratorSource(given, workers, seed, what, inspect_batches)
    if isinstance(given, (tuple, list)) and len(given) in (2, 3):
        return ArraySource(given[0], given[1], what, given[2] if len(given) == 3 else None)
    raise DataError(
        f"{what}: expected (x, y), (x, y, sample_weight), a keras.utils.PyDataset or a function "
        f"returning batches, got {type(given).__name__}"
    )


def open_train(data: DataConfig, given: Any, workers: int, seed: int) -> Source:
    """Rank 0: the training source, every file (or the batch function) inspected once."""
    if given is not None:
        return _from_python(given, "training data", workers, seed)
    if data.train_function:
        return GeneratorSource(load_function(data.train_function, "--train"), workers, seed)
    return Hdf5Source(data.train_files, data.features_name, data.labels_name, data.sample_weights_name)


def trusted_train(
    data: DataConfig, given: Any, workers: int, seed: int, counts: Sequence[int], signature: Signature
) -> Source:
    """Every other rank: the same source, built from rank 0's findings without reading the data."""
    if given is not None and is_pydataset(given):
        return PyDatasetSource.trusted(given, counts, signature)
    if given is not None and callable(given):
        return GeneratorSource.trusted(given, workers, seed, counts, signature)
    if given is not None:
        return _from_python(given, "training data", workers, seed)
    if data.train_function:
        return GeneratorSource.trusted(load_function(data.train_function, "--train"), workers, seed, counts, signature)
    return Hdf5Source.trusted(
        data.train_files, data.features_name, data.labels_name, counts, signature, data.sample_weights_name
    )


def open_validation(data: DataConfig, given: Any, seed: int) -> Source | None:
    """Rank 0: the validation source, every file inspected once; no sample is
    read here (validation streams them, see data/validation.py)."""
    if given is not None:
        return _from_python(given, "validation data", 1, seed, inspect_batches=False)
    if data.val_function:
        return GeneratorSource(
            load_function(data.val_function, "--val"), 1, seed, "validation data", inspect_batches=False
        )
    if data.val_files:
        return Hdf5Source(data.val_files, data.features_name, data.labels_name, data.sample_weights_name)
    return None


def trusted_validation(data: DataConfig, given: Any, counts: Sequence[int], signature: Signature) -> Source:
    """A rank that validates a share (validation spread over the workers): the same
    validation source from rank 0's findings, without reading the data."""
    if given is not None and is_pydataset(given):
        return PyDatasetSource.trusted(given, counts, signature, "validation data")
    if given is not None:
        return _from_python(given, "validation data", 1, 0)
    return Hdf5Source.trusted(
        data.val_files, data.features_name, data.labels_name, counts, signature, data.sample_weights_name
    )


def check_validation_preload(data: DataConfig, validation: Source | None) -> None:
    """Rank 0, before training: with --preload, every validation sample (held by rank 0) against --memory-limit."""
    limit = data.memory_limit_bytes
    if not data.preload or limit is None or validation is None or not sharded(validation):
        return
    needed = shard_bytes(validation.signature, validation_pieces(validation.counts, 1, 0))
    if needed > limit:
        raise DataError(
            f"--preload: the validation samples need {format_size(needed)} on rank 0 but --memory-limit is "
            f"{format_size(limit)}; raise the limit, or leave out --preload (validation then streams)"
        )


def shard_mode(data: DataConfig, source: Source) -> str:
    """A batch function shards its data itself: part w is worker w's."""
    return "files" if source.shards_itself else data.shard


def _preloadable(source: Source) -> None:
    if source.shards_itself:
        raise DataError("--preload applies to HDF5 files and PyDatasets, not to a batch function")


def check_preload(data: DataConfig, source: Source, workers: int) -> None:
    """Rank 0, before training: the largest shard against --memory-limit, one clear error for all ranks."""
    if not data.preload:
        return
    _preloadable(source)
    limit = data.memory_limit_bytes
    if limit is None:
        return  # each worker checks its own machine's memory when it loads
    mode = shard_mode(data, source)
    largest = max(shard_bytes(source.signature, shard(source.counts, workers, w, mode)) for w in range(workers))
    if largest > limit:
        raise DataError(
            f"--preload: the largest worker shard needs {format_size(largest)} but --memory-limit is "
            f"{format_size(limit)}; raise the limit, use more workers, or leave out --preload"
        )


@dataclass(frozen=True)
class NodeContext:
    """What a worker's data need to know of the job and its node."""

    # Shared by every rank of the job: keeps the node-local copies of concurrent jobs apart.
    token: str = ""
    # Bytes available on the node before any rank preloaded, and the ranks sharing them.
    available: int | None = None
    ranks: int = 1


def node_context(comm: Any, data: DataConfig) -> NodeContext:
    """Collective (call on every rank): the job token for --cache-dir, and for
    --preload the node's available memory measured by every rank before any
    rank loads (a barrier), so no worker mistakes a peer's shard for too little memory."""
    token = ""
    if data.cache_dir:
        mine = secrets.token_hex(6) if comm.rank == 0 else None
        token = str(comm.bcast_object(mine) if comm.size > 1 else mine)
    available = None
    if data.preload:
        available = available_memory()
        if comm.size > 1:
            comm.barrier()
    return NodeContext(token, available, comm.local_size)


def epoch_steps(data: DataConfig, source: Source, workers: int) -> int:
    """Equal steps per epoch for lockstep algorithms, by --even-policy."""
    return steps_per_epoch(source.counts, workers, shard_mode(data, source), data.batch_size, data.even_policy)


class WorkerData:
    """One worker's shard as consecutive epochs of batches.

    Built before training starts, so that --preload (memory checked, then
    read) and --cache-dir (directory created, first file requested) fail or
    finish before the clock runs. `close` stops the reader and deletes the
    node-local copies: call it once every rank has stopped reading.
    """

    def __init__(
        self,
        source: Source,
        data: DataConfig,
        seed: int,
        workers: int,
        index: int,
        epochs: int,
        steps: int | None = None,
        node: NodeContext | None = None,
    ) -> None:
        node = node or NodeContext(available=available_memory())
        self.data, self.seed, self.index, self.steps = data, seed, index, steps
        self.pieces: list[Piece] = shard(source.counts, workers, index, shard_mode(data, source))
        if data.cache_dir and isinstance(source, Hdf5Source):
            source = CachedSource(
                source, FileCache(source.files, data.cache_dir, node.token or secrets.token_hex(6), data.copy_command)
            )
        if data.preload:
            _preloadable(source)
            check_fits(
                shard_bytes(source.signature, self.pieces),
                data.memory_limit_bytes,
                node.available,
                node.ranks,
                f"the shard of worker {index}",
            )
            source = PreloadedSource(source, self.pieces)
        self.source = source
        self._stream = BatchStream(self._epoch, epochs, data.prefetch)

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        data = self.data
        return worker_epoch(
            self.source,
            self.pieces,
            data.batch_size,
            self.seed,
            self.index,
            epoch,
            self.steps,
            data.shuffle_chunk,
            data.shuffle_window,
        )

    def epoch(self, epoch: int) -> Iterator[Batch]:
        return self._stream.epoch(epoch)

    def close(self) -> None:
        self._stream.close()
        self.source.close()
