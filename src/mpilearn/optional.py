"""Optional dependencies: looked for only when a feature needs them, and
refused with an install hint (never at import time of mpilearn)."""
from __future__ import annotations

import importlib.util

from .errors import ConfigError

TENSORBOARD_HINT = "pip install 'mpilearn[tensorboard]' (tensorboard, and tensorflow-cpu whose tf.summary Keras's callback writes with)"


def available(*modules: str) -> bool:
    """True when every module can be imported (without importing it)."""
    return all(importlib.util.find_spec(name) is not None for name in modules)


def require_tensorboard(option: str = "--tensorboard") -> None:
    if not available("tensorflow", "tensorboard"):
        raise ConfigError(f"{option} needs TensorBoard, which is not installed: {TENSORBOARD_HINT}")
