"""A rank whose script fails before training starts must not leave the job hanging.

Under mpiexec every rank's MPI start-up (MPI_Init, run by `mpilearn.fit`) waits
until all ranks have joined it, and nothing times that wait out: a script that
raises on one rank before it reaches `fit` (a tracking server that is down, a
missing file) would leave the other ranks waiting forever. `import mpilearn`
therefore chains a handler to `sys.excepthook` in multi-rank jobs: after the
traceback, the failed rank joins MPI's start-up itself, which lets the others'
start-up complete, and aborts the job. Not covered: a failure before
`import mpilearn`, and `sys.exit` with a non-zero code (no hook sees it).
"""

from __future__ import annotations

import sys
from types import TracebackType

from .env import launcher_rank, launcher_size

# How long a failed rank waits in MPI's start-up for the others to arrive before it leaves anyway
# (a rank that never calls fit, or died as well): waiting there costs no CPU.
JOIN_LIMIT_S = 600.0


def install() -> None:
    """Chain the handler to sys.excepthook when the launcher announced more than one rank."""
    size = launcher_size()
    if size is None or size[0] < 2:
        return
    previous = sys.excepthook

    def end_the_job(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        previous(kind, error, trace)
        if _mpi_started() or issubclass(kind, KeyboardInterrupt):
            return  # MPI is up: mpilearn's own error path and watchdogs end the job; Ctrl-C reaches every rank
        print(
            f"mpilearn: rank {launcher_rank()} failed before training started ({kind.__name__} above); "
            f"ending the job's other {size[0] - 1} rank(s)",
            file=sys.stderr,
            flush=True,
        )
        from .comm.start import abort_before_start

        abort_before_start(1, JOIN_LIMIT_S)

    sys.excepthook = end_the_job


def _mpi_started() -> bool:
    mpi = sys.modules.get("mpi4py.MPI")
    return mpi is not None and bool(mpi.Is_initialized())
