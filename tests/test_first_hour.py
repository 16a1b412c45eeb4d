"""What a new user meets first: the backend whatever the import order, data
given as HDF5 paths and globs, a word when nothing is validated, a real
`help(mpilearn.fit)`, the extras' one-line hints, and small print."""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

import pytest
from conftest import run_cli, run_command

from mpilearn import env, optional
from mpilearn.data.filelist import resolve_files
from mpilearn.errors import BackendError, ConfigError, DataError

BACKEND_PROBE = "import sys; {imports}; print('BACKEND', keras.backend.backend(), 'tensorflow' in sys.modules)"


def _probe(imports: str, tmp_path: Path) -> tuple[str, str]:
    # KERAS_BACKEND empty counts as unset, for Keras and mpilearn alike; and no ~/.keras/keras.json choosing for us.
    environment = {"KERAS_BACKEND": "", "KERAS_HOME": str(tmp_path)}
    result = run_command([sys.executable, "-c", BACKEND_PROBE.format(imports=imports)], timeout=240, env=environment)
    assert result.returncode == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("BACKEND"))
    return line, result.stderr


def test_mpilearn_first_picks_the_first_installed_backend_and_tensorflow_stays_out(tmp_path: Path) -> None:
    line, stderr = _probe("import mpilearn, keras", tmp_path)
    assert line == f"BACKEND {env.default_backend()} False", stderr  # torch here; TensorFlow never loaded
    assert "tensorflow" not in stderr.lower() and "oneDNN" not in stderr


def test_keras_first_is_explained_with_how_to_choose(tmp_path: Path) -> None:
    line, stderr = _probe("import keras, mpilearn", tmp_path)
    assert line.startswith("BACKEND tensorflow")  # Keras chose before mpilearn was imported: it cannot change
    assert "Keras was imported before mpilearn" in stderr and "import mpilearn before keras" in stderr
    assert f"KERAS_BACKEND={env.default_backend()}" in stderr


def test_backend_order_env_and_missing_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert env.select_keras_backend(None) == env.BACKEND_PREFERENCE[0] == "torch"  # all installed here: the first
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert env.select_keras_backend(None) == "jax"  # the environment wins over the default
    assert env.select_keras_backend("tensorflow") == "tensorflow"  # --backend wins over both
    monkeypatch.setitem(optional.EXTRAS, "jax", ("no_such_jax_module",))
    monkeypatch.setattr(optional, "available", lambda *names: "no_such_jax_module" not in names and "jax" not in names)
    with pytest.raises(BackendError, match=r"'jax' \(--backend\) is not installed: pip install 'mpilearn\[jax\]'"):
        optional.require_backend("jax")


def test_a_missing_extra_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(optional.EXTRAS, "report", ("no_such_plotting_module",))
    with pytest.raises(ConfigError) as caught:
        optional.require("report", "mpilearn report")
    assert str(caught.value) == (
        "mpilearn report needs no_such_plotting_module, which is not installed: pip install 'mpilearn[report]'"
    )
    lines = optional.extras_lines()
    assert "[report] mpilearn report: not installed: pip install 'mpilearn[report]'" in lines
    assert any(x.startswith("[torch] Keras backend: torch ") for x in lines)


def test_every_install_hint_names_an_extra_of_the_package() -> None:
    import tomllib

    declared = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    extras = set(declared["optional-dependencies"])
    assert set(optional.EXTRAS) <= extras, set(optional.EXTRAS) - extras  # `pip install 'mpilearn[NAME]'` must exist
    assert {"mlflow", "wandb", "tracking"} <= extras


def test_train_data_as_hdf5_paths_and_globs(small_data: Path, tmp_path: Path) -> None:
    files = sorted(str(p) for p in small_data.glob("train_*.h5"))
    assert resolve_files(str(small_data / "train_*.h5"), "--train") == tuple(files)
    assert resolve_files(files[0], "--train") == (files[0],)
    unnamed = tmp_path / "shower"  # an HDF5 file without a suffix is known by its signature
    unnamed.write_bytes(Path(files[0]).read_bytes())
    assert resolve_files(str(unnamed), "--train") == (str(unnamed),)
    with pytest.raises(DataError, match="no file matches"):
        resolve_files(str(tmp_path / "nothing_*.h5"), "--train")
    # The shell expanded an unquoted glob: say to quote it.
    result = run_cli(["train", "--model", "mlp", "--train", *files, "--print-config"], timeout=120)
    assert result.returncode == 2 and "quote a glob" in result.stderr, result.output


def test_training_on_a_glob_without_validation_says_so_and_where_it_writes(small_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli(
        [
            "train",
            "--model",
            "mlp",
            "--train",
            str(small_data / "train_*.h5"),
            "--epochs",
            "1",
            "--batch",
            "32",
            "--run-dir",
            str(run_dir),
        ],
        timeout=240,
    )
    assert result.returncode == 0, result.output
    assert f"writing to {run_dir}" in result.output
    assert "no validation data (--val LIST" in result.output
    assert (run_dir / "history.json").is_file()


def test_help_of_fit_is_the_real_signature_and_doc() -> None:
    import mpilearn
    import mpilearn.api

    assert mpilearn.fit is mpilearn.api.fit
    parameters = inspect.signature(mpilearn.fit).parameters
    assert {"model", "train", "validation", "epochs", "batch_size", "algorithm", "callbacks"} <= set(parameters)
    doc = inspect.getdoc(mpilearn.fit) or ""
    assert "History" in doc and "mpiexec -n 3 python train.py" in doc and "batch_size" in doc


def test_models_list_whole_sentences() -> None:
    from mpilearn.models import describe_builtins

    for name, summary in describe_builtins():
        assert summary.endswith(".") and "  " not in summary, (name, summary)


def test_the_stopping_callback_is_named() -> None:
    import keras
    import numpy as np

    from mpilearn.callbacks import CallbackRunner

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=0)
    runner = CallbackRunner(model, [keras.callbacks.CSVLogger(os.devnull), stopper], epochs=5, steps=None)
    runner.begin()
    assert not runner.epoch_end({"epoch": 1, "train_loss": 1.0, "val_loss": 1.0}, last=False)
    assert runner.epoch_end({"epoch": 2, "train_loss": 1.0, "val_loss": float(np.float32(2.0))}, last=False)
    assert runner.stopped_by == "EarlyStopping(monitor='val_loss', patience=0)"
