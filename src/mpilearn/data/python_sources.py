"""Sources for data that are not HDF5: a `keras.utils.PyDataset`, and a
Python function that returns the batches of one worker for one epoch.

Both give batches as `(x, y)` or `(x, y, sample_weight)`, where x and y are
arrays, lists or dicts of arrays, as Keras's `Model.fit` takes them. Batches
are re-cut to the run's batch size like every other source.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import DataError
from ..userfile import import_file
from .sharding import Piece
from .sources import Arrays, ArraySource, Signature, Source, concat_parts

# The arguments a batch function may take, each passed when it names it.
FUNCTION_ARGUMENTS = ("worker_index", "num_workers", "epoch", "seed")


def _batch_arrays(item: Any, what: str) -> tuple[Arrays, Signature]:
    """One `(x, y)` or `(x, y, sample_weight)` batch -> flat arrays and their signature."""
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise DataError(
            f"{what}: a batch must be (x, y) or (x, y, sample_weight), got {type(item).__name__}"
            + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
        )
    batch = ArraySource(item[0], item[1], what=what, sample_weight=item[2] if len(item) == 3 else None)
    return batch.arrays, batch.signature


def _same(signature: Signature, expected: Signature, what: str) -> None:
    if signature != expected:
        raise DataError(f"{what}: {signature.difference(expected)} (the first batch's)")


def is_pydataset(obj: Any) -> bool:
    try:
        import keras
    except ImportError:  # pragma: no cover - keras is a dependency
        return False
    return isinstance(obj, keras.utils.PyDataset)


class PyDatasetSource(Source):
    """A keras.utils.PyDataset: each of its batches is one part. All batches
    but the last must have the same size (only the first and the last are
    inspected up front; a batch of another size is reported when read)."""

    def __init__(self, dataset: Any, what: str = "training data", inspect_batches: bool = True) -> None:
        self.dataset = dataset
        self.what = what
        self._last: tuple[int, Arrays] | None = None
        if inspect_batches:
            n = self._length()
            first, self.signature = _batch_arrays(dataset[0], f"{what}: PyDataset batch 0")
            last = first
            if n > 1:
                last, signature = _batch_arrays(dataset[n - 1], f"{what}: PyDataset batch {n - 1}")
                _same(signature, self.signature, f"{what}: PyDataset batch {n - 1}")
            self.counts = (len(first[0]),) * (n - 1) + (len(last[0]),)

    @classmethod
    def trusted(
        cls, dataset: Any, counts: Sequence[int], signature: Signature, what: str = "training data"
    ) -> "PyDatasetSource":
        source = cls(dataset, what, inspect_batches=False)
        source.counts, source.signature = tuple(counts), signature
        return source

    def _length(self) -> int:
        try:
            n = len(self.dataset)
        except TypeError:
            raise DataError(f"{self.what}: the PyDataset has no length (define __len__ or num_batches)") from None
        if not n:
            raise DataError(f"{self.what}: the PyDataset has no batches")
        return n

    def _batch(self, part: int) -> Arrays:
        if self._last is not None and self._last[0] == part:
            return self._last[1]
        what = f"{self.what}: PyDataset batch {part}"
        arrays, signature = _batch_arrays(self.dataset[part], what)
        _same(signature, self.signature, what)
        if len(arrays[0]) != self.counts[part]:
            raise DataError(
                f"{what} has {len(arrays[0])} samples but batch 0 has {self.counts[0]}: "
                "every batch but the last must have the same size"
            )
        self._last = (part, arrays)
        return arrays

    def read(self, part: int, start: int, stop: int) -> Arrays:
        return tuple(a[start:stop] for a in self._batch(part))

    def name(self, part: int) -> str:
        return f"PyDataset batch {part}"

    def load_all(self) -> Arrays:
        return concat_parts([self._batch(i) for i in range(len(self.counts))])


def load_function(spec: str, option: str = "--train") -> Callable[..., Any]:
    """`path/to/file.py:function` -> the function, imported from the file."""
    path, _, name = spec.rpartition(":")
    file = Path(path)
    if not path.endswith(".py") or not name:
        raise DataError(f"{option} {spec!r}: expected path/to/file.py:function")
    if not file.is_file():
        raise DataError(f"{option} {spec!r}: file {path} does not exist")
    module = import_file(file, DataError, f"{option} {spec!r}: {path}")
    function = getattr(module, name, None)
    if not callable(function):
        raise DataError(f"{option} {spec!r}: {path} has no function {name!r}")
    return function


def is_function_spec(text: str) -> bool:
    """True for `path/to/file.py:function`, the form of a batch function on the command line."""
    path, sep, name = text.rpartition(":")
    return bool(sep) and path.endswith(".py") and name.isidentifier()


class GeneratorSource(Source):
    """Batches from `function(worker_index, num_workers, epoch, seed)` (each
    argument passed when the function names it, or takes **kwargs).

    Part w holds what the function gives worker w: the function shards the
    data itself. Rank 0 runs it once per worker for epoch 0 before training
    to learn the shapes and how many samples each worker has (the steps of
    synchronous algorithms are agreed from these counts).
    """

    shards_itself = True

    def __init__(
        self,
        function: Callable[..., Any],
        workers: int,
        seed: int,
        what: str = "training data",
        inspect_batches: bool = True,
    ) -> None:
        self.function = function
        self.seed = seed
        self.what = what
        self.workers = workers
        if inspect_batches:
            counts, signature = [], None
            for worker in range(workers):
                samples = 0
                for arrays, sig in self._batches(worker, 0):
                    if signature is None:
                        signature = sig
                    samples += len(arrays[0])
                if not samples:
                    raise DataError(f"{what}: {self._describe()} gave no samples for worker_index={worker}, epoch=0")
                counts.append(samples)
            assert signature is not None
            self.counts, self.signature = tuple(counts), signature

    @classmethod
    def trusted(
        cls,
        function: Callable[..., Any],
        workers: int,
        seed: int,
        counts: Sequence[int],
        signature: Signature,
        what: str = "training data",
    ) -> "GeneratorSource":
        source = cls(function, workers, seed, what, inspect_batches=False)
        source.counts, source.signature = tuple(counts), signature
        return source

    def _describe(self) -> str:
        return f"{getattr(self.function, '__name__', 'the batch function')}()"

    def _call(self, worker: int, epoch: int) -> Any:
        values = {"worker_index": worker, "num_workers": self.workers, "epoch": epoch, "seed": self.seed}
        try:
            params = inspect.signature(self.function).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        try:
            return self.function(**{k: v for k, v in values.items() if takes_any or k in params})
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{self.what}: {self._describe()} raised {type(exc).__name__}: {exc}") from None

    def _batches(self, worker: int, epoch: int) -> Iterator[tuple[Arrays, Signature]]:
        expected = getattr(self, "signature", None)
        items = self._call(worker, epoch)
        try:
            iterator = iter(items)
        except TypeError:
            raise DataError(
                f"{self.what}: {self._describe()} returned a {type(items).__name__}, not an iterable of batches"
            ) from None
        for index, item in enumerate(iterator):
            what = f"{self.what}: batch {index} of {self._describe()} (worker_index={worker}, epoch={epoch})"
            arrays, signature = _batch_arrays(item, what)
            if expected is not None:
                _same(signature, expected, what)
            else:
                expected = signature
            yield arrays, signature

    def epoch_blocks(self, pieces: Sequence[Piece], epoch: int) -> Iterator[tuple[str, Arrays]]:
        """The function's batches for this epoch, in its own order (it shuffles with `seed` and `epoch`)."""
        for piece in pieces:
            name = f"{self._describe()} worker_index={piece.part}"
            for arrays, _ in self._batches(piece.part, epoch):
                yield name, arrays

    def read(self, part: int, start: int, stop: int) -> Arrays:
        raise DataError(
            f"{self.what}: samples of a batch function cannot be read by position "
            "(--preload and --cache-dir apply to HDF5 files)"
        )

    def name(self, part: int) -> str:
        return f"{self._describe()} worker_index={part}"

    def load_all(self) -> Arrays:
        """Everything the function gives one worker (validation: num_workers=1, epoch 0)."""
        parts = []
        for arrays, signature in self._batches(0, 0):
            parts.append(arrays)
            self.signature = signature
        if not parts:
            raise DataError(f"{self.what}: {self._describe()} gave no batches for worker_index=0, epoch=0")
        return concat_parts(parts)
