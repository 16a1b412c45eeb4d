"""SIGTERM and SIGINT during training: stop at the next safe point, keep the work.

A batch system sends SIGTERM at its time limit (then SIGKILL a little
later); Ctrl-C sends SIGINT. The signal may reach the launcher (`-n`, which
passes it to mpiexec), mpiexec (which passes it to every rank) or a single
rank. A rank that gets one only notes it here; the roles carry the request
to the rank that decides (a worker's update header, a flag in the peers'
allreduce), and the job then stops together:

- with checkpoints on: at the end of the current epoch, after writing a
  checkpoint, unless that epoch end is more than GRACE_S away; then at the
  next exchange, keeping the previous checkpoint;
- with checkpoints off: at the next exchange.

Every rank then raises `Interrupted`: the command line prints one line on
rank 0 saying how to resume and exits with 128 + the signal number (130 for
SIGINT, 143 for SIGTERM), the shell's convention for a job ended by a
signal. A second signal ends the job at once (MPI_Abort).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any, Callable

from .errors import MpilearnError

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long after the request a job with checkpoints on may train on to reach its epoch end.
GRACE_S = float(os.environ.get("MPILEARN_STOP_GRACE_S", "60"))
# A signal again within this time is the same request arriving twice.
DUPLICATE_S = 1.0


class Interrupted(MpilearnError):
    """Training was stopped by SIGTERM or SIGINT (exit status 128 + signal)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopRequest:
    """The first SIGTERM/SIGINT this process received during training."""

    def __init__(self) -> None:
        self.signum = 0
        self.since = 0.0
        # Set on the deciding rank when the job stops because of the request.
        self.acted = False
        self._previous: dict[int, Any] = {}
        self._depth = 0
        self.on_second: Callable[[int], None] = _exit_now

    @property
    def requested(self) -> bool:
        return self.signum != 0

    def note(self, signum: int) -> None:
        """A request learnt from another rank (or this one's signal)."""
        if not self.signum:
            self.signum = signum
            self.since = time.monotonic()

    def past_grace(self) -> bool:
        return self.requested and time.monotonic() - self.since > GRACE_S

    def wait_for_epoch_end(self, config: Any) -> bool:
        """Train on to the epoch end's checkpoint (checkpoints on, within the grace)?"""
        return bool(config.checkpoint.enabled) and not self.past_grace()

    def act(self, interrupted: bool) -> bool:
        """At an epoch end: stop now if a request is pending (its checkpoint is written)."""
        self.acted = self.acted or interrupted
        return interrupted

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum:
            # The same signal by two paths at once (`kill -TERM -PGID` reaches the launcher,
            # which passes it on, and mpiexec) is one request; a second one later stops at once.
            if time.monotonic() - self.since > DUPLICATE_S:
                self.on_second(signum)
            return
        self.note(signum)
        from .env import launcher_rank

        if launcher_rank() in (None, 0):  # one notice per job, not one per rank; rank 0 reports the end
            print(
                f"mpilearn: {signal_name(signum)} received: stopping at the next safe point; send it again to stop at once",
                file=sys.stderr,
                flush=True,
            )

    def install(self) -> None:
        """Catch the signals (main thread only; elsewhere signals keep their handlers).
        Nested (a search's trials): the outer install holds; a request it caught stays."""
        self._depth += 1
        self.acted = False
        if self._depth > 1:
            return
        self.signum = 0
        if threading.current_thread() is not threading.main_thread():
            return
        for number in SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)

    def restore(self) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()


def _exit_now(signum: int) -> None:
    raise Interrupted(f"second {signal_name(signum)}: stopping at once, without a checkpoint", signum)


# One per process: the signal handler and the roles share it.
STOP = StopRequest()
