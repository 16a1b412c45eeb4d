"""`mpilearn train --config FILE`: TOML/YAML options, command line wins, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from mpilearn.cli.config_file import file_defaults, load_file, parse_with_file
from mpilearn.cli.train import add_train_arguments, config_from_args
from mpilearn.config import RunConfig
from mpilearn.errors import ConfigError

TOML = """
model = "mlp"
train = "{train}"
val = "{val}"
epochs = 3
batch = 16
algo = "easgd"
sync-every = 4
elastic_force = 0.5
lr = 0.01
metrics = ["accuracy", "mse"]
model-arg = {{ units = 32, layers_count = 1 }}
early-stopping = "val_loss,2"
target-metric = ["val_accuracy", ">=", 0.9]
validate-every = 10
background-validation = true
monitor = true
progress = "lines"
"""

FLAGS = [
    "--model",
    "mlp",
    "--epochs",
    "3",
    "--batch",
    "16",
    "--algo",
    "easgd",
    "--sync-every",
    "4",
    "--elastic-force",
    "0.5",
    "--lr",
    "0.01",
    "--metrics",
    "accuracy,mse",
    "--model-arg",
    "units=32",
    "--model-arg",
    "layers_count=1",
    "--early-stopping",
    "val_loss,2",
    "--target-metric",
    "val_accuracy,>=,0.9",
    "--validate-every",
    "10",
    "--background-validation",
    "--monitor",
    "--progress",
    "lines",
]

YAML = """
model: mlp
epochs: 3
batch: 16
algo: easgd
sync_every: 4
elastic-force: 0.5
lr: 0.01
metrics: [accuracy, mse]
model_arg: {units: 32, layers_count: 1}
early_stopping: val_loss,2
target_metric: val_accuracy,>=,0.9
validate_every: 10
background_validation: true
monitor: true
progress: lines
"""


def _lists(tmp_path: Path) -> tuple[Path, Path]:
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text("a.h5\nb.h5\n")
    val.write_text("c.h5\n")
    return train, val


def _resolved(args: list[str]) -> dict:
    result = run_cli(["train", *args, "--print-config"], timeout=60)
    assert result.returncode == 0, result.output
    return json.loads(result.stdout)


def test_toml_file_and_the_same_flags_resolve_to_the_same_config(tmp_path: Path) -> None:
    train, val = _lists(tmp_path)
    (tmp_path / "run.toml").write_text(TOML.format(train=train, val=val))
    from_file = _resolved(["--config", str(tmp_path / "run.toml")])
    from_flags = _resolved([*FLAGS, "--train", str(train), "--val", str(val)])
    assert from_file == from_flags
    assert from_file["algorithm"]["sync_every"] == 4 and from_file["callbacks"]["patience"] == 2
    assert from_file["model"]["model_args"] == [["units", 32], ["layers_count", 1]]
    assert json.loads(json.dumps(RunConfig.from_dict(from_file).to_dict())) == from_file  # a complete RunConfig


def _parse(argv: list[str], path: Path) -> RunConfig:
    return config_from_args(parse_with_file(add_train_arguments, argv, path))


def test_yaml_file_gives_the_same_config_and_command_line_flags_win(tmp_path: Path) -> None:
    train, val = _lists(tmp_path)
    (tmp_path / "run.toml").write_text(TOML.format(train=train, val=val))
    (tmp_path / "run.yaml").write_text(YAML + f"train: {train}\nval: {val}\n")
    assert _parse([], tmp_path / "run.yaml") == _parse([], tmp_path / "run.toml")
    overridden = _parse(["--epochs", "7", "--algo", "downpour"], tmp_path / "run.yaml")
    assert overridden.epochs == 7 and overridden.algorithm.name == "downpour"
    assert overridden.data.batch_size == 16  # the file's value where the command line is silent
    # The mpi_learn positional form on the command line wins over the file's model and lists too.
    positional = _parse(["calo-cnn", str(val), str(train)], tmp_path / "run.yaml")
    assert positional.model.spec == "calo-cnn" and positional.data.train_files == (str(tmp_path / "c.h5"),)


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("epoch = 3\n")
    parser = __import__("argparse").ArgumentParser()
    add_train_arguments(parser)
    with pytest.raises(ConfigError, match=r"bad\.toml: unknown option 'epoch'"):
        file_defaults(parser, tmp_path / "bad.toml")


@pytest.mark.parametrize(
    "text, message",
    [
        ('epochs = "many"\n', r"epochs must be a int, got 'many'"),
        ("epochs = 2.5\n", r"epochs must be a int"),
        ('algo = "adam"\n', r"algo must be one of downpour"),
        ('background-validation = "yes"\n', r"background-validation must be true or false"),
        ("model = [\n", r"not valid TOML"),
    ],
)
def test_bad_values_are_refused_with_the_option_and_the_file(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.toml").write_text(text)
    parser = __import__("argparse").ArgumentParser()
    add_train_arguments(parser)
    with pytest.raises(ConfigError, match=message):
        file_defaults(parser, tmp_path / "bad.toml")


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "run.ini").write_text("[x]\n")
    with pytest.raises(ConfigError, match="unknown format '.ini'"):
        load_file(tmp_path / "run.ini")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_file(tmp_path / "missing.toml")


def test_cli_reports_a_bad_config_file_with_status_2(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("model: mlp\nsync_evry: 2\n")
    result = run_cli(["train", "--config", str(tmp_path / "bad.yaml")], timeout=60)
    assert result.returncode == 2
    assert "unknown option 'sync_evry'" in result.stderr and "bad.yaml" in result.stderr


def test_the_example_config_file_is_valid(tmp_path: Path) -> None:
    train, val = _lists(tmp_path)
    example = Path(__file__).resolve().parents[1] / "examples" / "run.toml"
    config = _parse(["--train", str(train), "--val", str(val)], example)
    assert config.model.spec == "calo-cnn" and config.algorithm.name == "easgd" and config.algorithm.sync_every == 4
    assert (
        config.model.model_kwargs == {"filters": 16, "dropout": 0.2} and config.callbacks.early_stopping == "val_loss"
    )
