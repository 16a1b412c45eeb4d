"""One base exception for everything mpilearn raises on purpose.

Each subclass maps to an exit status, so the command line can tell a usage
or data problem (status 2, fix your input) from a failure during training.
"""

from __future__ import annotations

import sys
import traceback
from typing import Callable


class MpilearnError(Exception):
    """Base class: a problem mpilearn detected and can explain in one line."""

    exit_status = 1
    # Raised alike on every rank (one verdict on the same inputs): rank 0 alone reports it,
    # and no rank aborts the others. Set on the instance with `on_every_rank()`.
    collective = False

    def on_every_rank(self) -> "MpilearnError":
        self.collective = True
        return self


def is_collective(error: BaseException) -> bool:
    return isinstance(error, MpilearnError) and error.collective


def abort_job(rank: int, role: str, error: BaseException, abort: Callable[[int], None]) -> None:
    """One rank failed on its own: say where and why, then end every rank of the job with `abort(status)`
    (the communicator's abort, which does not return)."""
    if not isinstance(error, MpilearnError):
        traceback.print_exc()
    status = error.exit_status if isinstance(error, MpilearnError) else 1
    print(f"mpilearn: error on rank {rank} ({role}): {error}", file=sys.stderr, flush=True)
    abort(status)


class ConfigError(MpilearnError):
    """An option has a value that is not allowed."""

    exit_status = 2


class DataError(MpilearnError):
    """A data file or file list cannot be used as given."""

    exit_status = 2


class ModelError(MpilearnError):
    """The model specification cannot be turned into a compiled Keras model."""

    exit_status = 2


class BackendError(MpilearnError):
    """The chosen compute backend is missing or cannot run the model."""

    exit_status = 2


class CommunicationError(MpilearnError):
    """MPI is missing, misconfigured, or a peer stopped answering."""


class LaunchError(CommunicationError):
    """The launcher and MPI disagree about the job (e.g. srun without a PMI):
    a problem of how the job was started, raised alike on every process."""

    exit_status = 2
    collective = True  # every process finds it: one line, from the first


class NonFiniteLossError(MpilearnError):
    """A loss or an update became NaN or infinite."""


class CheckpointError(MpilearnError):
    """A checkpoint or run directory cannot be written or read."""

    exit_status = 2
