"""K-fold cross-validation over the training files (pure, no I/O)."""

from __future__ import annotations

from typing import Sequence

from ..errors import DataError


def kfold(files: Sequence[str], k: int) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(training files, validation files) of each fold.

    The list is cut into k contiguous parts whose sizes differ by at most one
    file, in list order; fold i validates on part i and trains on the rest.
    Whole files, so no sample is in a fold's training and validation at once.
    """
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    if len(files) < k:
        raise DataError(f"--n-fold {k} needs at least {k} training files (one per fold), the list has {len(files)}")
    bounds = [len(files) * i // k for i in range(k + 1)]
    parts = [tuple(files[bounds[i] : bounds[i + 1]]) for i in range(k)]
    return [(tuple(f for j, part in enumerate(parts) if j != i for f in part), parts[i]) for i in range(k)]
