"""Copies of a worker's HDF5 files on node-local disk (--cache-dir, --copy-command).

A shared file system is slow for many readers; a node-local copy is read at
disk speed every epoch. Files are copied by a background thread ahead of use
(the next file while the current one is read). Ranks on one node share the
copies: the first rank to claim a file (an exclusive lock file) copies it,
the others wait for it. The copy command never goes through a shell: the
template is split once with shlex and `{src}`/`{dst}` are replaced inside
single arguments, so no file name can run a command.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from .options import parse_copy_command
from .sources import Arrays, Hdf5Source, Source

_FIELD = re.compile(r"\{(src|dst)\}")
# In each job's cache directory, one file per rank of this node using it: .owner-PID.
OWNER = ".owner-"


def _alive_owners(root: Path) -> list[int]:
    """PIDs of the ranks still using a job's cache directory (node-local, so this machine's)."""
    alive = []
    for owner in root.glob(f"{OWNER}*"):
        pid = int(owner.name[len(OWNER) :]) if owner.name[len(OWNER) :].isdigit() else 0
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
        except PermissionError:  # another user's process: alive
            alive.append(pid)
    return alive


def remove_stale(cache_dir: Path) -> None:
    """Delete the copies of killed jobs: directories whose owner files all name dead processes
    (and that are not brand new: a job starting now may not have written its owner file yet)."""
    for root in cache_dir.glob("mpilearn-*"):
        owners = list(root.glob(f"{OWNER}*"))
        try:
            fresh = time.time() - max(p.stat().st_mtime for p in owners) < 60 if owners else True
        except OSError:
            continue
        if root.is_dir() and not fresh and not _alive_owners(root):
            shutil.rmtree(root, ignore_errors=True)


def copy_argv(template: Sequence[str], src: str, dst: str) -> list[str]:
    """The command for one file: each field replaced within its argument, in one pass."""
    values = {"src": src, "dst": dst}
    return [_FIELD.sub(lambda m: values[m.group(1)], arg) for arg in template]


def run_copy(template: Sequence[str], src: str, dst: str) -> None:
    """Copy `src` to `dst` with the user's command; a failure names both and the command."""
    argv = copy_argv(template, src, dst)
    shown = shlex.join(argv)
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise DataError(f"{src}: copy command {shown} could not start ({exc.strerror or exc})") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise DataError(
            f"{src}: copy command {shown} failed with exit status {done.returncode}" + (f": {said[-1]}" if said else "")
        )
    if not os.path.isfile(dst):
        raise DataError(f"{src}: copy command {shown} succeeded but wrote no file {dst}")


class FileCache:
    """Local copies of some files of a source, under DIR/mpilearn-TOKEN/.

    `request(part)` queues a copy; `local(part)` waits for it and returns the
    local path. Copy errors are raised by `local`, in the reading thread, and
    leave a marker so that other ranks of the node waiting for the same file
    fail with the same message instead of waiting forever.
    """

    POLL_S = 0.05

    def __init__(self, files: Sequence[str], cache_dir: str, token: str, command: str) -> None:
        self.files = tuple(files)
        self.template = parse_copy_command(command)
        self.root = Path(cache_dir) / f"mpilearn-{token}"
        remove_stale(Path(cache_dir))
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.owner = self.root / f"{OWNER}{os.getpid()}"
            self.owner.touch()
        except OSError as exc:
            raise DataError(f"--cache-dir {cache_dir}: cannot create {self.root} ({exc.strerror or exc})") from None
        self._copied: list[Path] = []  # files this rank copied, deleted by close()
        self._requested: set[int] = set()
        self._errors: dict[int, DataError] = {}
        self._done: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="mpilearn-cache", daemon=True)
        self._thread.start()

    def path(self, part: int) -> Path:
        return self.root / f"{part:06d}-{Path(self.files[part]).name}"

    def request(self, part: int) -> None:
        with self._lock:
            if part in self._requested:
                return
            self._requested.add(part)
            self._done[part] = threading.Event()
        self._queue.put(part)

    def local(self, part: int) -> str:
        self.request(part)
        self._done[part].wait()
        error = self._errors.get(part)
        if error is not None:
            raise error
        return str(self.path(part))

    def _work(self) -> None:
        while True:
            part = self._queue.get()
            if part is None:
                return
            try:
                self._fetch(part)
            except DataError as error:
                self._errors[part] = error
            except Exception as exc:  # any surprise still reaches the reader, with the file named
                self._errors[part] = DataError(f"{self.files[part]}: caching failed ({type(exc).__name__}: {exc})")
            self._done[part].set()

    def _fetch(self, part: int) -> None:
        target = self.path(part)
        lock, failed = target.with_name(target.name + ".lock"), target.with_name(target.name + ".failed")
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:  # another rank of this node copies it
            self._wait_for(target, failed, part)
            return
        partial = target.with_name(target.name + ".part")
        try:
            run_copy(self.template, self.files[part], str(partial))
            os.replace(partial, target)
        except DataError as error:
            partial.unlink(missing_ok=True)
            failed.write_text(str(error))
            self._copied.append(failed)
            raise
        finally:
            self._copied.append(lock)
        self._copied.append(target)

    def _wait_for(self, target: Path, failed: Path, part: int) -> None:
        while not target.exists():
            if failed.exists():
                raise DataError(
                    failed.read_text() or f"{self.files[part]}: copying to the cache failed on another rank"
                )
            time.sleep(self.POLL_S)

    def close(self) -> None:
        """Stop copying and delete this rank's copies (call once every rank has stopped reading)."""
        self._queue.put(None)
        self._thread.join(timeout=5)
        for path in self._copied:
            path.unlink(missing_ok=True)
        try:
            self.owner.unlink(missing_ok=True)
            self.root.rmdir()  # the last rank of the node to finish removes the directory
        except OSError:
            pass

    def discard(self) -> None:
        """After a failure: delete everything of this job's cache on this node."""
        shutil.rmtree(self.root, ignore_errors=True)


class CachedSource(Source):
    """An Hdf5Source read from node-local copies of its files."""

    def __init__(self, source: Hdf5Source, cache: FileCache) -> None:
        self.source = source
        self.cache = cache
        self.counts, self.signature = source.counts, source.signature

    def read(self, part: int, start: int, stop: int) -> Arrays:
        try:
            path = self.cache.local(part)
        except DataError:
            self.source.close()
            self.cache.discard()  # this rank is about to end the job: leave no copies behind
            raise
        return self.source.read_file(path, start, stop, self.source.name(part))

    def prefetch(self, part: int) -> None:
        self.cache.request(part)

    def name(self, part: int) -> str:
        return self.source.name(part)

    def close(self) -> None:
        self.source.close()
        self.cache.close()
