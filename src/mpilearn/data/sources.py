"""Sample sources behind one small interface: HDF5 files or in-memory arrays.

A source is a sequence of parts (a file, or one array) with a known number of
samples each; workers read slices of parts (see sharding.py). `read` returns
the arrays of a slice as one flat tuple: the model inputs, then the targets,
then the sample weights when there are any; `Signature.pack` turns them into
what the model takes (one array, a list, or a dict). Opening a source
inspects every file once, so unreadable data are reported before training
starts, with the file and dataset named.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..errors import DataError
from .options import split_names
from .sharding import Piece

if TYPE_CHECKING:  # h5py loads with the first HDF5 file: a launcher or an in-memory run never needs it
    import h5py

Arrays = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Signature:
    """What one sample looks like, identical across all parts of a source."""

    # One shape per model input and per target (without the sample axis).
    sample_shapes: tuple[tuple[int, ...], ...]
    label_shapes: tuple[tuple[int, ...], ...]
    label_dtypes: tuple[str, ...]
    # Dataset names or dict keys of the inputs and targets, in model order.
    input_names: tuple[str, ...] = ()
    label_names: tuple[str, ...] = ()
    input_form: str = "array"
    label_form: str = "array"
    # True when every sample carries a weight for the loss.
    weighted: bool = False

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The first input's shape: the shape of a single-input model."""
        return self.sample_shapes[0]

    @property
    def label_shape(self) -> tuple[int, ...]:
        return self.label_shapes[0]

    @property
    def label_dtype(self) -> str:
        return self.label_dtypes[0]

    @property
    def class_id_targets(self) -> tuple[int, ...]:
        """Positions (among the targets) of integer class-id labels, one id per sample."""
        return tuple(
            i
            for i, (shape, dtype) in enumerate(zip(self.label_shapes, self.label_dtypes))
            if "int" in dtype and shape in ((), (1,))
        )

    def sample_bytes(self) -> int:
        """Memory of one sample once read (inputs and weights as float32)."""
        inputs = sum(4 * math.prod(s) for s in self.sample_shapes)
        labels = sum(
            np.dtype(_label_dtype(d)).itemsize * math.prod(s) for s, d in zip(self.label_shapes, self.label_dtypes)
        )
        return inputs + labels + 4 * int(self.weighted)

    def pack(self, arrays: Sequence[np.ndarray]) -> tuple[Any, Any, np.ndarray | None]:
        """Flat arrays -> (x, y, sample_weight) as the model takes them."""
        n_in, n_out = len(self.sample_shapes), len(self.label_shapes)
        x = _form(arrays[:n_in], self.input_form, self.input_names)
        y = _form(arrays[n_in : n_in + n_out], self.label_form, self.label_names)
        return x, y, (arrays[n_in + n_out] if self.weighted else None)

    def difference(self, other: "Signature") -> str:
        """How this signature differs from `other`, for an error message."""
        if (
            len(self.sample_shapes)
            == len(self.label_shapes)
            == len(other.sample_shapes)
            == len(other.label_shapes)
            == 1
        ):
            return (
                f"sample shape {self.sample_shape} / label shape {self.label_shape} differs from "
                f"{other.sample_shape} / {other.label_shape}"
            )
        return (
            f"inputs {self.describe_inputs()} / label shapes {self.label_shapes} differ from "
            f"{other.describe_inputs()} / {other.label_shapes}"
        )

    def describe_inputs(self) -> str:
        names = self.input_names or tuple(f"input {i}" for i in range(len(self.sample_shapes)))
        return ", ".join(f"{n} {s}" for n, s in zip(names, self.sample_shapes))


def _form(arrays: Sequence[np.ndarray], form: str, names: tuple[str, ...]) -> Any:
    if form == "dict":
        return dict(zip(names, arrays))
    if form == "list":
        return list(arrays)
    return arrays[0]


def pack_arrays(source: Any, arrays: Sequence[np.ndarray]) -> tuple[Any, Any, np.ndarray | None]:
    """`Signature.pack`, also for bare sources without a signature: (x, y[, w])."""
    signature = getattr(source, "signature", None)
    if signature is not None:
        return signature.pack(arrays)
    return arrays[0], arrays[1], (arrays[2] if len(arrays) > 2 else None)


class Source:
    """Parts (a file, an array, a PyDataset batch, a worker's share of a batch
    function) with a known number of samples each. A source sets `counts` and
    `signature` and implements `read` and `name`; every other hook has a
    default here that a source overrides when it has more to offer."""

    counts: tuple[int, ...]
    signature: Signature
    # True when part w is worker w's, cut and ordered by the source itself (a batch function).
    shards_itself = False

    def read(self, part: int, start: int, stop: int) -> Arrays:
        """Samples [start, stop) of `part`, as flat arrays."""
        raise NotImplementedError

    def name(self, part: int) -> str:
        """The part as error messages name it (a file path)."""
        raise NotImplementedError

    def load_all(self) -> Arrays:
        """Every sample in memory (validation data on the master)."""
        try:
            return concat_parts([self.read(i, 0, n) for i, n in enumerate(self.counts)])
        finally:
            self.close()

    def prefetch(self, part: int) -> None:
        """Make the first read of `part` fast (open or copy it ahead); nothing to do by default."""

    def epoch_blocks(self, pieces: Sequence[Piece], epoch: int) -> Iterator[tuple[str, Arrays]] | None:
        """The source's own (origin, arrays) blocks of `pieces` for `epoch`, or None
        (the default): the reader then shuffles the pieces chunk-wise from the seed."""
        return None

    def largest_labels(self) -> list[int] | None:
        """The largest integer class id of each class-id target, or None (the
        default) when the source cannot tell without running through its batches."""
        return None

    def close(self) -> None:
        """Release open files and background work; nothing to release by default."""


@dataclass(frozen=True)
class DatasetNames:
    """Which HDF5 objects hold the inputs, targets and weights."""

    features: str = "features"
    labels: str = "labels"
    # "" = unweighted.
    weights: str = ""


_OPTIONS = {"features": "--features-name", "labels": "--labels-name", "weights": "--sample-weights-name"}


def _resolve(handle: h5py.File, path: str, role: str, text: str) -> tuple[list[h5py.Dataset], tuple[str, ...], str]:
    """The datasets one option names in an open file, their names and form:
    a dataset (array), a group (its datasets sorted by key: list), or a
    comma-separated list of datasets (list)."""
    import h5py

    option = _OPTIONS[role]
    names = split_names(text)
    if len(names) == 1:
        obj = handle.get(names[0])
        if isinstance(obj, h5py.Group):
            keys = sorted(k for k in obj.keys() if isinstance(obj.get(k), h5py.Dataset))
            if not keys:
                raise DataError(f"{path}: group {names[0]!r} ({option}) holds no datasets")
            return [obj[k] for k in keys], tuple(f"{names[0]}/{k}" for k in keys), "list"
    datasets = []
    for name in names:
        obj = handle.get(name)
        if not isinstance(obj, h5py.Dataset):
            present = ", ".join(sorted(handle.keys())) or "nothing"
            raise DataError(f"{path}: no dataset {name!r} ({option}); the file has: {present}")
        if obj.ndim == 0:
            raise DataError(f"{path}: dataset {name!r} is a scalar, expected one row per sample")
        datasets.append(obj)
    return datasets, names, "array" if len(names) == 1 else "list"


def _open_datasets(handle: h5py.File, path: str, names: DatasetNames) -> tuple[list[h5py.Dataset], Signature]:
    """Every dataset of one file in read order, and the file's signature."""
    inputs, input_names, input_form = _resolve(handle, path, "features", names.features)
    labels, label_names, label_form = _resolve(handle, path, "labels", names.labels)
    weights = _resolve(handle, path, "weights", names.weights)[0] if names.weights else []
    if len(weights) > 1:
        raise DataError(f"{path}: --sample-weights-name must name one dataset, got {names.weights!r}")
    datasets = [*inputs, *labels, *weights]
    signature = Signature(
        tuple(tuple(d.shape[1:]) for d in inputs),
        tuple(tuple(d.shape[1:]) for d in labels),
        tuple(str(d.dtype) for d in labels),
        input_names,
        label_names,
        input_form,
        label_form,
        bool(weights),
    )
    return datasets, signature


def _inspect_file(path: str, names: DatasetNames) -> tuple[int, Signature]:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except FileNotFoundError:
        raise DataError(f"{path}: file does not exist") from None
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({_short(exc)})") from None
    with handle:
        datasets, signature = _open_datasets(handle, path, names)
        first = datasets[0]
        for dataset in datasets[1:]:
            if dataset.shape[0] != first.shape[0]:
                raise DataError(
                    f"{path}: {first.name.lstrip('/')!r} has {first.shape[0]} samples but "
                    f"{dataset.name.lstrip('/')!r} has {dataset.shape[0]}"
                )
        if signature.weighted and datasets[-1].ndim != 1:
            raise DataError(
                f"{path}: sample weights {names.weights!r} have shape {datasets[-1].shape}, expected one number a sample"
            )
        if first.shape[0] == 0:
            raise DataError(f"{path}: dataset {first.name.lstrip('/')!r} holds no samples")
        try:  # touching the last sample catches truncated files now, not mid-training
            for dataset in datasets:
                dataset[-1]
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read its last sample, the file looks truncated ({_short(exc)})") from None
        return first.shape[0], signature


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class Hdf5Source(Source):
    """Samples from HDF5 files holding input, target (and weight) datasets.

    The last two files read stay open: reading a file chunk by chunk then
    opens it once, and the batch reader can open the next file ahead of use
    (`prefetch`), which a shared file system rewards.
    """

    OPEN_FILES = 2

    def __init__(
        self, files: Sequence[str], features_name: str = "features", labels_name: str = "labels", weights_name: str = ""
    ) -> None:
        if not files:
            raise DataError("the list of HDF5 files is empty")
        self._setup(files, DatasetNames(features_name, labels_name, weights_name))
        counts = []
        signature: Signature | None = None
        for path in self.files:
            count, sig = _inspect_file(path, self.names)
            if signature is None:
                signature = sig
            elif sig != signature:
                raise DataError(f"{path}: {sig.difference(signature)} in {self.files[0]}")
            counts.append(count)
        assert signature is not None
        self.counts = tuple(counts)
        self.signature = signature

    def _setup(self, files: Sequence[str], names: DatasetNames) -> None:
        self.files = tuple(files)
        self.names = names
        self.features_name, self.labels_name = names.features, names.labels
        self._open: OrderedDict[str, tuple[h5py.File, list[h5py.Dataset]]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def trusted(
        cls,
        files: Sequence[str],
        features_name: str,
        labels_name: str,
        counts: Sequence[int],
        signature: Signature,
        weights_name: str = "",
    ) -> "Hdf5Source":
        """A source whose files rank 0 already inspected: no rank opens every
        file at start-up, which a shared file system would feel at scale."""
        source = cls.__new__(cls)
        source._setup(files, DatasetNames(features_name, labels_name, weights_name))
        source.counts, source.signature = tuple(counts), signature
        return source

    def _datasets(self, path: str) -> list[h5py.Dataset]:
        with self._lock:
            entry = self._open.get(path)
            if entry is not None:
                self._open.move_to_end(path)
                return entry[1]
            import h5py

            handle = h5py.File(path, "r")
            try:
                datasets = _open_datasets(handle, path, self.names)[0]
            except BaseException:
                handle.close()
                raise
            self._open[path] = (handle, datasets)
            while len(self._open) > self.OPEN_FILES:
                self._open.popitem(last=False)[1][0].close()
            return datasets

    def read(self, part: int, start: int, stop: int) -> Arrays:
        return self.read_file(self.files[part], start, stop, self.files[part])

    def read_file(self, path: str, start: int, stop: int, shown: str) -> Arrays:
        """Samples [start, stop) of `path` (a local copy of `shown`, or the file itself)."""
        try:
            arrays = [d[start:stop] for d in self._datasets(path)]
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{shown}: reading samples {start}-{stop} failed ({_short(exc)})") from None
        return _normalise(arrays, self.signature)

    def prefetch(self, part: int) -> None:
        """Open the file of `part` now, so its first read does not wait for it."""
        try:
            self._datasets(self.files[part])
        except (OSError, KeyError, ValueError):
            pass  # reported, with the file named, by the read itself

    def name(self, part: int) -> str:
        return self.files[part]

    def largest_labels(self, chunk: int = 1 << 20) -> list[int]:
        """The largest value of each integer class-id target over all files,
        read in chunks of the label datasets only (never the features)."""
        targets = self.signature.class_id_targets
        first = len(self.signature.sample_shapes)
        largest = [-1] * len(targets)
        for path in self.files:
            datasets = self._datasets(path)
            for k, target in enumerate(targets):
                labels = datasets[first + target]
                for start in range(0, labels.shape[0], chunk):
                    block = labels[start : start + chunk]
                    if block.size:
                        largest[k] = max(largest[k], int(block.max()))
        return largest

    def close(self) -> None:
        with self._lock:
            while self._open:
                self._open.popitem()[1][0].close()


class ArraySource(Source):
    """Samples already in memory, as given to mpilearn.fit((x, y)) or
    fit((x, y, sample_weight)); x and y may be lists or dicts of arrays."""

    def __init__(self, x: Any, y: Any, what: str = "training data", sample_weight: Any = None) -> None:
        self.what = what
        inputs, input_names, input_form = _flatten(x, what, "x")
        labels, label_names, label_form = _flatten(y, what, "y")
        weights = [] if sample_weight is None else _flatten(sample_weight, what, "sample_weight")[0]
        arrays = [*inputs, *labels, *weights]
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise DataError(
                f"{what}: x, y and sample weights have different numbers of samples: "
                f"{', '.join(str(len(a)) for a in arrays)}"
            )
        if not lengths.pop():
            raise DataError(f"{what}: no samples")
        self.signature = Signature(
            tuple(tuple(a.shape[1:]) for a in inputs),
            tuple(tuple(a.shape[1:]) for a in labels),
            tuple(str(a.dtype) for a in labels),
            input_names,
            label_names,
            input_form,
            label_form,
            bool(weights),
        )
        self.arrays = _normalise(arrays, self.signature)
        self.counts: tuple[int, ...] = (len(arrays[0]),)

    def read(self, part: int, start: int, stop: int) -> Arrays:
        return tuple(a[start:stop] for a in self.arrays)

    def largest_labels(self) -> list[int]:
        first = len(self.signature.sample_shapes)
        return [int(self.arrays[first + t].max()) for t in self.signature.class_id_targets]

    def name(self, part: int) -> str:
        return self.what

    def load_all(self) -> Arrays:
        return self.arrays


def _flatten(data: Any, what: str, role: str) -> tuple[list[np.ndarray], tuple[str, ...], str]:
    """One array, a list/tuple or a dict of arrays -> arrays, names, form."""
    if isinstance(data, dict):
        names = tuple(data)
        arrays, form = [data[k] for k in names], "dict"
    elif isinstance(data, (list, tuple)):
        names, arrays, form = (), list(data), "list"
    else:
        names, arrays, form = (), [data], "array"
    arrays = [np.asarray(a) for a in arrays]
    if not arrays or any(a.ndim == 0 for a in arrays):
        raise DataError(f"{what}: {role} must be arrays with one row per sample")
    return arrays, names, form


def _label_dtype(dtype: str) -> np.dtype:
    # Integer class ids stay integers (sparse losses); everything else is float32.
    return np.dtype(dtype) if np.issubdtype(np.dtype(dtype), np.integer) else np.dtype(np.float32)


def _normalise(arrays: Sequence[np.ndarray], signature: Signature) -> Arrays:
    """Inputs and weights as float32, labels as float32 or integer class ids."""
    n_in = len(signature.sample_shapes)
    n_labels = len(signature.label_shapes)
    out = []
    for i, a in enumerate(arrays):
        target = _label_dtype(str(a.dtype)) if n_in <= i < n_in + n_labels else np.dtype(np.float32)
        out.append(a if a.dtype == target else a.astype(target))
    return tuple(out)


def concat_parts(parts: Sequence[Arrays]) -> Arrays:
    """Arrays of several slices joined position by position."""
    if len(parts) == 1:
        return tuple(parts[0])
    return tuple(np.concatenate(column) for column in zip(*parts))


def load_packed(source: Any) -> tuple[Any, ...]:
    """A source's samples as (x, y) or (x, y, sample_weight), ready for model.evaluate."""
    x, y, w = pack_arrays(source, source.load_all())
    return (x, y) if w is None else (x, y, w)
