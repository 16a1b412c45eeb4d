"""Environment variable names and the per-rank thread cap, in one place.

Thread caps must be applied before torch, jax, tensorflow or numpy's BLAS is
imported, because their thread pools read these variables at import time.
"""

from __future__ import annotations

import os
from typing import Mapping

KERAS_BACKEND = "KERAS_BACKEND"
THREADS = "MPILEARN_THREADS"
# Set by mpilearn's own launcher so that a relaunched process never relaunches.
LAUNCHED = "MPILEARN_LAUNCHED"
# Set by mpilearn's own launcher when its output is a terminal (value: the
# terminal's width), since ranks under mpiexec never see a terminal themselves.
TTY = "MPILEARN_TTY"
# The mpiexec that `-n N` runs (default: the one beside this Python, else PATH's).
MPIEXEC = "MPILEARN_MPIEXEC"

# Variables the common thread pools read; all get the same cap.
THREAD_POOL_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)

# Any of these means the process was started by an MPI launcher.
MPI_LAUNCHER_VARIABLES = (
    "PMI_RANK",
    "PMI_SIZE",
    "PMIX_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "MPI_LOCALNRANKS",
    "HYDI_CONTROL_FD",
    "MPIR_CVAR_CH3_INTERFACE_HOSTNAME",
)

# Where a launcher announces how many processes it started, and who it is.
# Only the first one set counts: hydra started under SLURM sets PMI_SIZE to
# its ranks while SLURM_STEP_NUM_TASKS counts its per-node proxies.
# SLURM_NTASKS alone is no evidence: a batch script has it too.
LAUNCHER_SIZE_VARIABLES = (
    ("OMPI_COMM_WORLD_SIZE", "Open MPI's mpiexec"),
    ("PMI_SIZE", "a PMI launcher (hydra's mpiexec or srun --mpi=pmi2)"),
    ("SLURM_STEP_NUM_TASKS", "srun"),
)


# The default Keras backend is the first of these that is installed (torch is
# 3x faster than the others on CPU for the demo's 3D convolutions).
BACKEND_PREFERENCE = ("torch", "jax", "tensorflow")


def under_mpi_launcher() -> bool:
    """True when an MPI launcher (mpiexec, mpirun, srun with PMI) started us."""
    if os.environ.get(LAUNCHED):
        return True
    if any(name in os.environ for name in MPI_LAUNCHER_VARIABLES):
        return True
    # srun sets SLURM_PROCID for every task; a batch script alone does not
    # set SLURM_STEP_ID, so this does not trigger inside plain sbatch.
    return "SLURM_PROCID" in os.environ and "SLURM_STEP_ID" in os.environ


def launcher_size(environ: Mapping[str, str] | None = None) -> tuple[int, str, str] | None:
    """(processes, variable, launcher) as the launcher announced them, or None."""
    environ = os.environ if environ is None else environ
    for name, launcher in LAUNCHER_SIZE_VARIABLES:
        value = environ.get(name, "")
        if value:
            return (int(value), name, launcher) if value.isdigit() else None
    return None


def launcher_rank() -> int | None:
    """This process's rank as the launcher announced it, before MPI starts."""
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"):
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return None


def default_threads(local_ranks: int) -> int:
    """Cores of this node shared evenly among the ranks on it, at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, local_ranks))


def cap_thread_pools(threads: int) -> None:
    """Cap every compute thread pool of this process to `threads` threads.

    Variables already set by the user win, so `OMP_NUM_THREADS=4 mpiexec ...`
    keeps working as an HPC user expects.
    """
    for name in THREAD_POOL_VARIABLES:
        os.environ.setdefault(name, str(threads))
    os.environ.setdefault(THREADS, str(threads))


def default_backend() -> str:
    """The first installed of torch, jax, tensorflow ('' when none is)."""
    import importlib.util

    for name in BACKEND_PREFERENCE:
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except (ImportError, ValueError):  # marked absent in sys.modules
            continue
    return ""


def select_keras_backend(name: str | None) -> str:
    """Fix the Keras backend before keras is imported; returns the name used
    ('' when no backend is installed and none was asked for). --backend wins,
    then KERAS_BACKEND, then the first installed."""
    if name:
        os.environ[KERAS_BACKEND] = name
    elif not os.environ.get(KERAS_BACKEND):
        chosen = default_backend()
        if not chosen:
            return ""
        os.environ[KERAS_BACKEND] = chosen
    return os.environ[KERAS_BACKEND]


def keras_loaded_first() -> str:
    """When the user's code imported Keras before mpilearn without choosing a
    backend, Keras took its own default (TensorFlow, or ~/.keras/keras.json),
    which can no longer change in this process: the message that says so and
    how to choose; '' otherwise."""
    import sys

    keras = sys.modules.get("keras")
    if keras is None or os.environ.get(KERAS_BACKEND):
        return ""
    try:
        loaded = keras.backend.backend()
    except AttributeError:  # keras still importing
        return ""
    wanted = default_backend()
    if not wanted or loaded == wanted:
        return ""
    return (
        f"mpilearn: Keras was imported before mpilearn and chose its own default backend, {loaded!r}; "
        f"mpilearn's default here is {wanted!r}. To train on {wanted}, import mpilearn before keras, or set "
        f"KERAS_BACKEND={wanted} (to keep {loaded} and silence this, set KERAS_BACKEND={loaded})."
    )


def skip_jax_import_unless_used(backend: str) -> None:
    """Keras imports jax whenever it is installed (for its Orbax checkpoint
    callback), about a second of CPU per rank, on every rank, even under the
    torch or TensorFlow backend. The command line knows its backend before
    Keras loads, so it marks jax as absent when it will not use it. The
    Python API (mpilearn.fit) leaves the user's process alone."""
    import sys

    if backend != "jax" and "jax" not in sys.modules:
        sys.modules["jax"] = None  # type: ignore[assignment]  # `import jax` now raises ImportError


def pin_cores(local_rank: int, threads: int) -> None:
    """Restrict this process to its own slice of the node's cores.

    XLA's CPU thread pool (the JAX backend) ignores every thread-count
    setting; only CPU affinity, set before jax loads, holds it to the
    --threads budget. Slices wrap around when ranks outnumber cores.
    """
    if not hasattr(os, "sched_getaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    start = (local_rank * threads) % len(cores)
    mine = {cores[(start + i) % len(cores)] for i in range(min(threads, len(cores)))}
    os.sched_setaffinity(0, mine)
