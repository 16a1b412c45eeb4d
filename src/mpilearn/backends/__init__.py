"""Backend layer: the only package that imports torch, jax or tensorflow.

Each module offers the same `ModelBackend` (see base.py) for one Keras
backend; everything outside sees numpy arrays and flat float32 vectors in
`model.trainable_variables` order.
"""

from __future__ import annotations

import contextlib
import importlib
import random
from typing import Any, Iterator

import numpy as np

from ..errors import BackendError
from .base import ModelBackend

_MODULES = {"torch": "torch_backend", "jax": "jax_backend", "tensorflow": "tensorflow_backend"}


def _module(name: str) -> Any:
    if name not in _MODULES:
        raise BackendError(
            f"Keras backend {name!r} is not supported yet; supported: {', '.join(sorted(_MODULES))} (set --backend or KERAS_BACKEND)"
        )
    return importlib.import_module(f"{__name__}.{_MODULES[name]}")


def active_name() -> str:
    import keras

    return keras.backend.backend()


def for_model(model: Any) -> ModelBackend:
    """The backend adapter for a built, compiled Keras model."""
    return _module(active_name()).KerasModelBackend(model)


@contextlib.contextmanager
def random_state_kept() -> Iterator[None]:
    """Run a block (a validation on a rank that trains) without moving the global
    random states training draws from: Python's, numpy's and the framework's (torch's
    unseeded dropout draws its masks from torch's, and evaluate's data loader takes a
    seed from it). A validation in mid-epoch would otherwise change the masks that
    follow, and a resumed run, which does not repeat it, would part from the original."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with _module(active_name()).random_state_kept():
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def set_threads(threads: int) -> None:
    """Cap this process's compute threads in the active backend."""
    _module(active_name()).set_threads(threads)


def wrap_foreign_model(obj: Any, input_shape: tuple[int, ...]) -> Any:
    """A model of the backend's own framework (a torch.nn.Module) wrapped as
    a Keras model, or None when `obj` is not one."""
    # A user's module subclasses torch's classes from a file of its own: look along the class hierarchy.
    if not any(cls.__module__.split(".")[0] == "torch" for cls in type(obj).__mro__):
        return None
    if active_name() != "torch":
        raise BackendError("a torch.nn.Module needs the torch backend (--backend torch)")
    module = _module("torch")
    return module.wrap_module(obj, input_shape) if module.is_module(obj) else None


def outputs_logits(model: Any) -> bool:
    """True for a wrapped torch.nn.Module, whose outputs are logits as torch
    losses expect; a Keras model outputs what its last layer makes."""
    return active_name() == "torch" and bool(_module("torch").outputs_logits(model))


__all__ = ["ModelBackend", "active_name", "for_model", "outputs_logits", "set_threads", "wrap_foreign_model"]
