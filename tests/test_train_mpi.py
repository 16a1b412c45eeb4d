"""Real multi-rank training runs under mpiexec, compared with one process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, run_mpi

BN_MODEL = """
import keras
def build(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(16)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)
"""


def _load_weights(path: Path) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(path).get_weights()


def _train(data: Path, run_dir: Path, processes: int, *extra: str) -> dict:
    result = run_cli(
        [
            "train",
            "--train",
            str(data / "train.txt"),
            "--val",
            str(data / "val.txt"),
            "--run-dir",
            str(run_dir),
            "-n",
            str(processes),
            "--threads",
            "1",
            *extra,
        ],
        timeout=240,
    )
    assert result.returncode == 0, result.output
    return json.loads((run_dir / "history.json").read_text())


def test_downpour_on_three_ranks_writes_history_and_model(small_data: Path, tmp_path: Path) -> None:
    history = _train(small_data, tmp_path / "run", 3, "--model", "mlp", "--epochs", "2", "--batch", "16")
    assert [row["epoch"] for row in history["epochs"]] == [1, 2]
    assert history["samples_seen"] == 2 * 4 * 64  # every training sample once per epoch
    assert set(history["workers"]) == {"1", "2"}
    assert all(len(w["train_loss"]) == 2 for w in history["workers"].values())
    assert history["train_time_s"] > 0 and history["config"]["algorithm"]["name"] == "downpour"
    # Every rank's start-up, in parts that sum to its total; the job's time is its slowest worker's.
    startup = history["startup"]
    assert [(r["rank"], r["role"]) for r in startup["ranks"]] == [(0, "master"), (1, "worker"), (2, "worker")]
    for rank in startup["ranks"]:
        parts = rank["parts"]
        assert all(v >= 0 for v in parts.values()) and rank["total_s"] > 0, rank
        assert {"launch", "imports", "mpi", "keras", "model", "wait"} <= set(parts), rank
        assert sum(parts.values()) == pytest.approx(rank["total_s"], abs=0.01)
        assert ("first batch" in parts) == (rank["role"] == "worker")
    assert startup["slowest_rank"] in (1, 2)
    assert startup["first_batch_s"] == max(r["total_s"] for r in startup["ranks"][1:])
    # The written model is the central model of the last validation: evaluated again, it scores the same.
    import h5py
    import keras

    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    files = [line for line in (small_data / "val.txt").read_text().split() if line]
    arrays = [h5py.File(small_data / f if not Path(f).is_absolute() else f) for f in files]
    x = np.concatenate([f["features"][:] for f in arrays])
    y = np.concatenate([f["labels"][:] for f in arrays])
    scores = model.evaluate(x, y, batch_size=256, verbose=0, return_dict=True)
    last = history["epochs"][-1]
    assert scores["loss"] == pytest.approx(last["val_loss"], rel=1e-4)
    assert scores["accuracy"] == pytest.approx(last["val_accuracy"], abs=1e-6)


def test_one_worker_matches_one_process_including_batchnorm_state(small_data: Path, tmp_path: Path) -> None:
    """1 master + 1 worker with sync-every 1 applies the same gradients in the
    same order as one process, so the final weights must agree."""
    (tmp_path / "bn.py").write_text(BN_MODEL)
    args = [
        "--model",
        f"{tmp_path / 'bn.py'}:build",
        "--epochs",
        "2",
        "--batch",
        "16",
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
    ]
    _train(small_data, tmp_path / "solo", 1, *args)
    _train(small_data, tmp_path / "pair", 2, *args)
    solo, pair = _load_weights(tmp_path / "solo" / "model.keras"), _load_weights(tmp_path / "pair" / "model.keras")
    for a, b in zip(solo, pair):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The moving statistics trained: they are no longer the initial zeros and ones.
    import keras

    model = keras.saving.load_model(tmp_path / "pair" / "model.keras")
    bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert np.abs(bn.moving_mean.numpy()).max() > 1e-3
    assert np.abs(bn.moving_variance.numpy() - 1.0).max() > 1e-3


API_SCRIPT = """
import json, sys
import numpy as np
import keras
import mpilearn

rng = np.random.default_rng(0)
x = rng.normal(size=(512, 10)).astype("float32")
y = (x[:, 0] + x[:, 1] > 0).astype("int64")
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = mpilearn.fit(model, (x, y), validation=(x[:128], y[:128]), epochs=3, batch_size=32, run_dir=sys.argv[1])
saved = keras.saving.load_model(sys.argv[1] + "/model.keras").get_weights()
same = all(np.array_equal(a, b) for a, b in zip(saved, model.get_weights()))
from mpi4py import MPI  # the test script's own MPI use: to name its result file
with open(f"{sys.argv[1]}/result-{MPI.COMM_WORLD.rank}.json", "w") as out:
    json.dump({"same": same, "epochs": len(history["epochs"]), "acc": history["epochs"][-1]["val_accuracy"],
               "samples": history["samples_seen"],
               # A Keras History, as Model.fit returns: per-epoch lists under the metric names.
               "keras_history": isinstance(history, keras.callbacks.History) and history.model is model,
               "epoch": history.epoch, "val_accuracy": history.history["val_accuracy"],
               "loss": history.history["loss"], "run_dir": str(history.run_dir)}, out)
"""


def test_fit_api_under_mpiexec_leaves_central_weights_in_the_model(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(API_SCRIPT)
    result = run_mpi(3, [sys.executable, str(script), str(tmp_path / "run")], timeout=180)
    assert result.returncode == 0, result.output
    rows = [json.loads(path.read_text()) for path in sorted((tmp_path / "run").glob("result-*.json"))]
    assert len(rows) == 3  # every rank returns
    assert all(r["same"] for r in rows)  # every rank holds the central weights
    assert rows[0]["epochs"] == 3 and rows[0]["samples"] == 3 * 512
    assert rows[0]["acc"] > 0.8  # the task is linear: the model must learn it
    assert all(r["keras_history"] and r["epoch"] == [0, 1, 2] and len(r["loss"]) == 3 for r in rows)
    assert rows[0]["val_accuracy"][-1] == rows[0]["acc"] and rows[0]["run_dir"] == str(tmp_path / "run")
    assert f"writing to {tmp_path / 'run'}" in result.output  # rank 0 says where the run writes


IDLE_SCRIPT = """
import sys, time
from mpilearn.comm import world
import numpy as np
comm = world()
buffer = np.zeros(1000, dtype=np.float32)
if comm.rank == 1:
    time.sleep(3.0)
    comm.send(buffer, 0, 1)
else:
    wall, cpu = time.perf_counter(), time.process_time()
    comm.recv(buffer, source=1)
    print("IDLE", time.process_time() - cpu, time.perf_counter() - wall)
"""


def test_a_waiting_rank_does_not_spin(tmp_path: Path) -> None:
    """MPICH's blocking receive burns a full core while it waits; ours must not
    (a generous bound: a spinning wait uses ~100% of the wall time)."""
    script = tmp_path / "idle.py"
    script.write_text(IDLE_SCRIPT)
    result = run_mpi(2, [sys.executable, str(script)], timeout=60)
    assert result.returncode == 0, result.output
    cpu, wall = map(float, next(line for line in result.stdout.splitlines() if line.startswith("IDLE")).split()[1:])
    assert wall >= 2.5
    assert cpu < 0.25 * wall, f"waiting used {cpu:.2f}s of CPU in {wall:.2f}s"
