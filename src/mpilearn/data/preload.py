"""--preload: a worker's whole shard read into memory once, before training.

The shard is checked against the memory it may use (--memory-limit, and
what the machine has available, shared among the ranks of the node) before
anything is read, so a shard that does not fit is a clear error at start-up,
not an out-of-memory kill in the middle of the first epoch.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import DataError
from .sharding import Piece
from .sources import Arrays, Signature, Source


def format_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def available_memory() -> int | None:
    """Bytes the machine can still give (MemAvailable), or None when unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def shard_bytes(signature: Signature, pieces: Sequence[Piece]) -> int:
    return signature.sample_bytes() * sum(p.size for p in pieces)


def check_fits(
    needed: int, limit: int | None, available: int | None = None, ranks_on_node: int = 1, who: str = "the shard"
) -> None:
    """DataError when `needed` bytes exceed the user's limit or this rank's
    share of the node's `available` memory (None: unknown, not checked)."""
    if limit is not None and needed > limit:
        raise DataError(
            f"--preload: {who} needs {format_size(needed)} but --memory-limit is {format_size(limit)}; "
            "raise the limit, use more workers, or leave out --preload"
        )
    if available is not None and needed > available // max(1, ranks_on_node):
        raise DataError(
            f"--preload: {who} needs {format_size(needed)} but this machine has "
            f"{format_size(available)} available for {ranks_on_node} rank(s); "
            "use more nodes or workers, or leave out --preload"
        )


class PreloadedSource(Source):
    """The pieces of one worker, held in memory; reads outside them are a bug."""

    def __init__(self, source: Source, pieces: Sequence[Piece]) -> None:
        self.source = source
        self.counts, self.signature = source.counts, source.signature
        self._held: dict[int, tuple[int, Arrays]] = {}
        for piece in pieces:
            self._held[piece.part] = (piece.start, source.read(piece.part, piece.start, piece.stop))
        source.close()  # no file stays open once everything is in memory

    def read(self, part: int, start: int, stop: int) -> Arrays:
        offset, arrays = self._held[part]
        return tuple(a[start - offset : stop - offset] for a in arrays)

    def name(self, part: int) -> str:
        return self.source.name(part)
