"""Validation streamed from disk and spread over the ranks, against one model.evaluate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import run_mpi

# A summable metric of our own: the mean squared error, kept as a sum and a count.
CUSTOM_METRIC = """
import keras


class SquaredError(keras.metrics.Metric):
    def __init__(self, name="squared_error", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable((), "zeros", name="total")
        self.count = self.add_variable((), "zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total.assign_add(keras.ops.sum(keras.ops.square(y_true - y_pred)))
        self.count.assign_add(keras.ops.cast(keras.ops.shape(y_true)[0], "float32"))

    def result(self):
        return self.total / self.count


def build(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4, 4)), keras.layers.Flatten(), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy",
                  metrics=["accuracy", keras.metrics.AUC(name="auc"), keras.metrics.Precision(name="precision"),
                           keras.metrics.Recall(name="recall"), SquaredError()])
    return model
"""

# Under mpiexec -n 3, validation spread over the workers, with --validate-every and a timeline: downpour
# (asynchronous master), sync (synchronous master) and allreduce (3 peers); rank 0 then
# evaluates the returned central model on every validation sample with model.evaluate.
SPREAD_SCRIPT = """
import json, sys
import h5py, numpy as np
import mpilearn
sys.path.insert(0, sys.argv[1])
from metric import build

folder = sys.argv[1]
x = np.concatenate([h5py.File(f"{folder}/val_{i}.h5")["features"][:] for i in range(3)])
y = np.concatenate([h5py.File(f"{folder}/val_{i}.h5")["labels"][:] for i in range(3)])
out = {}
for algorithm in ("downpour", "sync", "allreduce"):
    model = build()
    history = mpilearn.fit(model, f"{folder}/train.txt", validation=f"{folder}/val.txt", epochs=1, batch_size=16,
                           algorithm=algorithm, validate_on="workers", validate_every=5, memory_limit="64K",
                           quiet=True, run_dir=f"{folder}/{algorithm}", timeline=f"{folder}/{algorithm}.json")
    reference = model.evaluate(x, y, batch_size=256, verbose=0, return_dict=True)
    out[algorithm] = {"history": {"epochs": history["epochs"]}, "reference": {k: float(v) for k, v in reference.items()}}
from mpilearn.comm import world
if world().rank == 0:
    print("RESULT " + json.dumps(out))
"""


def _write(path: Path, samples: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, samples)
    features = rng.normal(size=(samples, 4, 4)).astype(np.float32) + labels[:, None, None] * 0.5
    with h5py.File(path, "w") as handle:
        handle["features"] = features
        handle["labels"] = np.eye(3, dtype=np.float32)[labels]


def _data(folder: Path) -> Path:
    for i in range(4):
        _write(folder / f"train_{i}.h5", 48, i)
    for i in range(3):  # 3 x 1000 samples of 76 bytes: 223 KiB, over three times the 64K memory limit
        _write(folder / f"val_{i}.h5", 1000, 10 + i)
    (folder / "train.txt").write_text("".join(f"{folder}/train_{i}.h5\n" for i in range(4)))
    (folder / "val.txt").write_text("".join(f"{folder}/val_{i}.h5\n" for i in range(3)))
    (folder / "metric.py").write_text(CUSTOM_METRIC)
    return folder


def _metric_module(folder: Path):
    sys.path.insert(0, str(folder))
    try:
        import metric
    finally:
        sys.path.remove(str(folder))
    return metric


def test_summed_metric_states_of_slices_equal_one_evaluate(tmp_path: Path) -> None:
    """Loss, accuracy, AUC, precision, recall and a custom metric, with sample
    weights: three uneven slices streamed, their states summed."""
    from mpilearn.data.sources import ArraySource
    from mpilearn.data.validation import ValidationReader, validation_pieces
    from mpilearn.roles.validation import combine, shard_state

    metric = _metric_module(_data(tmp_path))
    model = metric.build()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(700, 4, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 700)]
    w = rng.uniform(0.5, 2.0, 700).astype(np.float32)
    reference = model.evaluate(x, y, sample_weight=w, batch_size=256, verbose=0, return_dict=True)
    source = ArraySource(x, y, "validation data", w)
    states = [
        shard_state(model, ValidationReader(source, validation_pieces(source.counts, 3, r), 32, 2)) for r in range(3)
    ]
    got = combine(model, np.sum(states, axis=0))
    assert set(got) == set(reference) == {"loss", "accuracy", "auc", "precision", "recall", "squared_error"}
    for name, value in reference.items():
        assert got[name] == pytest.approx(float(value), rel=1e-6, abs=1e-6), name
    averaged = np.mean([combine(model, s)["auc"] for s in states])
    assert abs(averaged - float(reference["auc"])) > 1e-6  # averaging results would not do


def test_streamed_reader_holds_batches_within_the_memory_limit(tmp_path: Path) -> None:
    from mpilearn.data.sources import Hdf5Source
    from mpilearn.data.validation import ValidationReader, validation_pieces
    from mpilearn.errors import DataError

    folder = _data(tmp_path)
    source = Hdf5Source([str(folder / f"val_{i}.h5") for i in range(3)])
    reads: list[int] = []
    read = source.read
    source.read = lambda part, start, stop: reads.append(stop - start) or read(part, start, stop)  # type: ignore[method-assign]
    limit = 64 * 1024
    reader = ValidationReader(source, validation_pieces(source.counts, 1, 0), 16, 2, memory_limit=limit)
    labels = np.concatenate([batch[1] for batch in reader.batches()])
    expected = np.concatenate([h5py.File(folder / f"val_{i}.h5")["labels"][:] for i in range(3)])
    np.testing.assert_array_equal(labels, expected)  # every sample once, in file order
    assert max(reads) * source.signature.sample_bytes() * 5 <= limit  # 2 read ahead + 3 in flight
    with pytest.raises(DataError, match="validation samples of rank 0 needs 222.7 KiB but --memory-limit is 64.0 KiB"):
        ValidationReader(source, validation_pieces(source.counts, 1, 0), 16, 2, preload=True, memory_limit=limit)


def test_a_metric_that_cannot_be_summed_validates_on_rank_0(tmp_path: Path) -> None:
    import keras

    from mpilearn.comm.topology import Topology
    from mpilearn.config import RunConfig
    from mpilearn.data.sources import ArraySource
    from mpilearn.roles.spread import choose_placement

    class Largest(keras.metrics.Metric):
        def __init__(self, name: str = "largest", **kwargs: object) -> None:
            super().__init__(name=name, **kwargs)
            self.top = self.add_variable((), "zeros", aggregation="only_first_replica", name="top")

        def update_state(self, y_true, y_pred, sample_weight=None):  # type: ignore[no-untyped-def]
            self.top.assign(keras.ops.maximum(self.top, keras.ops.max(y_pred)))

        def result(self):  # type: ignore[no-untyped-def]
            return self.top

    metric = _metric_module(_data(tmp_path))
    source = ArraySource(np.zeros((8, 4, 4), np.float32), np.eye(3, dtype=np.float32)[np.arange(8) % 3])
    config, layout = RunConfig(), Topology(3)
    assert choose_placement(config, layout, metric.build(), source) == ("workers", [])
    assert choose_placement(config, Topology(2), metric.build(), source) == ("master", [])  # auto: one worker
    model = metric.build()
    model.compile(loss="categorical_crossentropy", metrics=["accuracy", Largest()])
    placement, reasons = choose_placement(config, layout, model, source)
    assert placement == "master" and reasons == ["metric 'largest' keeps only_first_replica state"]


def test_spread_validation_under_mpiexec_equals_model_evaluate(tmp_path: Path) -> None:
    """A validation set three times the memory limit, streamed and spread over
    2 workers (asynchronous and synchronous masters: one snapshot for both) and
    over 3 peers, gives what model.evaluate on rank 0 gives, to 1e-6."""
    folder = _data(tmp_path)
    (folder / "spread.py").write_text(SPREAD_SCRIPT)
    result = run_mpi(3, [sys.executable, str(folder / "spread.py"), str(folder)], timeout=300)
    assert result.returncode == 0, result.output
    runs = json.loads(result.stdout.split("RESULT ", 1)[1])
    for algorithm, run in runs.items():
        rows = run["history"]["epochs"]
        last = rows[-1]
        assert last["epoch"] == 1 and "final" not in last, (algorithm, last)
        for name, value in run["reference"].items():
            assert last[f"val_{name}"] == pytest.approx(value, rel=1e-6, abs=1e-6), (algorithm, name)
        updates_rows = [row for row in rows if row.get("kind") == "updates"]
        assert updates_rows and all(np.isfinite(row["val_loss"]) for row in updates_rows), algorithm
        trace = json.loads((folder / f"{algorithm}.json").read_text())
        validating = {event["pid"] for event in trace["traceEvents"] if event.get("name") == "validate"}
        assert {1, 2} <= validating, algorithm  # ranks 1 and 2 validate their shares
