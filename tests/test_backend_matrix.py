"""Every algorithm on every installed Keras backend (the torch backend is
covered by the other modules): a short real run each, checked for learning
and for the algorithm's own bookkeeping."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import run_cli

# Every algorithm on a non-torch backend, both backends on several; the whole
# grid would double the suite's start-up cost (TensorFlow and JAX load slowly).
CASES = [("jax", "downpour"), ("tensorflow", "sync"), ("jax", "easgd"), ("tensorflow", "gem"), ("jax", "allreduce"),
         ("tensorflow", "allreduce")]


@pytest.mark.parametrize("backend, algo", CASES, ids=[f"{b}-{a}" for b, a in CASES])
def test_algorithm_on_backend(small_data: Path, tmp_path: Path, backend: str, algo: str) -> None:
    processes = 2
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
