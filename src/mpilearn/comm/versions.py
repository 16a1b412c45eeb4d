"""Versions of the MPI library and of mpi4py, for `mpilearn info`."""

from __future__ import annotations


def mpi_versions() -> dict[str, str]:
    """The MPI library's own version string, the MPI standard it implements
    and mpi4py's version. Importing mpi4py.MPI starts MPI (a singleton when
    no launcher started this process)."""
    import mpi4py
    from mpi4py import MPI

    major, minor = MPI.Get_version()
    return {
        "mpi_library": next(
            (line.strip() for line in MPI.Get_library_version().splitlines() if line.strip()), "unknown"
        ),
        "mpi_standard": f"{major}.{minor}",
        "mpi4py": mpi4py.__version__,
    }
