"""Command-line texts of the compound options -> the fields they fill
(pure; config.py names them in its fields' metadata)."""

from __future__ import annotations

import ast
import re
from typing import Any, Sequence

from .errors import ConfigError

TARGET_OPS = (">=", ">", "<=", "<")
_TARGET = re.compile(r"^\s*([^,<>=\s]+)\s*,?\s*(>=|<=|>|<)\s*,?\s*(\S+)\s*$")


def model_args(pairs: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """--model-arg KEY=VALUE (repeated): VALUE is a Python literal or a bare word."""
    parsed = []
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-arg must be KEY=VALUE, got {pair!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word is a string
        parsed.append((key, value))
    return tuple(parsed)


def inner_steps(text: Any) -> int | str:
    """--inner-steps H|auto -> a positive integer, or "auto" (algorithms/defaults.py chooses H)."""
    if text == "auto" or isinstance(text, int):
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--inner-steps must be a positive integer or auto, got {text!r}") from None


def early_stopping(text: str) -> dict[str, Any]:
    """--early-stopping METRIC,PATIENCE -> early_stopping and patience."""
    metric, _, patience = (part.strip() for part in text.partition(","))
    if not metric:
        raise ConfigError(f"--early-stopping must be METRIC,PATIENCE (e.g. val_loss,3), got {text!r}")
    try:
        return {"early_stopping": metric, "patience": int(patience) if patience else 0}
    except ValueError:
        raise ConfigError(f"--early-stopping patience must be an integer, got {patience!r} in {text!r}") from None


def target(text: str) -> dict[str, Any]:
    """--target-metric METRIC,OP,VALUE -> target_metric, target_op and target_value."""
    match = _TARGET.match(text)
    if not match:
        raise ConfigError(
            f"--target-metric must be METRIC,OP,VALUE with OP one of {' '.join(TARGET_OPS)} "
            f"(e.g. val_accuracy,>=,0.9), got {text!r}"
        )
    metric, op, value = match.groups()
    try:
        return {"target_metric": metric, "target_op": op, "target_value": float(value)}
    except ValueError:
        raise ConfigError(f"--target-metric value must be a number, got {value!r} in {text!r}") from None
