"""Read a user's text file, or import a user's Python file (a model builder, a data function, custom objects)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from .errors import MpilearnError


def read_text(file: Path, error: type[MpilearnError], label: str, hint: str = "") -> str:
    """The text of a file the user named; a missing or unreadable file raises
    `error` with `label` (which names the file or option) in front."""
    try:
        return file.read_text()
    except FileNotFoundError:
        raise error(f"{label} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{label} cannot be read: {exc}{hint}") from None


def import_file(file: Path, error: type[MpilearnError], label: str) -> Any:
    """The module of `file`, imported once under a stable name, so that a saved
    model that pickles the user's classes (a torch module inside model.keras)
    can be loaded again after importing the file the same way. Failures raise
    `error` with `label` (which names the file or option) in front."""
    module_name = f"mpilearn_user_{hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise error(f"{label} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[module_name]
        raise error(f"{label}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        del sys.modules[module_name]
        raise error(f"{label} failed to import: {type(exc).__name__}: {exc}") from None
    return module
