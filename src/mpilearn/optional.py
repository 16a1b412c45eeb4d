"""Optional dependencies: looked for only when a feature needs them, and
refused with one line naming the extra to install (never at import time of
mpilearn), in the manner of Optuna's `try_import`."""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata
from typing import TYPE_CHECKING

from .errors import BackendError, ConfigError

if TYPE_CHECKING:
    from .config import RunConfig

# extra -> the modules it brings (import names), in the order reported.
EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "jax": ("jax",),
    "tensorflow": ("tensorflow",),
    "hpo": ("optuna", "scipy", "cmaes", "yaml"),
    "report": ("matplotlib",),
    "monitor": ("psutil",),
    "tensorboard": ("tensorboard", "tensorflow"),
    "yaml": ("yaml",),
    "mlflow": ("mlflow", "pandas", "sqlalchemy", "alembic"),
    "wandb": ("wandb", "tensorflow"),  # its Keras callbacks import TensorFlow
}
# Import name -> distribution name, where they differ (for versions).
_DISTRIBUTIONS = {"yaml": "PyYAML", "tensorflow": "tensorflow-cpu", "mlflow": "mlflow-skinny"}
# What the extras add, for `mpilearn info`.
PURPOSE = {
    "torch": "Keras backend",
    "jax": "Keras backend",
    "tensorflow": "Keras backend",
    "hpo": "mpilearn optimize",
    "report": "mpilearn report",
    "monitor": "--monitor",
    "tensorboard": "--tensorboard",
    "yaml": "YAML config files",
    "mlflow": "MLflow's Keras callback (docs/tracking.md)",
    "wandb": "Weights & Biases' Keras callback (docs/tracking.md)",
}


def available(*modules: str) -> bool:
    """True when every module can be imported (without importing it)."""
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):  # a module marked absent (sys.modules[name] = None)
            return False
    return True


def hint(extra: str) -> str:
    return f"pip install 'mpilearn[{extra}]'"


def require(extra: str, feature: str) -> None:
    """Raise one line naming the extra when `feature` cannot run without it."""
    missing = [name for name in EXTRAS[extra] if not available(name)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(f"{feature} needs {', '.join(missing)}, which {verb} not installed: {hint(extra)}")


def require_backend(name: str | None) -> str:
    """The Keras backend a run will use (--backend, KERAS_BACKEND, else the
    first installed of torch, jax, tensorflow), refused when not installed."""
    from .env import BACKEND_PREFERENCE, KERAS_BACKEND, default_backend

    chosen = name or os.environ.get(KERAS_BACKEND) or default_backend()
    if not chosen:
        raise BackendError("no Keras backend is installed: " + " or ".join(hint(b) for b in BACKEND_PREFERENCE))
    if chosen in EXTRAS and not available(chosen):
        source = "--backend" if name else KERAS_BACKEND if os.environ.get(KERAS_BACKEND) else "default"
        raise BackendError(f"Keras backend {chosen!r} ({source}) is not installed: {hint(chosen)}")
    return chosen


def require_for_run(config: RunConfig, *, backend: bool = True) -> None:
    """Every extra the options of a run need, checked before any process starts."""
    if backend:
        require_backend(config.backend)
    if config.callbacks.tensorboard:
        require_tensorboard()
    if config.monitor:
        require("monitor", "--monitor")


def require_tensorboard(option: str = "--tensorboard") -> None:
    require("tensorboard", f"{option} (Keras's callback writes with tensorflow's tf.summary, whatever the backend)")


def version(module: str) -> str:
    """The installed version of an import name, or '' when it is not installed."""
    for name in (_DISTRIBUTIONS.get(module, module), module):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "" if not available(module) else "?"


def extras_lines() -> list[str]:
    """One line per extra: what it enables, and its versions or the install hint."""
    lines = []
    for extra, modules in EXTRAS.items():
        found = [f"{m} {version(m)}" for m in modules if available(m)]
        state = ", ".join(found) if len(found) == len(modules) else f"not installed: {hint(extra)}"
        lines.append(f"[{extra}] {PURPOSE[extra]}: {state}")
    return lines
