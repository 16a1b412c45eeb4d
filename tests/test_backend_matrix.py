"""Every algorithm on every installed Keras backend (the torch backend is
covered by the other modules): a short real run each, checked for learning
and for the algorithm's own bookkeeping."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import run_cli

ALGORITHMS = [("downpour", 2), ("sync", 2), ("easgd", 2), ("gem", 2), ("allreduce", 2)]


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
@pytest.mark.parametrize("algo, processes", ALGORITHMS, ids=[a for a, _ in ALGORITHMS])
def test_algorithm_on_backend(small_data: Path, tmp_path: Path, backend: str, algo: str, processes: int) -> None:
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    extra = ["--worker-optimizer", "adam", "--elastic-lr", "0.002"] if algo == "easgd" else []
    result = run_cli(
        ["train", "--model", "mlp", "--train", str(small_data / "train.txt"), "--val", str(small_data / "val.txt"),
         "--epochs", "2", "--batch", "16", "-n", str(processes), "--threads", "1", "--backend", backend,
         "--algo", algo, "--run-dir", str(tmp_path / "run"), *extra],
        timeout=300,
    )
    assert result.returncode == 0, result.output
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["config"]["backend"] == backend
    assert history["samples_seen"] >= 2 * 4 * 64
    losses = [row["train_loss"] for row in history["epochs"] if "train_loss" in row]
    assert losses[-1] < losses[0]  # it learned
