"""Keras callbacks on the master stop every rank; their files appear and parse;
the outputs of --timeline, --monitor and `mpilearn report` of the same run."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from conftest import Completed, run_cli, run_mpi
from mpilearn.optional import available

REQUESTED_EPOCHS = 20
TENSORBOARD = available("tensorflow", "tensorboard")


@pytest.fixture(scope="module")
def plateau(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Completed]:
    """3 ranks, 20 epochs asked, a learning rate so small that no weight can
    change in float32: val_loss is exactly the same after every epoch, so
    EarlyStopping(patience 0) must stop after epoch 2 on every machine."""
    run = tmp_path_factory.mktemp("plateau") / "run"
    args = [
        "train",
        "--model",
        "mlp",
        "--train",
        str(small_data / "train.txt"),
        "--val",
        str(small_data / "val.txt"),
        "-n",
        "3",
        "--threads",
        "1",
        "--epochs",
        str(REQUESTED_EPOCHS),
        "--batch",
        "16",
        "--lr",
        "1e-30",
        "--early-stopping",
        "val_loss,0",
        "--validate-every",
        "6",
        "--monitor",
        "--timeline",
        str(run / "timeline.json"),
        "--run-dir",
        str(run),
    ]
    if TENSORBOARD:
        args.append("--tensorboard")
    return run, run_cli(args, timeout=240, exact_output=True)  # a hang of any rank fails here


def test_early_stopping_on_a_plateau_stops_every_rank(plateau: tuple[Path, Completed]) -> None:
    run, result = plateau
    assert result.returncode == 0, result.output
    history = json.loads((run / "history.json").read_text())
    epochs = [r for r in history["epochs"] if r.get("kind") != "updates" and not r.get("final")]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert epochs[0]["val_loss"] == epochs[1]["val_loss"]  # the plateau is exact
    assert history["stopped_early"] is True
    # Workers stopped at their next message: far fewer samples than 20 epochs (64 x 4 files each).
    assert history["samples_seen"] < 4 * 4 * 64
    assert "stopping: requested after epoch 2" in result.stdout
    updates = [r for r in history["epochs"] if r.get("kind") == "updates"]
    assert updates and all(r["updates"] % 6 == 0 for r in updates)
    # The resolved configuration is in the run directory.
    assert json.loads((run / "config.json").read_text()) == history["config"]


def test_non_terminal_output_has_no_progress_bar_control_characters(plateau: tuple[Path, Completed]) -> None:
    _, result = plateau
    assert "epoch 1/20" in result.stdout
    assert "\r" not in result.stdout and "\x1b" not in result.stdout


def test_timeline_is_valid_json_with_events_from_every_rank(plateau: tuple[Path, Completed]) -> None:
    run, _ = plateau
    events = json.loads((run / "timeline.json").read_text())["traceEvents"]
    spans = [e for e in events if e["ph"] == "X"]
    assert {e["pid"] for e in spans} == {0, 1, 2}
    names = {(e["pid"], e["name"]) for e in spans}
    assert {(0, "apply"), (0, "validate"), (1, "compute"), (2, "compute"), (1, "exchange")} <= names
    rows = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert rows == {0: "rank 0 master", 1: "rank 1 worker", 2: "rank 2 worker"}
    for pid in rows:  # a rank's loop does one thing at a time: its spans follow each other or nest, never overlap
        row = sorted((e["ts"], -e["dur"]) for e in spans if e["pid"] == pid and e["tid"] == 0)
        assert all(dur <= 0 for _, dur in row)
        open_ends: list[float] = []  # ends of the spans the current one lies in (a part: the validation snapshot)
        for start, negative in row:
            end = start - negative
            while open_ends and start >= open_ends[-1] - 0.2:  # 0.1 us rounding
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1] + 0.2, (pid, start, end, open_ends)
            open_ends.append(end)


def test_monitor_has_samples_of_every_rank(plateau: tuple[Path, Completed]) -> None:
    run, _ = plateau
    monitor = json.loads((run / "monitor.json").read_text())
    assert [r["rank"] for r in monitor["ranks"]] == [0, 1, 2]
    assert [r["role"] for r in monitor["ranks"]] == ["master", "worker", "worker"]
    for record in monitor["ranks"]:
        assert record["rss_mb"] and min(record["rss_mb"]) > 10 and len(record["t"]) == len(record["cpu_percent"])


def _tensorboard_scalars(folder: Path, tag: str) -> list[float]:
    """Values of one scalar in TensorBoard event files, read as TFRecords
    (length, CRC, Event protobuf, CRC) without importing tensorflow."""
    import struct

    import numpy as np
    from tensorboard.compat.proto import event_pb2

    values: list[tuple[int, float]] = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                if value.tag == tag:
                    number = (
                        np.frombuffer(value.tensor.tensor_content, np.float32)
                        if value.tensor.tensor_content
                        else value.tensor.float_val
                    )
                    values.append((event.step, float(number[0])))
    return [v for _, v in sorted(values)]


@pytest.mark.skipif(not TENSORBOARD, reason="TensorBoard is not installed (pip install 'mpilearn[tensorboard]')")
def test_tensorboard_event_files_parse(plateau: tuple[Path, Completed]) -> None:
    run, _ = plateau
    history = json.loads((run / "history.json").read_text())
    rows = [r for r in history["epochs"] if r.get("kind") != "updates" and not r.get("final")]
    for folder, key in (("train", "train_loss"), ("validation", "val_loss")):
        values = _tensorboard_scalars(run / "tensorboard" / folder, "epoch_loss")
        assert values == pytest.approx([r[key] for r in rows], rel=1e-6)


def test_report_of_the_run_writes_non_empty_pngs(plateau: tuple[Path, Completed], tmp_path: Path) -> None:
    run, _ = plateau
    result = run_cli(["report", str(run), "--out", str(tmp_path)], timeout=120)
    assert result.returncode == 0, result.output
    pngs = {p.name: p.stat().st_size for p in tmp_path.glob("*.png")}
    assert {"curves.png", "workers.png", "staleness.png", "timeline.png", "monitor.png"} <= set(pngs)
    assert all(size > 5000 for size in pngs.values())
    summary = (tmp_path / "summary.txt").read_text()
    assert "STOPPED EARLY" in summary and "rank 1 worker" in summary


FIT_SCRIPT = """
import json, sys
import numpy as np
import keras
import mpilearn

class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []
    def on_train_begin(self, logs=None):
        self.calls.append(["train_begin", self.params.get("epochs")])
    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(["epoch_begin", epoch])
    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(["epoch_end", epoch, sorted(logs)])
    def on_train_end(self, logs=None):
        self.calls.append(["train_end"])

out = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.normal(size=(512, 10)).astype("float32")
y = (x[:, 0] + x[:, 1] > 0).astype("int64")
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
recorder = Recorder()
# min_delta 10: no epoch ever "improves" after the first, so both callbacks act deterministically.
callbacks = [
    keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0, min_delta=10.0),
    keras.callbacks.CSVLogger(out + "/log.csv"),
    keras.callbacks.TerminateOnNaN(),
    keras.callbacks.ModelCheckpoint(out + "/best.keras", monitor="val_loss", save_best_only=True),
    keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, min_delta=10.0),
    recorder,
]
history = mpilearn.fit(model, (x, y), validation=(x[:128], y[:128]), epochs=30, batch_size=32, run_dir=out,
                       callbacks=callbacks)
lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
print("RESULT", json.dumps({"epochs": [r["epoch"] for r in history["epochs"] if not r.get("final")],
                            "stopped": history["stopped_early"], "lr": lr, "calls": recorder.calls}))
"""


def test_fit_runs_keras_callbacks_on_the_master_and_stops_every_rank(tmp_path: Path) -> None:
    script = tmp_path / "fit.py"
    script.write_text(FIT_SCRIPT)
    result = run_mpi(3, [sys.executable, str(script), str(tmp_path)], timeout=180)
    assert result.returncode == 0, result.output
    rows = [json.loads(line.split(" ", 1)[1]) for line in result.stdout.splitlines() if line.startswith("RESULT")]
    assert len(rows) == 3  # every rank returned
    assert all(r["epochs"] == [1, 2] and r["stopped"] for r in rows)
    master = rows[0]
    assert master["lr"] == pytest.approx(0.005)  # ReduceLROnPlateau halved the central optimizer's rate once
    assert master["calls"][0] == ["train_begin", 30] and master["calls"][-1] == ["train_end"]
    assert [c[:2] for c in master["calls"][1:-1]] == [
        ["epoch_begin", 0],
        ["epoch_end", 0],
        ["epoch_begin", 1],
        ["epoch_end", 1],
    ]
    assert {"loss", "val_loss", "val_accuracy"} <= set(master["calls"][2][2])
    assert rows[1]["calls"] == []  # callbacks run on the master only
    with open(tmp_path / "log.csv") as handle:
        logged = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in logged] == [0, 1]
    history = json.loads((tmp_path / "history.json").read_text())
    assert float(logged[1]["val_loss"]) == pytest.approx(history["epochs"][1]["val_loss"])
    assert (tmp_path / "best.keras").stat().st_size > 0


def test_a_metric_that_is_not_logged_is_named(tmp_path: Path) -> None:
    import keras

    from mpilearn.callbacks import CallbackRunner
    from mpilearn.errors import ConfigError

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    stopper = keras.callbacks.EarlyStopping(monitor="val_acc")
    runner = CallbackRunner(model, [stopper], epochs=3, steps=4, checked=[stopper])
    runner.begin()
    with pytest.raises(
        ConfigError, match="--early-stopping: 'val_acc' is not logged by this run; logged: loss, val_loss"
    ):
        runner.epoch_end({"epoch": 1, "train_loss": 1.0, "val_loss": 2.0, "updates": 4}, last=False)


def test_tensorboard_missing_fails_with_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from mpilearn import optional
    from mpilearn.errors import ConfigError

    monkeypatch.setattr(optional, "available", lambda *modules: False)
    with pytest.raises(
        ConfigError, match=r"^--tensorboard .*needs tensorboard.*not installed: pip install 'mpilearn\[tensorboard\]'$"
    ):
        optional.require_tensorboard()


def test_reduce_lr_on_plateau_reaches_the_masters_optimizer_step() -> None:
    """The master applies updates through a fast path (fused torch kernels);
    a learning rate lowered by a callback must be the one the next step uses."""
    import keras
    import numpy as np

    from mpilearn import backends
    from mpilearn.callbacks import CallbackRunner

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    backend = backends.for_model(model)
    runner = CallbackRunner(
        model,
        [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0, min_delta=10.0)],
        epochs=3,
        steps=1,
    )
    runner.begin()
    weights = [np.empty(backend.layout.size, dtype=np.float32) for _ in range(3)]
    ones = np.ones(backend.layout.num_trainable, dtype=np.float32)
    backend.get_weights(weights[0])
    backend.apply_gradients(ones)
    backend.get_weights(weights[1])
    runner.epoch_end({"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "updates": 1}, last=False)
    runner.epoch_end({"epoch": 2, "train_loss": 1.0, "val_loss": 1.0, "updates": 1}, last=False)  # plateau: halve
    backend.apply_gradients(ones)
    backend.get_weights(weights[2])
    np.testing.assert_allclose(weights[0] - weights[1], 0.1, rtol=1e-5)
    np.testing.assert_allclose(weights[1] - weights[2], 0.05, rtol=1e-5)
