"""`mpilearn train --config FILE`: options from a TOML, YAML or JSON file.

Keys are the options of `mpilearn train`, spelled with dashes or
underscores (`epochs = 10`, `sync-every = 4`, `early_stopping = "val_loss,3"`).
Flags on the command line win over the file: the file's values become the
parser's defaults and the command line is parsed again. A key that names no
option is an error that names the key and the file.

    # run.toml
    model = "mlp"
    train = "data/train.txt"
    val = "data/val.txt"
    epochs = 10
    algo = "easgd"
    model-arg = { units = 64 }
    metrics = ["accuracy"]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ConfigError
from .options import CommandParser

# Options that only make sense on the command line.
NOT_IN_FILES = ("help", "config", "print_config", "positional")


def load_file(path: str | Path) -> dict[str, Any]:
    """The mapping a TOML (.toml), YAML (.yaml, .yml) or JSON (.json) file holds."""
    file = Path(path)
    suffix = file.suffix.lower()
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"--config {file}: cannot be read: {exc.strerror or exc}") from None
    try:
        if suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - Python 3.10
                import tomli as tomllib
            values = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            from ..optional import require

            require("yaml", f"--config {file}")
            import yaml

            values = yaml.safe_load(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            raise ConfigError(
                f"--config {file}: unknown format {suffix or '(no extension)'!r}; use .toml, .yaml, .yml or .json"
            )
    except ConfigError:
        raise
    except Exception as exc:  # each parser has its own error class; all mean a malformed file
        raise ConfigError(f"--config {file}: not valid {suffix.lstrip('.').upper()}: {exc}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"--config {file}: expected a table of options at the top, got {type(values).__name__}")
    return values


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every spelling of every option -> its action."""
    names: dict[str, argparse.Action] = {}
    for action in parser._actions:  # argparse has no public list of its actions
        if action.dest in NOT_IN_FILES:
            continue
        spellings = {action.dest, action.dest.replace("_", "-")}
        spellings.update(s.lstrip("-") for s in action.option_strings if s.startswith("--"))
        for spelling in spellings:
            names[spelling] = action
            names[spelling.replace("-", "_")] = action
    return names


def _convert(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    """A file value -> what argparse would have stored for the same flag."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {key} must be {expected}, got {value!r}")

    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(action, argparse._AppendAction):  # --model-arg KEY=VALUE
        if isinstance(value, dict):
            return [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in value.items()]
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in items):
            raise bad("a table of key = value, or a list of 'KEY=VALUE' strings")
        return list(items)
    if action.nargs == "?" and isinstance(value, bool):  # --tensorboard [DIR]
        return action.const if value else action.default
    if isinstance(value, list):  # metrics = ["accuracy", "auc"], early-stopping = ["val_loss", 3]
        value = ",".join(str(v) for v in value)
    if isinstance(value, (dict, bool)):
        raise bad("a single value" if isinstance(value, dict) else f"a value, not {str(value).lower()}")
    try:
        if action.type is None:
            value = str(value)
        elif action.type is int:
            if isinstance(value, float):
                raise ValueError
            value = int(value)
        elif action.type is float:
            value = float(value)
        elif isinstance(value, str):
            value = action.type(value)  # type: ignore[operator]
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise bad(f"a {getattr(action.type, '__name__', 'value')}") from None
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{where}: {key} must be one of {', '.join(map(str, action.choices))}; got {value!r}")
    return value


def file_defaults(parser: argparse.ArgumentParser, path: str | Path) -> dict[str, Any]:
    """The file's options as argparse defaults (dest -> value)."""
    values = load_file(path)
    options = _options(parser)
    defaults: dict[str, Any] = {}
    for key, value in values.items():
        action = options.get(str(key))
        if action is None:
            known = sorted({a.dest.replace("_", "-") for a in options.values()})
            raise ConfigError(f"--config {path}: unknown option {key!r}; options are: {', '.join(known)}")
        defaults[action.dest] = _convert(action, str(key), value, f"--config {path}")
    return defaults


def parse_with_file(
    build: Callable[[argparse.ArgumentParser], None],
    argv: Sequence[str],
    path: str | Path,
    prog: str = "mpilearn train",
) -> argparse.Namespace:
    """Parse `argv` (the arguments after the command) with the file's
    options as defaults, so that the command line wins."""
    parser = CommandParser(prog=prog)
    build(parser)
    parser.set_defaults(**file_defaults(parser, path))
    parsed = parser.parse_args(list(argv))
    if getattr(parsed, "positional", None):
        # MODEL TRAIN_LIST VAL_LIST on the command line beat the file's model, train and val.
        bare = CommandParser(prog=prog)
        build(bare)
        given = bare.parse_args(list(argv))
        for dest in ("model", "train", "val"):
            if getattr(given, dest, None) is None:
                setattr(parsed, dest, None)
    return parsed


def reparse_with_file(
    args: argparse.Namespace, argv: Sequence[str], build: Callable[[argparse.ArgumentParser], None]
) -> argparse.Namespace:
    """`args` of a command that takes --config (whose arguments `build` adds), parsed again with the file's
    options as defaults."""
    command = args.command
    rest = list(argv)[list(argv).index(command) + 1 :]
    parsed = parse_with_file(build, rest, args.config, prog=f"mpilearn {command}")
    parsed.command = command
    return parsed
