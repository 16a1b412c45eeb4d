"""Which HDF5 files a data argument names: the mpi_learn file-list format
(one HDF5 path a line), one HDF5 file, a glob pattern, or a list of paths."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from ..userfile import read_text

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
# The first bytes of every HDF5 file without a user block.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def read_file_list(path: str | os.PathLike) -> tuple[str, ...]:
    """Paths named by a list file. Blank lines and `#` comments are skipped;
    relative paths are taken relative to the list file, so a data folder can
    move with its lists."""
    list_path = Path(path)
    text = read_text(
        list_path,
        DataError,
        f"file list {list_path}",
        " (give a text file of HDF5 paths, one a line, an HDF5 file, or a quoted glob such as 'data/*.h5')",
    )
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
    """A list file, one HDF5 file (by its suffix or its first bytes), a glob
    pattern of HDF5 files (sorted), or a sequence of HDF5 paths -> HDF5 paths."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if glob.has_magic(text):
            matches = tuple(sorted(glob.glob(text)))
            if not matches:
                raise DataError(f"{what} {text}: no file matches this pattern")
            return matches
        path = Path(text)
        if path.suffix.lower() in HDF5_SUFFIXES or is_hdf5_file(path):
            return (str(path),)
        return read_file_list(path)
    files = tuple(str(f) for f in source)
    if not files:
        raise DataError(f"{what}: the list of files is empty")
    return files
