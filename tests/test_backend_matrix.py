"""Every algorithm on every backend: the JAX and TensorFlow Keras backends
and a plain torch.nn.Module (the Keras torch backend is covered algorithm by
algorithm in test_algorithms_mpi). One real `mpiexec -n 2` job per backend
trains the same model with each algorithm in turn (tests/matrix_job.py), so
a backend starts once per row; each run is checked for learning, for the
samples it saw and for its layer state."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import run_mpi

ALGORITHMS = ("downpour", "sync", "easgd", "gem", "allreduce")
JOB = Path(__file__).with_name("matrix_job.py")

MODULE = """
import torch

class Net(torch.nn.Module):
    def __init__(self, features, num_classes):
        super().__init__()
        self.hidden = torch.nn.Linear(features, 64)
        self.norm = torch.nn.BatchNorm1d(64)
        self.out = torch.nn.Linear(64, num_classes)

    def forward(self, x):  # x arrives as stored in the files: (N, D, H, W, 1)
        x = torch.relu(self.norm(self.hidden(x.flatten(1))))
        return self.out(x)  # logits, as torch losses expect

def build(input_shape, num_classes):
    features = 1
    for size in input_shape:
        features *= size
    return Net(features, num_classes)
"""


def _saved_weights(path: Path) -> dict[str, np.ndarray]:
    """Every array in a .keras file's weights, by its last path component,
    read with h5py (a torch module's state_dict is saved there; no unpickling)."""
    found: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as raw:
        with h5py.File(io.BytesIO(raw.read()), "r") as weights:

            def collect(name: str, obj: object) -> None:  # visititems stops at a non-None return
                if isinstance(obj, h5py.Dataset):
                    found[name.rsplit("/", 1)[-1]] = obj[()]

            weights.visititems(collect)
    return found


@pytest.mark.parametrize("row", ["jax", "tensorflow", "torch-module"])
def test_every_algorithm_on_the_backend(small_data: Path, tmp_path: Path, row: str) -> None:
    backend = "torch" if row == "torch-module" else row
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    if row == "torch-module":
        (tmp_path / "net.py").write_text(MODULE)
        model = ["--model", f"{tmp_path / 'net.py'}:build", "--loss", "cross_entropy"]
    else:
        model = ["--model", "mlp"]
    result = run_mpi(
        2,
        [
            sys.executable,
            str(JOB),
            str(tmp_path / "runs"),
            ",".join(ALGORITHMS),
            *model,
            "--backend",
            backend,
            "--train",
            str(small_data / "train.txt"),
            "--val",
            str(small_data / "val.txt"),
            "--epochs",
            "2",
            "--batch",
            "16",
            "--threads",
            "1",
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.output
    for algorithm in ALGORITHMS:
        run = tmp_path / "runs" / algorithm
        history = json.loads((run / "history.json").read_text())
        assert history["config"]["algorithm"]["name"] == algorithm
        assert history["config"]["backend"] == backend, algorithm
        assert history["samples_seen"] == 2 * 4 * 64, algorithm  # 2 epochs of the 4 files, none lost or repeated
        losses = [row["train_loss"] for row in history["epochs"]]
        assert losses[-1] < losses[0], (algorithm, losses)  # it learned
        assert np.isfinite(history["epochs"][-1]["val_loss"]), algorithm
        if row == "torch-module":  # the saved module has trained BatchNorm statistics, not the initial zeros
            assert np.abs(_saved_weights(run / "model.keras")["norm.running_mean"]).max() > 1e-3, algorithm
