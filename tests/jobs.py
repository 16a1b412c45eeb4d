"""A running command whose output a test watches (for failures injected
mid-run), under any Python or launcher; it always ends (hard timeouts,
the whole process group killed)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import kill_session


class WatchedJob:
    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env.pop("MPILEARN_LAUNCHED", None)
        full_env.update(env or {})
        self.log = log
        self.handle = open(log, "w")
        self.process = subprocess.Popen(
            argv, stdout=self.handle, stderr=subprocess.STDOUT, start_new_session=True, env=full_env
        )

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, timeout: float = 240) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text())
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"never saw {pattern!r}:\n{self.text()}")

    def finish(self, timeout: float) -> tuple[int, float]:
        """Wait for the end; returns (exit status, seconds waited)."""
        start = time.monotonic()
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"job did not stop within {timeout}s:\n{self.text()}")
        return status, time.monotonic() - start

    def kill(self) -> None:
        kill_session(self.process.pid)
        self.process.wait()

    def rank(self, rank: int, timeout: float = 240) -> tuple[int, str]:
        """(pid, host) of a rank, from the ranks line rank 0 logs at the start."""
        ranks = self.wait_for(r"ranks: (.*)", timeout).group(1)
        found = re.search(rf"\b{rank} \S+ pid (\d+)@(\S+?)(,|$)", ranks)
        assert found, ranks
        return int(found.group(1)), found.group(2)
