"""DiLoCo and sharded parameter servers on real ranks, against a single
process and a single server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_data, run_cli, train_mlp

ACCURACY_MARGIN = 0.10  # as in test_algorithms_mpi.py


@pytest.fixture(scope="module")
def scale_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training files of 128 events and 256 validation events at 8x8x8."""
    return make_data(tmp_path_factory.mktemp("scale"), files=4, events=128, val_files=2)


def _train(data: Path, run_dir: Path, processes: int, *extra: str) -> dict:
    return train_mlp(data, run_dir, processes, *extra, timeout=300)


def _weights(run_dir: Path) -> list[np.ndarray]:
    import keras

    return [np.asarray(w) for w in keras.saving.load_model(run_dir / "model.keras", compile=False).get_weights()]


def test_sharded_servers_give_the_weights_of_one_server_and_resume_exactly_on_other_servers(
    scale_data: Path, tmp_path: Path
) -> None:
    """sync with 2 workers: 1 epoch on 3 sharded servers (each its slice and its own Adam state), checkpointed,
    then resumed on 2 servers for a second epoch, ends with the weights of 1 server's uninterrupted 2 epochs;
    the first epoch on 3 servers already matches 1 server's first epoch."""
    one = _train(scale_data, tmp_path / "one", 3, "--algo", "sync", "--epochs", "2")
    part = _train(
        scale_data, tmp_path / "part", 5, "--algo", "sync", "--servers", "3", "--epochs", "1", "--checkpoint-every", "1"
    )
    assert part["updates"] * 2 == one["updates"] > 0 and part["samples_seen"] * 2 == one["samples_seen"]
    assert part["epochs"][0]["val_loss"] == pytest.approx(one["epochs"][0]["val_loss"], rel=1e-5)
    resumed = run_cli(
        ["train", "--resume", str(tmp_path / "part"), "-n", "4", "--servers", "2", "--threads", "1", "--epochs", "2"],
        timeout=300,
    )
    assert resumed.returncode == 0 and "resuming" in resumed.output, resumed.output
    for got, want in zip(_weights(tmp_path / "part"), _weights(tmp_path / "one")):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    history = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [row["train_loss"] for row in history["epochs"]] == pytest.approx(
        [row["train_loss"] for row in one["epochs"]], rel=1e-6
    )
    assert history["epochs"][-1]["val_loss"] == pytest.approx(one["epochs"][-1]["val_loss"], rel=1e-5)


@pytest.fixture(scope="module")
def solo(scale_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _train(scale_data, tmp_path_factory.mktemp("solo") / "run", 1, "--epochs", "4")


def test_asynchronous_diloco_learns_like_one_process_with_h_times_fewer_exchanges(
    scale_data: Path, solo: dict, tmp_path: Path
) -> None:
    """--no-synchronous with H 4 for this small data set (2 workers x 8 batches an epoch: 16 master steps in 4
    epochs where downpour makes 64); the other options at their defaults. The default rounds are held to the
    accuracy goal in test_algorithms_mpi.py."""
    asynchronous = ["--algo", "diloco", "--no-synchronous", "--inner-steps", "4"]
    diloco = _train(scale_data, tmp_path / "diloco", 3, *asynchronous, "--epochs", "4")
    best = max(row["val_accuracy"] for row in diloco["epochs"])
    assert best >= max(row["val_accuracy"] for row in solo["epochs"]) - ACCURACY_MARGIN
    assert diloco["updates"] == 16  # one outer step per exchange
    assert diloco["samples_seen"] == solo["samples_seen"]
