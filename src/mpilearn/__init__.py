"""mpilearn: train Keras models on many processes over MPI.

Importing the package does not import Keras or a backend, so the command
line can choose the backend and cap threads first.
"""
from __future__ import annotations

from typing import Any

from .env import select_keras_backend
from .errors import MpilearnError

# torch is mpilearn's default Keras backend (Keras's own default is TensorFlow);
# an explicit KERAS_BACKEND still wins.
select_keras_backend(None)

__version__ = "0.1.0"
__all__ = ["MpilearnError", "fit", "__version__"]


def fit(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Distributed `Model.fit`; see mpilearn.api.fit."""
    from .api import fit as _fit

    return _fit(*args, **kwargs)
