"""mpilearn: train Keras models on many processes over MPI.

Importing the package does not import Keras or a backend, so the command
line can choose the backend and cap threads first.
"""

from __future__ import annotations

import sys
from typing import Any

from ._version import __version__
from . import early_failure
from .env import keras_loaded_first, launcher_rank, select_keras_backend
from .errors import MpilearnError

# The first installed of torch, jax, tensorflow is mpilearn's default Keras
# backend (Keras's own default is TensorFlow); KERAS_BACKEND still wins.
# Keras reads the choice once, when it loads: imported before us, it has
# chosen already, and we say so (rank 0 only).
if "keras" in sys.modules:
    _late = keras_loaded_first()
    if _late and launcher_rank() in (None, 0):
        print(_late, file=sys.stderr, flush=True)
else:
    select_keras_backend(None)

early_failure.install()  # a rank that fails before fit ends the job instead of leaving it waiting

__all__ = ["MpilearnError", "fit", "is_root", "__version__"]


def is_root() -> bool:
    """True on rank 0 of the job, or in a process of its own: the rank that
    runs the callbacks and writes the run directory. Read from the launcher's
    environment, so a script can ask before training starts (to open one
    experiment-tracking run per job, not one per rank)."""
    return launcher_rank() in (None, 0)


def __getattr__(name: str) -> Any:
    # `mpilearn.fit` is the real function (help() shows its signature and every
    # option), imported on first use so that `import mpilearn` stays light.
    if name == "fit":
        from .api import fit

        return fit
    raise AttributeError(f"module 'mpilearn' has no attribute {name!r}")
