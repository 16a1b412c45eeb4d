"""One base exception for everything mpilearn raises on purpose.

Each subclass maps to an exit status, so the command line can tell a usage
or data problem (status 2, fix your input) from a failure during training.
"""
from __future__ import annotations


class MpilearnError(Exception):
    """Base class: a problem mpilearn detected and can explain in one line."""

    exit_status = 1
    # Set when every rank raises the same error, so that rank 0 alone reports it.
    collective = False


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


class WorkerFailedError(MpilearnError):
    """Another rank failed; this rank stops because of it."""


class NonFiniteLossError(MpilearnError):
    """A loss or an update became NaN or infinite."""


class CheckpointError(MpilearnError):
    """A checkpoint or run directory cannot be written or read."""

    exit_status = 2
