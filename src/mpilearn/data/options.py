"""Parsing and defaults of the data options, free of heavy imports so that
config.py can validate them before any process starts."""

from __future__ import annotations

import re
import shlex

from ..errors import ConfigError

# --shuffle-chunk (contiguous samples read at once) and --shuffle-window (chunks shuffled together).
SHUFFLE_CHUNK = 128
SHUFFLE_WINDOW = 8
# Even work per epoch under lockstep algorithms: cycle shorter shards, or drop the excess of longer ones.
EVEN_POLICIES = ("cycle", "drop")
DEFAULT_COPY_COMMAND = "cp {src} {dst}"

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str, option: str = "--memory-limit") -> int:
    """ "8G", "512M", "1.5T", "1000000" -> bytes (K, M, G, T are powers of 1024)."""
    match = _SIZE.match(str(text))
    if not match:
        raise ConfigError(f"{option} must be a size such as 8G, 512M or 1000000 (bytes), got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def parse_copy_command(template: str) -> list[str]:
    """The argument list of a --copy-command template; it must name {src} and {dst}.
    Split once here: file names are substituted later, inside single arguments."""
    try:
        argv = shlex.split(template)
    except ValueError as exc:
        raise ConfigError(f"--copy-command {template!r} cannot be split into arguments: {exc}") from None
    if not argv:
        raise ConfigError("--copy-command must not be empty")
    for field in ("{src}", "{dst}"):
        if not any(field in arg for arg in argv):
            raise ConfigError(f"--copy-command {template!r} must contain {field}, e.g. {DEFAULT_COPY_COMMAND!r}")
    return argv


def split_names(text: str) -> tuple[str, ...]:
    """`--features-name a,b` -> ("a", "b")."""
    return tuple(n.strip() for n in text.split(","))
