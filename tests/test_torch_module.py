"""Plain torch.nn.Module models train with the master/worker algorithms and allreduce."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import h5py

import numpy as np
import pytest

from conftest import run_cli

MODULE = '''
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
'''


@pytest.mark.parametrize("algo, processes", [("downpour", 3), ("allreduce", 2)])
def test_torch_module_trains_and_keeps_batchnorm_statistics(small_data: Path, tmp_path: Path, algo, processes) -> None:
    (tmp_path / "net.py").write_text(MODULE)
    result = run_cli(
        ["train", "--model", f"{tmp_path / 'net.py'}:build", "--train", str(small_data / "train.txt"),
         "--val", str(small_data / "val.txt"), "--loss", "cross_entropy", "--epochs", "4", "--batch", "16",
         "-n", str(processes), "--threads", "1", "--algo", algo, "--run-dir", str(tmp_path / "run")],
        timeout=240,
    )
    assert result.returncode == 0, result.output
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["epochs"][-1]["val_accuracy"] > 0.45  # 3 classes: chance is 1/3

    # The saved model holds the module's state_dict; read the running mean without unpickling the module.
    with zipfile.ZipFile(tmp_path / "run" / "model.keras") as archive, archive.open("model.weights.h5") as raw:
        with h5py.File(io.BytesIO(raw.read()), "r") as weights:
            found: dict[str, np.ndarray] = {}

            def collect(name: str, obj: object) -> None:  # visititems stops at a non-None return
                if isinstance(obj, h5py.Dataset):
                    found[name.rsplit("/", 1)[-1]] = obj[()]

            weights.visititems(collect)
    assert np.abs(found["norm.running_mean"]).max() > 1e-3  # trained statistics, not the initial zeros
