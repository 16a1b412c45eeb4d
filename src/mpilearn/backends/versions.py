"""The active Keras backend and its version, for `mpilearn info`."""

from __future__ import annotations

import importlib

_PACKAGES = {"torch": "torch", "jax": "jax", "tensorflow": "tensorflow", "numpy": "numpy"}


def backend_version() -> tuple[str, str]:
    """(backend name, version of the package behind it)."""
    import keras

    name = keras.backend.backend()
    package = _PACKAGES.get(name, name)
    try:
        version = str(getattr(importlib.import_module(package), "__version__", "unknown"))
    except ImportError as exc:
        version = f"not importable ({exc})"
    return name, version
