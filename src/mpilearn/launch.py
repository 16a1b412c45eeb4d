"""Start N copies of a command under mpiexec when we are not under MPI yet.

The argv is a list (never a shell string) and the environment is forwarded,
so paths with spaces and quotes arrive intact on every rank.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from . import env
from .errors import CommunicationError


def find_mpiexec() -> str:
    """The mpiexec beside this Python (the mpich wheel's), else one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    for name in ("mpiexec", "mpirun"):
        found = shutil.which(name)
        if found:
            return found
    raise CommunicationError(
        "no mpiexec found: install an MPI runtime (pip install mpich) or start mpilearn under your cluster's launcher"
    )


def mpiexec_argv(processes: int, command: Sequence[str]) -> list[str]:
    return [find_mpiexec(), "-n", str(processes), *command]


def relaunch(processes: int, args: Sequence[str]) -> int:
    """Run `python -m mpilearn ARGS` on `processes` ranks; returns mpiexec's status."""
    argv = mpiexec_argv(processes, [sys.executable, "-m", "mpilearn", *args])
    child_env = dict(os.environ)
    child_env[env.LAUNCHED] = "1"
    if sys.stdout.isatty():  # ranks under mpiexec never see a terminal: tell rank 0 to draw a progress bar
        child_env.setdefault(env.TTY, str(shutil.get_terminal_size().columns))
    process = subprocess.Popen(argv, env=child_env)
    # Ctrl-C reaches mpiexec through the process group; mpiexec ends the
    # ranks, and we only wait for it to report.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
