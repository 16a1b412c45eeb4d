"""One tracking run per job: a tracking library's Keras callback, given to
mpilearn.fit on rank 0 only (mpilearn.is_root), logs one run whatever the
number of ranks. MLflow's local file store stands for any tracking server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import run_mpi

SCRIPT = """
import sys
import mpilearn
import keras
import numpy as np

rng = np.random.default_rng(0)
x = rng.normal(size=(256, 6)).astype("float32")
y = (x[:, 0] > 0).astype("int64")
model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
callbacks = []
if mpilearn.is_root():
    import mlflow

    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment("mpilearn")
    mlflow.start_run(run_name="job")
    callbacks.append(mlflow.keras.MlflowCallback())
history = mpilearn.fit(model, (x, y), validation=(x[:64], y[:64]), epochs=3, batch_size=32, run_dir=sys.argv[2],
                       callbacks=callbacks, quiet=True)
if mpilearn.is_root():
    mlflow.end_run()
"""


@pytest.mark.timeout(900)  # 3 Keras ranks on a loaded 2-core machine
def test_an_mlflow_callback_logs_one_run_per_job(tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    (tmp_path / "track.py").write_text(SCRIPT)
    store = (tmp_path / "mlruns").as_uri()
    result = run_mpi(3, [sys.executable, "track.py", store, str(tmp_path / "run")], timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.output
    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("mpilearn")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # not one per rank
    history = client.get_metric_history(runs[0].info.run_id, "val_loss")
    assert [m.step for m in history] == [0, 1, 2]  # one value per epoch, from the central model
