"""The table of training options, read off the fields of config.py.

Each field of the config dataclasses is one option. Its flag is the field
name with dashes (`sync_every` -> `--sync-every`), its help is the comment
above the field, its type, choices and default are the field's own. The few
fields that differ say so with `field(..., metadata=opt(...))` (see
config.opt). The command line (cli/options.py), `mpilearn.fit` (api.py) and
config files (cli/config_file.py, through the command line's parser) are all
generated from this one table.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import os
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from . import config as config_module
from .config import OPTION, RunConfig
from .errors import ConfigError

# RunConfig's sections; "" is RunConfig itself.
SECTIONS: dict[str, type] = {
    "": RunConfig,
    "model": config_module.ModelConfig,
    "data": config_module.DataConfig,
    "algorithm": config_module.AlgorithmConfig,
    "checkpoint": config_module.CheckpointConfig,
    "callbacks": config_module.CallbacksConfig,
}
# The argparse group of each section's options.
GROUPS = {
    "": "training",
    "data": "data",
    "model": "model",
    "algorithm": "algorithm options",
    "checkpoint": "checkpoints and failures",
    "callbacks": "callbacks and validation",
}
# mpilearn.fit takes a compiled model and callback objects: these sections are the command line's.
NOT_IN_FIT = ("model", "callbacks", "checkpoint")


@dataclass(frozen=True)
class Option:
    """One field of the configuration as an option."""

    section: str  # a key of SECTIONS
    name: str  # the field's name
    flag: str  # "--batch"; "" when the command line does not take it
    short: str  # "-q" or ""
    help: str
    group: str
    default: Any
    kind: Literal["value", "switch", "append", "optional"]
    type: Callable[[str], Any]  # command-line text -> value (before `parse`)
    choices: tuple[Any, ...] | None
    metavar: str | None
    parse: (
        Callable[[Any], Any] | None
    )  # the command line's value -> the field's value, or a dict of the section's fields
    const: Any  # kind "optional": the value of the bare flag
    fit: str  # mpilearn.fit's keyword; "" when fit does not take it

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_") if self.flag else self.name

    def shown_default(self) -> str:
        if self.kind == "switch":
            return "auto" if self.default is None else "on" if self.default else "off"
        if self.default is None or self.default == "" or self.default == ():
            return "none"
        if isinstance(self.default, tuple):
            return ",".join(map(str, self.default))
        return str(self.default)


@functools.lru_cache(maxsize=None)
def _comments() -> dict[tuple[str, str], str]:
    """(class name, field name) -> the comment block right above the field in
    config.py; fields that follow each other with no comment between share the
    comment above. The module is parsed once (inspect per class would parse it per class)."""
    lines = inspect.getsource(config_module).splitlines()
    found: dict[tuple[str, str], str] = {}
    for cls in ast.parse("\n".join(lines)).body:
        if not isinstance(cls, ast.ClassDef):
            continue
        previous = ""
        for node in cls.body:
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                previous = ""
                continue
            block: list[str] = []
            row = node.lineno - 2  # the line above, 0-based
            while row >= 0 and lines[row].strip().startswith("#"):
                block.insert(0, lines[row].strip().lstrip("#").strip())
                row -= 1
            text = " ".join(block) if block else (previous if lines[node.lineno - 2].strip() else "")
            found[(cls.name, node.target.id)] = previous = text
    return found


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)


def _kind_and_type(hint: Any, meta: Mapping[str, Any]) -> tuple[str, Callable[[str], Any], tuple[Any, ...] | None]:
    hint = _unwrap_optional(hint)
    choices = meta.get("choices")
    if typing.get_origin(hint) is Literal:
        return "value", str, tuple(choices or typing.get_args(hint))
    if hint is bool:
        return "switch", bool, None
    if "const" in meta:
        return "optional", str, choices
    if meta.get("append"):
        return "append", str, choices
    if typing.get_origin(hint) is tuple:
        return "value", _comma_list, choices
    if hint in (int, float):
        return "value", hint, choices
    return "value", str, choices


def _option(section: str, cls: type, field: dataclasses.Field[Any], hint: Any, comment: str) -> Option:
    meta: Mapping[str, Any] = field.metadata.get(OPTION, {})
    default = field.default if field.default is not dataclasses.MISSING else dataclasses.MISSING
    kind, convert, choices = _kind_and_type(hint, meta)
    cli = meta.get("cli", True)
    flag = meta.get("flag") or "--" + field.name.replace("_", "-")
    fit = "" if section in NOT_IN_FIT or not meta.get("fit", True) else (meta.get("fit_name") or field.name)
    return Option(
        section=section,
        name=field.name,
        flag=flag if cli else "",
        short=meta.get("short", ""),
        help=meta.get("help") or comment,
        group=meta.get("group") or GROUPS[section],
        default=default,
        kind=kind,  # type: ignore[arg-type]
        type=convert,
        choices=choices,
        metavar=meta.get("metavar"),
        parse=meta.get("parse"),
        const=meta.get("const"),
        fit=fit,
    )


@functools.lru_cache(maxsize=None)
def table() -> tuple[Option, ...]:
    """Every option, in the order of the fields."""
    out: list[Option] = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name in SECTIONS:
                continue  # a section of RunConfig, not an option
            out.append(_option(section, cls, field, hints[field.name], _comments().get((cls.__name__, field.name), "")))
    return tuple(out)


def cli_options() -> tuple[Option, ...]:
    return tuple(o for o in table() if o.flag)


def fit_options() -> tuple[Option, ...]:
    return tuple(o for o in table() if o.fit)


def suggest(word: str, known: list[str]) -> str:
    """'; did you mean X?' for the closest of `known`, or ''."""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def build(values: Mapping[tuple[str, str], Any], base: RunConfig | None = None) -> RunConfig:
    """A RunConfig from (section, field) -> value, over `base` (default: the fields' defaults)."""
    base = base or RunConfig()
    sections: dict[str, dict[str, Any]] = {}
    for (section, name), value in values.items():
        sections.setdefault(section, {})[name] = value
    top = sections.pop("", {})
    for section, changes in sections.items():
        top[section] = dataclasses.replace(getattr(base, section), **changes)
    return dataclasses.replace(base, **top)


def command_line_values(given: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    """Parsed command-line values (dest -> value; None = not given) -> (section, field) -> value for build."""
    values: dict[tuple[str, str], Any] = {}
    for option in cli_options():
        value = given.get(option.dest)
        if value is None or (option.kind == "append" and not value):
            continue
        if option.parse is not None:
            value = option.parse(value)
        if isinstance(value, dict):  # one flag filling several fields (--early-stopping METRIC,PATIENCE)
            values.update({(option.section, k): v for k, v in value.items()})
        else:
            values[(option.section, option.name)] = value
    return values


def keyword_values(given: Mapping[str, Any], caller: str = "mpilearn.fit") -> dict[tuple[str, str], Any]:
    """mpilearn.fit's keyword arguments -> (section, field) -> value for build; an unknown one is refused."""
    by_name = {o.fit: o for o in fit_options()}
    values: dict[tuple[str, str], Any] = {}
    for key, value in given.items():
        option = by_name.get(key)
        if option is None:
            raise ConfigError(f"{caller} got an unknown option {key!r}{suggest(key, list(by_name))}")
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        values[(option.section, option.name)] = value
    return values


def fit_signature(head: list[inspect.Parameter], tail: list[inspect.Parameter]) -> inspect.Signature:
    """`head`, then every fit option as a keyword with its field's default, then `tail`."""
    hints = {}
    for section, cls in SECTIONS.items():
        hints.update({(section, k): v for k, v in typing.get_type_hints(cls).items()})
    options = [
        inspect.Parameter(
            o.fit, inspect.Parameter.KEYWORD_ONLY, default=o.default, annotation=hints[(o.section, o.name)]
        )
        for o in fit_options()
    ]
    return inspect.Signature([*head, *options, *tail])


def fit_doc() -> str:
    """The options of mpilearn.fit with their defaults, for its docstring."""
    rows = [f"    {o.fit} = {o.default!r}: {o.help}" for o in fit_options()]
    return "Options (the fields of mpilearn.config, each with its default):\n\n" + "\n".join(rows)
