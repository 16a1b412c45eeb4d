"""The training options as argparse arguments, generated from options.table()."""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from ..options import cli_options, suggest


class CommandParser(argparse.ArgumentParser):
    """No abbreviations (`--epoch` is not `--epochs`), and an unknown option
    fails with this command's usage and the closest known options."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            known = [s for action in self._actions for s in action.option_strings if s.startswith("--")]
            hint = next((suggest(e.split("=", 1)[0], known) for e in extras if e.startswith("--")), "")
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed, extras


def _help(text: str, default: str) -> str:
    if len(text) > 1 and text[1].islower():  # argparse's style: "training algorithm", but "GEM: ..."
        text = text[0].lower() + text[1:]
    return f"{text.rstrip('.')} (default: {default})".replace("%", "%%")  # argparse %-formats help


def add_option_arguments(parser: argparse.ArgumentParser) -> None:
    """One argument per option of the table, in its group. Every default is
    None ("not given"): the value then comes from the field (or a config file)."""
    groups: dict[str, Any] = {}
    for option in cli_options():
        if option.group not in groups:
            groups[option.group] = parser.add_argument_group(option.group)
        flags = [option.short, option.flag] if option.short else [option.flag]
        kwargs: dict[str, Any] = {
            "dest": option.dest,
            "default": None,
            "help": _help(option.help, option.shown_default()),
        }
        if option.kind == "switch":
            # A switch whose default depends on the run (None) can be turned off too: --no-FLAG.
            kwargs["action"] = argparse.BooleanOptionalAction if option.default is None else "store_true"
        elif option.kind == "append":
            kwargs.update(action="append", metavar=option.metavar)
        elif option.kind == "optional":
            kwargs.update(nargs="?", const=option.const, metavar=option.metavar)
        else:
            kwargs.update(
                type=None if option.type is str else option.type, choices=option.choices, metavar=option.metavar
            )
        groups[option.group].add_argument(*flags, **kwargs)
