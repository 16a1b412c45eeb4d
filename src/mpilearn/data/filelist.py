"""The mpi_learn file-list format: one HDF5 path a line."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..errors import DataError


def read_file_list(path: str | os.PathLike) -> tuple[str, ...]:
    """Paths named by a list file. Blank lines and `#` comments are skipped;
    relative paths are taken relative to the list file, so a data folder can
    move with its lists."""
    list_path = Path(path)
    try:
        text = list_path.read_text()
    except FileNotFoundError:
        raise DataError(f"file list {list_path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"file list {list_path} cannot be read: {exc}") from None
    files = []
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        file = Path(entry)
        files.append(str(file if file.is_absolute() else (list_path.resolve().parent / file)))
    if not files:
        raise DataError(f"file list {list_path} names no files")
    return tuple(files)


def resolve_files(source: str | os.PathLike | Sequence[str | os.PathLike], what: str) -> tuple[str, ...]:
    """A list file, one HDF5 file, or a sequence of HDF5 paths -> HDF5 paths."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.suffix.lower() in (".h5", ".hdf5", ".hdf"):
            return (str(path),)
        return read_file_list(path)
    files = tuple(str(f) for f in source)
    if not files:
        raise DataError(f"{what}: the list of files is empty")
    return files
