"""Sample sources behind one small interface: HDF5 files or in-memory arrays.

A source is a sequence of parts (a file, or one array) with a known number of
samples each; workers read slices of parts (see sharding.py). Opening a
source inspects every file once, so unreadable data are reported before
training starts, with the file and dataset named.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import h5py
import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class Signature:
    """What one sample looks like, identical across all parts of a source."""

    sample_shape: tuple[int, ...]
    label_shape: tuple[int, ...]
    label_dtype: str


class Source(Protocol):
    counts: tuple[int, ...]
    signature: Signature

    def read(self, part: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]: ...

    def name(self, part: int) -> str: ...


def _inspect_file(path: str, features_name: str, labels_name: str) -> tuple[int, Signature]:
    try:
        handle = h5py.File(path, "r")
    except FileNotFoundError:
        raise DataError(f"{path}: file does not exist") from None
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({_short(exc)})") from None
    with handle:
        datasets = []
        for option, name in (("--features-name", features_name), ("--labels-name", labels_name)):
            obj = handle.get(name)
            if not isinstance(obj, h5py.Dataset):
                keys = ", ".join(sorted(handle.keys())) or "nothing"
                raise DataError(f"{path}: no dataset {name!r} ({option}); the file has: {keys}")
            if obj.ndim == 0:
                raise DataError(f"{path}: dataset {name!r} is a scalar, expected one row per sample")
            datasets.append(obj)
        features, labels = datasets
        if features.shape[0] != labels.shape[0]:
            raise DataError(
                f"{path}: {features_name!r} has {features.shape[0]} samples but {labels_name!r} has {labels.shape[0]}"
            )
        if features.shape[0] == 0:
            raise DataError(f"{path}: dataset {features_name!r} holds no samples")
        try:  # touching the last sample catches truncated files now, not mid-training
            features[-1]
            labels[-1]
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read its last sample, the file looks truncated ({_short(exc)})") from None
        return features.shape[0], Signature(tuple(features.shape[1:]), tuple(labels.shape[1:]), str(labels.dtype))


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class Hdf5Source:
    """Samples from HDF5 files holding a features and a labels dataset."""

    def __init__(self, files: Sequence[str], features_name: str = "features", labels_name: str = "labels") -> None:
        if not files:
            raise DataError("the list of HDF5 files is empty")
        self.files = tuple(files)
        self.features_name = features_name
        self.labels_name = labels_name
        counts = []
        signature: Signature | None = None
        for path in self.files:
            count, sig = _inspect_file(path, features_name, labels_name)
            if signature is None:
                signature = sig
            elif sig != signature:
                raise DataError(
                    f"{path}: sample shape {sig.sample_shape} / label shape {sig.label_shape} differs from "
                    f"{signature.sample_shape} / {signature.label_shape} in {self.files[0]}"
                )
            counts.append(count)
        assert signature is not None
        self.counts = tuple(counts)
        self.signature = signature

    @classmethod
    def trusted(
        cls, files: Sequence[str], features_name: str, labels_name: str, counts: Sequence[int], signature: Signature
    ) -> "Hdf5Source":
        """A source whose files rank 0 already inspected: no rank opens every
        file at start-up, which a shared file system would feel at scale."""
        source = cls.__new__(cls)
        source.files, source.features_name, source.labels_name = tuple(files), features_name, labels_name
        source.counts, source.signature = tuple(counts), signature
        return source

    def read(self, part: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        path = self.files[part]
        try:
            with h5py.File(path, "r") as handle:
                x = handle[self.features_name][start:stop]
                y = handle[self.labels_name][start:stop]
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: reading samples {start}-{stop} failed ({_short(exc)})") from None
        return _as_float(x), _as_labels(y)

    def name(self, part: int) -> str:
        return self.files[part]

    def load_all(self) -> tuple[np.ndarray, np.ndarray]:
        """Every sample in memory (validation data on the master)."""
        parts = [self.read(i, 0, n) for i, n in enumerate(self.counts)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class ArraySource:
    """Samples already in memory, as given to mpilearn.fit((x, y))."""

    def __init__(self, x: np.ndarray, y: np.ndarray, what: str = "training data") -> None:
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
            raise DataError(f"{what}: x has {len(x) if x.ndim else 0} samples but y has {len(y) if y.ndim else 0}")
        if len(x) == 0:
            raise DataError(f"{what}: no samples")
        self.x, self.y = _as_float(x), _as_labels(y)
        self.counts = (len(x),)
        self.signature = Signature(tuple(x.shape[1:]), tuple(y.shape[1:]), str(y.dtype))
        self.what = what

    def read(self, part: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[start:stop], self.y[start:stop]

    def name(self, part: int) -> str:
        return self.what

    def load_all(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x, self.y


def _as_float(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.float32 else x.astype(np.float32)


def _as_labels(y: np.ndarray) -> np.ndarray:
    # Integer class ids stay integers (sparse losses); everything else is float32.
    return y if np.issubdtype(y.dtype, np.integer) or y.dtype == np.float32 else y.astype(np.float32)
