"""Models from outside the project: keras.applications, .keras and JSON files with custom objects."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import run_cli, run_mpi

CUSTOM = """
import keras

@keras.saving.register_keras_serializable(package="user")
class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}

def build(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    x = Scale(0.5)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
"""


@pytest.mark.parametrize("kind", ["keras", "json"])
def test_saved_models_with_custom_layers(small_data: Path, tmp_path: Path, kind: str) -> None:
    (tmp_path / "custom.py").write_text(CUSTOM)
    sys.path.insert(0, str(tmp_path))
    try:
        import keras  # noqa: F401  # loaded before the custom module, which uses it

        import custom  # type: ignore[import-not-found]

        model = custom.build((8, 8, 8, 1), 3)
        path = tmp_path / f"model.{kind}"
        if kind == "keras":
            model.save(path)
        else:
            path.write_text(model.to_json())
    finally:
        sys.path.remove(str(tmp_path))
    result = run_cli(
        [
            "train",
            "--model",
            str(path),
            "--custom-objects",
            str(tmp_path / "custom.py"),
            "--train",
            str(small_data / "train.txt"),
            "--val",
            str(small_data / "val.txt"),
            "--epochs",
            "1",
            "-n",
            "2",
            "--threads",
            "1",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        timeout=180,
    )
    assert result.returncode == 0, result.output
    assert json.loads((tmp_path / "run" / "history.json").read_text())["epochs"]


APPLICATION = """
import sys
import numpy as np, keras, mpilearn
rng = np.random.default_rng(0)
x = rng.normal(size=(48, 32, 32, 3)).astype("float32")
y = rng.integers(0, 4, 48)
model = keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3), classes=4,
                                            include_preprocessing=False, minimalistic=True)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = mpilearn.fit(model, (x, y), validation=(x[:16], y[:16]), epochs=1, batch_size=8, run_dir=sys.argv[1])
print("RESULT", history["samples_seen"])
"""


def test_keras_applications_model_trains(tmp_path: Path) -> None:
    """An architecture from keras.applications (BatchNormalization, depthwise convolutions) on 2 ranks."""
    script = tmp_path / "app.py"
    script.write_text(APPLICATION)
    result = run_mpi(2, [sys.executable, str(script), str(tmp_path / "run")], timeout=240)
    assert result.returncode == 0, result.output
    assert "RESULT 48" in result.stdout


@pytest.mark.parametrize("algo", ["downpour", "easgd"])
def test_gan_with_its_own_train_step_trains_through_weight_deltas(small_data: Path, tmp_path: Path, algo: str) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "calo_gan.py"
    result = run_cli(
        [
            "train",
            "--model",
            f"{example}:build",
            "--train",
            str(small_data / "train.txt"),
            "--val",
            str(small_data / "val.txt"),
            "--epochs",
            "1",
            "-n",
            "2",
            "--threads",
            "1",
            "--algo",
            algo,
            "--run-dir",
            str(tmp_path / "run"),
        ],
        timeout=240,
    )
    assert result.returncode == 0, result.output
    row = json.loads((tmp_path / "run" / "history.json").read_text())["epochs"][-1]
    assert {"val_d_loss", "val_g_loss"} <= set(row)

    import importlib.util

    import keras
    import numpy as np

    spec = importlib.util.spec_from_file_location("calo_gan_example", example)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registers CaloGAN for loading
    trained = keras.saving.load_model(tmp_path / "run" / "model.keras")
    keras.utils.set_random_seed(0)
    initial = module.build((8, 8, 8, 1))
    moved = [np.abs(a - b).max() for a, b in zip(trained.generator.get_weights(), initial.generator.get_weights())]
    assert max(moved) > 1e-4  # the workers' generator steps reached the master


def test_gan_refuses_gradient_only_algorithms(small_data: Path, tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "calo_gan.py"
    result = run_cli(
        [
            "train",
            "--model",
            f"{example}:build",
            "--train",
            str(small_data / "train.txt"),
            "--epochs",
            "1",
            "-n",
            "3",
            "--algo",
            "sync",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        timeout=120,
    )
    assert result.returncode == 2
    assert "trains through its own train_step" in result.stderr and result.output.count("mpilearn: error") == 1
