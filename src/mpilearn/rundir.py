"""The run directory and atomic writes: a reader never sees half a file.

A run directory belongs to one job at a time: rank 0 holds a lock on
RUN_DIR/.lock (flock, released by the kernel when the process ends, however
it ends) holding its PID and host, so a second job in the same directory is
refused with the owner's name. With the lock held, the temporary files a
killed run left behind are deleted.

JSON outputs hold no bare NaN (not JSON): non-finite numbers are written as null.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, IO

from .errors import ConfigError
from .models import tensorflow_unloaded

HISTORY = "history.json"
MODEL = "model.keras"
LOCK = ".lock"
# Our temporary files in a run directory (atomic writes, the writability probe).
TEMP_PATTERNS = (".*.tmp", ".model.*.keras", ".write-test-*")


def default_run_dir(parent: str = "runs") -> str:
    """runs/<timestamp>, created here so that jobs started in the same second
    (a SLURM array) each get their own: the first to mkdir a name owns it,
    the others take <timestamp>-2, -3, ..."""
    base = Path(parent) / time.strftime("%Y%m%d-%H%M%S")
    Path(parent).mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        candidate = base if attempt == 1 else base.with_name(f"{base.name}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError:
            break  # not writable: prepare_run_dir says so
        return str(candidate)
    return str(base)


class RunDirLock:
    """An exclusive lock on a run directory, held until release() or the process's end."""

    def __init__(self, run_dir: Path) -> None:
        import fcntl

        self.path = run_dir / LOCK
        self.handle: IO[str] | None = open(self.path, "a+")
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "another process"
            self.handle.close()
            self.handle = None
            raise ConfigError(
                f"--run-dir {run_dir} is in use by {owner}: give another --run-dir, or wait for that run to end"
            ) from None
        except OSError:
            pass  # no locking on this file system (some Lustre mounts): run unguarded
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self.handle.flush()

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing drops the flock
            self.handle = None


def remove_empty_run_dir(run_dir: Path) -> None:
    """Undo a run directory made for a run that failed its checks (only our own files in it)."""
    try:
        (run_dir / LOCK).unlink(missing_ok=True)
        run_dir.rmdir()
    except OSError:
        pass  # something else is in it: keep it


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete temporary files a killed run left (call with the run directory locked)."""
    from . import checkpoint

    found = [p for pattern in TEMP_PATTERNS for p in run_dir.glob(pattern)]
    for path in found:
        path.unlink(missing_ok=True)
    return found + checkpoint.remove_leftovers(run_dir)


def prepare_run_dir(path: str) -> Path:
    """Create the run directory and prove it is writable, before training."""
    run_dir = Path(path)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"--run-dir {path} is not writable: {exc.strerror or exc}") from None
    return run_dir


def _umask_mode() -> int:
    """Permissions a plain open() would give: mkstemp's 0600 is too private
    for outputs that colleagues on a cluster read."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, _umask_mode())
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(finite_json(obj), indent=2, default=_json_default, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def finite_json(value: Any) -> Any:
    """A copy with NaN and infinities as None (null), which JSON can hold."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if hasattr(value, "item") and not hasattr(value, "__len__"):  # numpy scalars
        return finite_json(value.item())
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def save_model_atomic(model: Any, path: Path) -> None:
    """model.save into a temporary .keras file, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.fchmod(fd, _umask_mode())
    os.close(fd)
    try:
        with tensorflow_unloaded():
            model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
