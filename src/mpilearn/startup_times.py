"""How long each rank took from its process's start to its first trained batch, in parts.

`mark(part)` adds the time since the previous mark to `part`, so the parts
of a rank always sum to its total. The clock starts when the process did
(the kernel's start time, not this module's import), and under `mpilearn
train -n N` the launcher's own start-up before mpiexec started the rank is
the part "launch". Each rank's record reaches rank 0 with the gather that
ends training (training._stop_if_interrupted), for history.json's
"startup" section and one log line.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

# Under `-n N`: the launcher's start (seconds since the epoch), for the ranks' part "launch".
LAUNCH_TIME = "MPILEARN_LAUNCH_TIME"

# The parts, in the order of a rank's start-up (the log line's order).
PARTS = ("launch", "imports", "mpi", "keras", "data", "model", "setup", "wait", "first batch")


def process_age() -> float:
    """Seconds since this process started, from the kernel's record (Linux);
    0.0 where there is none (the clock then starts at this module's import)."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time, ticks since boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


class StartupClock:
    def __init__(self, age: float = 0.0, launched_at: float | None = None) -> None:
        now = time.monotonic()
        self.started = time.time() - age  # wall clock: comparable across processes (the launcher's, the ranks')
        self.last = now - age
        self.parts: dict[str, float] = {}
        self.done = False
        if launched_at is not None:
            self.parts["launch"] = max(0.0, self.started - launched_at)

    def mark(self, part: str) -> None:
        if self.done:
            return
        now = time.monotonic()
        self.parts[part] = self.parts.get(part, 0.0) + (now - self.last)
        self.last = now

    def finish(self, part: str) -> None:
        """The last part: the start-up is over (later marks are ignored)."""
        self.mark(part)
        self.done = True

    def record(self) -> dict[str, Any]:
        return {
            "started": round(self.started, 3),
            "total_s": round(sum(self.parts.values()), 3),
            "parts": {k: round(v, 3) for k, v in sorted(self.parts.items(), key=lambda kv: _order(kv[0]))},
        }


def _order(part: str) -> int:
    return PARTS.index(part) if part in PARTS else len(PARTS)


def _launched_at() -> float | None:
    try:
        return float(os.environ[LAUNCH_TIME])
    except (KeyError, ValueError):
        return None


CLOCK = StartupClock(process_age(), _launched_at())


def mark(part: str) -> None:
    CLOCK.mark(part)


def finish(part: str) -> None:
    CLOCK.finish(part)


def begin_run() -> None:
    """A second training in the same process (mpilearn.fit called again, a
    search's next trial) starts its clock at its own start: nothing to import."""
    global CLOCK
    if CLOCK.done:
        CLOCK = StartupClock()


def record() -> dict[str, Any]:
    return CLOCK.record()


def launch_environment() -> dict[str, str]:
    """For the launcher's mpiexec: when this process (the launcher) started."""
    return {LAUNCH_TIME: f"{time.time() - process_age():.3f}"}


def section(records: Sequence[dict[str, Any]], roles: Sequence[str]) -> dict[str, Any]:
    """history.json's "startup": every rank's record, and the job's time to its first batch:
    that of the slowest rank that trains (a master's start-up ends when training starts)."""
    ranks = [{"rank": r, "role": role, **rec} for r, (rec, role) in enumerate(zip(records, roles))]
    trained = [r for r in ranks if "first batch" in r["parts"]] or ranks
    slowest = max(trained, key=lambda r: r["total_s"])
    return {"first_batch_s": slowest["total_s"], "slowest_rank": slowest["rank"], "ranks": ranks}


def summary(startup: dict[str, Any]) -> str:
    """The log line: the slowest rank's time to its first batch, and its parts."""
    slowest = startup["ranks"][startup["slowest_rank"]]
    parts = ", ".join(f"{k} {v:.1f}" for k, v in slowest["parts"].items() if v >= 0.05)
    return (
        f"start-up: {startup['first_batch_s']:.1f} s to the first batch ({parts}), "
        f"slowest rank {startup['slowest_rank']} of {len(startup['ranks'])}"
    )
