"""Refuse a world of one when the launcher started several processes.

`srun --mpi=none -n 3` (or an mpiexec of another MPI than the one mpi4py
loaded) starts 3 processes that each see an MPI world of 1: left alone,
they would run 3 separate trainings into one run directory and exit 0.
The launcher's own variables tell the two apart from a real 1-process job.
"""

from __future__ import annotations

from typing import Mapping

from . import env
from .errors import LaunchError
from .launch import OPEN_MPI, UNKNOWN, implementation_of_library


def world_of_one_problem(world_size: int, library: str, environ: Mapping[str, str]) -> str | None:
    """The one-line explanation when the launcher says N > 1 processes but MPI
    sees a world of `world_size` == 1; None when they agree."""
    announced = env.launcher_size(environ)
    if world_size != 1 or announced is None or announced[0] <= 1:
        return None
    processes, variable, launcher = announced
    mpi = implementation_of_library(library)
    mpi = "this MPI" if mpi == UNKNOWN else mpi
    said = f"{launcher} started {processes} processes ({variable}={processes}) but each sees an MPI world of 1"
    if variable == "SLURM_STEP_NUM_TASKS":
        return (
            f"{said}: srun gave MPI no process-management interface; use `srun --mpi=pmi2` "
            f"(MPICH, Intel MPI) or `--mpi=pmix` (Open MPI); `srun --mpi=list` shows what this cluster has"
        )
    if variable == "PMI_SIZE" and mpi == OPEN_MPI and "SLURM_STEP_ID" in environ:
        return f"{said}: Open MPI does not speak PMI-2; use `srun --mpi=pmix`"
    return (
        f"{said}: mpi4py loaded {mpi}, not the MPI of that launcher; start it with {mpi}'s own mpiexec "
        f"(`mpilearn -n N --mpiexec PATH`), or point MPI4PY_LIBMPI at the launcher's libmpi"
    )


def check_world(world_size: int, library: str, environ: Mapping[str, str] | None = None) -> None:
    """Raise LaunchError (exit 2) on a world of one that should be larger."""
    import os

    problem = world_of_one_problem(world_size, library, os.environ if environ is None else environ)
    if problem:
        raise LaunchError(problem)
