"""Options of `mpilearn train` for callbacks, validation, progress, monitoring
and configuration files (kept apart from train.py's core options)."""
from __future__ import annotations

import argparse
import re
from typing import Any

from ..config import PROGRESS_MODES, TARGET_OPS, CallbacksConfig
from ..errors import ConfigError
from ..optional import require_tensorboard

# --tensorboard without a directory: a folder of the run directory.
DEFAULT_TENSORBOARD = "{run_dir}/tensorboard"

_TARGET = re.compile(r"^\s*([^,<>=\s]+)\s*,?\s*(>=|<=|>|<)\s*,?\s*(\S+)\s*$")


def add_extra_train_arguments(parser: argparse.ArgumentParser) -> None:
    files = parser.add_argument_group("configuration files")
    files.add_argument("--config", metavar="FILE", help="read options from a TOML, YAML or JSON file (command-line flags win)")
    files.add_argument("--print-config", action="store_true", help="print the resolved configuration (JSON) and exit")
    calls = parser.add_argument_group("callbacks and validation")
    calls.add_argument("--early-stopping", metavar="METRIC,PATIENCE", default="",
                       help="Keras EarlyStopping: stop when METRIC (val_loss, val_accuracy, loss) has not improved for PATIENCE epochs")
    calls.add_argument("--target-metric", metavar="METRIC,OP,VALUE", default="",
                       help="stop once METRIC OP VALUE holds, e.g. val_accuracy,>=,0.9")
    calls.add_argument("--tensorboard", nargs="?", const=DEFAULT_TENSORBOARD, default="", metavar="DIR",
                       help="Keras TensorBoard logs into DIR (default RUN_DIR/tensorboard); needs mpilearn[tensorboard]")
    calls.add_argument("--validate-every", type=int, default=0, metavar="N", help="also validate every N master updates")
    calls.add_argument("--background-validation", action="store_true",
                       help="validate a snapshot of the central weights in a thread, so workers never wait for it")
    out = parser.add_argument_group("progress and monitoring")
    out.add_argument("--progress", choices=PROGRESS_MODES, default="auto",
                     help="live bar (on a terminal) or plain log lines (default: bar on a terminal)")
    out.add_argument("-q", "--quiet", action="store_true", help="print only errors and the final line")
    out.add_argument("--monitor", action="store_true", help="sample every rank's CPU and memory (and GPU) into RUN_DIR/monitor.json")


def _early_stopping(text: str) -> tuple[str, int]:
    metric, _, patience = (part.strip() for part in text.partition(","))
    if not metric:
        raise ConfigError(f"--early-stopping must be METRIC,PATIENCE (e.g. val_loss,3), got {text!r}")
    try:
        return metric, int(patience) if patience else 0
    except ValueError:
        raise ConfigError(f"--early-stopping patience must be an integer, got {patience!r} in {text!r}") from None


def _target(text: str) -> tuple[str, str, float]:
    match = _TARGET.match(text)
    if not match:
        raise ConfigError(f"--target-metric must be METRIC,OP,VALUE with OP one of {' '.join(TARGET_OPS)} "
                          f"(e.g. val_accuracy,>=,0.9), got {text!r}")
    metric, op, value = match.groups()
    try:
        return metric, op, float(value)
    except ValueError:
        raise ConfigError(f"--target-metric value must be a number, got {value!r} in {text!r}") from None


def extra_config(args: argparse.Namespace) -> dict[str, Any]:
    """RunConfig keyword arguments of these options."""
    settings: dict[str, Any] = {}
    if args.early_stopping:
        settings["early_stopping"], settings["patience"] = _early_stopping(args.early_stopping)
    if args.target_metric:
        settings["target_metric"], settings["target_op"], settings["target_value"] = _target(args.target_metric)
    if args.tensorboard:
        require_tensorboard()  # before any process starts
        settings["tensorboard"] = args.tensorboard
    return {
        "callbacks": CallbacksConfig(**settings),
        "validate_every": args.validate_every,
        "background_validation": args.background_validation,
        "progress": args.progress,
        "quiet": args.quiet,
        "monitor": args.monitor,
    }
