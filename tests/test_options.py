"""The training options, declared once on config.py's fields: the command
line, mpilearn.fit and the defaults all come from them; mistyped options
fail with train's usage and the closest option."""

from __future__ import annotations

import dataclasses
import inspect
import types
from pathlib import Path

import numpy as np
import pytest

from mpilearn import options
from mpilearn.api import fit
from mpilearn.cli.main import build_parser, main
from mpilearn.cli.train import config_from_args
from mpilearn.config import DataConfig, ModelConfig, RunConfig
from mpilearn.errors import ConfigError


def _train_parser():  # type: ignore[no-untyped-def]
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    return commands.choices["train"]


def _list(tmp_path: Path) -> str:
    (tmp_path / "train.txt").write_text("a.h5\n")
    return str(tmp_path / "train.txt")


@pytest.mark.parametrize(
    "typed, meant",
    [("--epoch", "--epochs"), ("--epocs", "--epochs"), ("--batch-size", "--batch"), ("--sync_every", "--sync-every")],
)
def test_a_mistyped_option_prints_trains_usage_and_the_closest_option(typed: str, meant: str, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as stop:
        main(["train", "--model", "mlp", typed, "1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: mpilearn train ")  # train's usage, not the top-level one
    assert f"unrecognized arguments: {typed}; did you mean {meant}?" in err


def test_help_shows_every_default() -> None:
    actions = [a for a in _train_parser()._actions if a.dest != "help"]
    assert len(actions) > 50
    missing = [a.option_strings or a.dest for a in actions if "(default: " not in a.help and "(required)" not in a.help]
    assert not missing
    text = _train_parser().format_help()
    assert "--batch BATCH" in text and "(default: 32)" in text and "(default: downpour)" in text


def test_the_command_line_adds_no_default_of_its_own(tmp_path: Path) -> None:
    """Options left out on the command line keep their field's default."""
    args = _train_parser().parse_args(["--model", "calo-cnn", "--train", _list(tmp_path)])
    expected = RunConfig(data=DataConfig(train_files=(str(tmp_path / "a.h5"),)), model=ModelConfig(spec="calo-cnn"))
    assert config_from_args(args) == expected


def test_every_fit_option_is_the_command_lines_option(tmp_path: Path) -> None:
    """Each option that both take, given a non-default value each way, lands on the same field."""
    for option in options.fit_options():
        if not option.flag or option.kind != "value" or option.type not in (int, float):
            continue
        value = (option.default or 1) * 3 if option.type is int else 0.5
        argv = ["--model", "calo-cnn", "--train", _list(tmp_path), option.flag, str(value)]
        if option.name in ("elastic_momentum",):
            continue  # needs another option beside it; checked by its own validation tests
        cli = config_from_args(_train_parser().parse_args(argv))
        keywords = options.build(options.keyword_values({option.fit: value}))
        section = (lambda c: c) if not option.section else (lambda c, s=option.section: getattr(c, s))
        assert getattr(section(cli), option.name) == getattr(section(keywords), option.name) == value, option.flag


def test_fit_takes_the_fields_with_their_defaults_and_refuses_unknown_options() -> None:
    parameters = inspect.signature(fit).parameters
    defaults = RunConfig()
    assert (
        parameters["epochs"].default == defaults.epochs and parameters["batch_size"].default == defaults.data.batch_size
    )
    assert parameters["algorithm"].default == defaults.algorithm.name and "comm" in parameters
    assert "epochs = 5" in (fit.__doc__ or "")
    model = types.SimpleNamespace(optimizer=object(), compiled=True)
    data = (np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(ConfigError, match=r"unknown option 'epoch'; did you mean epochs\?"):
        fit(model, data, epoch=3)
    with pytest.raises(ConfigError, match=r"shard='files' splits HDF5 files .* arrays are split by sample"):
        fit(model, data, shard="files")


def test_every_field_is_an_option_or_says_why_not() -> None:
    table = {(o.section, o.name): o for o in options.table()}
    for section, cls in options.SECTIONS.items():
        for field in dataclasses.fields(cls):
            if field.name in options.SECTIONS:
                continue
            option = table[(section, field.name)]
            assert option.flag or option.fit or field.metadata, field.name
            assert option.help or not option.flag, f"{field.name}: write a comment above the field"
