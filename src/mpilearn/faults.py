"""Fault injection, a testing aid: check on your own cluster that a dead,
stuck or failing rank is caught, and how fast. RANK is the rank in the
whole job (mpiexec's), also under `mpilearn optimize`.

    MPILEARN_INJECT_FAULT=KIND@RANK:WHEN mpilearn train ...

KIND is what rank RANK does when WHEN comes:
- kill:  SIGKILL itself (a crash, an out-of-memory kill);
- hang:  SIGSTOP itself (alive but silent: a stuck file system, a debugger);
- raise: raise an exception (a bug);
- exit:  leave the process at once with status 0 (a user's code calling os._exit);
- nan:   make its next batch NaN (a diverging model, bad data).
WHEN is a training step (the rank's N-th batch, from 1), `start` (after the
start-up checks) or `end` (after training, before the outputs). Several
faults: separate them with commas. The variable passes through mpiexec and
srun to every rank; each rank acts only on its own faults.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError

VARIABLE = "MPILEARN_INJECT_FAULT"
KINDS = ("kill", "hang", "raise", "exit", "nan")


class InjectedFault(RuntimeError):
    """The exception of a `raise` fault."""


@dataclass(frozen=True)
class Fault:
    kind: str
    rank: int
    when: str  # "start", "end" or a step number


def parse(text: str) -> tuple[Fault, ...]:
    faults = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, rest = item.partition("@")
        rank, _, when = rest.partition(":")
        if kind not in KINDS or not rank.isdigit() or not (when in ("start", "end") or when.isdigit()):
            raise ConfigError(
                f"{VARIABLE}={text!r}: each fault is KIND@RANK:WHEN with KIND one of {', '.join(KINDS)}, "
                "WHEN a step number, start or end (e.g. kill@2:5)"
            )
        faults.append(Fault(kind, int(rank), when))
    return tuple(faults)


def _planned() -> tuple[Fault, ...]:
    return parse(os.environ.get(VARIABLE, ""))


def at(rank: int, when: str | int, batch: Any = None) -> None:
    """Act out the faults planned for this rank at this point (no-op without the variable)."""
    if VARIABLE not in os.environ:
        return
    for fault in _planned():
        if fault.rank == rank and fault.when == str(when):
            _act(fault, batch)


def _act(fault: Fault, batch: Any) -> None:
    print(f"mpilearn: injected fault {fault.kind} on rank {fault.rank} at {fault.when} (pid {os.getpid()})", flush=True)
    if fault.kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault.kind == "hang":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif fault.kind == "raise":
        raise InjectedFault(f"injected fault on rank {fault.rank} at {fault.when}")
    elif fault.kind == "exit":
        os._exit(0)
    elif fault.kind == "nan" and batch is not None:
        inputs = (
            batch.x
            if isinstance(batch.x, (list, tuple))
            else list(batch.x.values())
            if isinstance(batch.x, dict)
            else [batch.x]
        )
        for array in inputs:
            if isinstance(array, np.ndarray) and array.dtype.kind == "f":
                array[...] = np.nan
