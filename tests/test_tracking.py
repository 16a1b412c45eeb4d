"""One tracking run per job: examples/track.py (the script of docs/tracking.md)
gives MLflow's and Weights & Biases' Keras callbacks to mpilearn.fit on rank 0
only (mpilearn.is_root). One 2-rank job logs to MLflow's sqlite store and to
an offline W&B run; each must hold exactly one run, with one value per epoch,
the central model's (the val_loss of history.json)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from conftest import run_command
from mpilearn.optional import available

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "track.py"
TRACKING = available("mlflow", "pandas", "sqlalchemy", "alembic", "wandb", "tensorflow")


def test_the_guide_shows_the_tested_script() -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "tracking.md").read_text(), flags=re.S)
    assert EXAMPLE.read_text() in blocks, "docs/tracking.md: its script is not examples/track.py"


def wandb_records(path: Path) -> list:
    """The records of an offline W&B run file (run-ID.wandb): a 7-byte header,
    then LevelDB-log chunks (32 KiB blocks; chunk = crc32, length, type: 1 full,
    2 first, 3 middle, 4 last) of wandb's protobuf Records."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:7] == b":W&B\xe1\xbe\x00", f"{path}: not a W&B run file of the known version"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # the rest of a block too small for a chunk header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.mark.skipif(not TRACKING, reason="needs pip install 'mpilearn[tracking]' (mlflow-skinny, wandb, tensorflow)")
@pytest.mark.timeout(900)  # 2 Keras ranks on a loaded 2-core machine
def test_mlflow_and_wandb_callbacks_log_one_run_per_job(tmp_path: Path) -> None:
    import mlflow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        "MLFLOW_TRACKING_URI": store,
        "WANDB_MODE": "offline",  # no account, no network: the run is written under WANDB_DIR
        "WANDB_SILENT": "true",
        **{f"WANDB_{name}_DIR": str(tmp_path / "wandb-home" / name) for name in ("CONFIG", "CACHE", "DATA")},
        "WANDB_DIR": str(tmp_path),
    }
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    result = run_command([mpiexec, "-n", "2", sys.executable, str(EXAMPLE)], timeout=600, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    val_loss = [epoch["val_loss"] for epoch in json.loads((run_dir / "history.json").read_text())["epochs"]]
    assert len(val_loss) == 3

    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name("mpilearn").experiment_id])
    assert len(runs) == 1  # not one per rank
    history = client.get_metric_history(runs[0].info.run_id, "val_loss")
    assert [m.step for m in history] == [0, 1, 2]  # one value per epoch
    assert [m.value for m in history] == pytest.approx(val_loss)  # the central model's
    assert "history.json" in [a.path for a in client.list_artifacts(runs[0].info.run_id)]  # logged after fit

    (wandb_run,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")  # not one per rank
    rows = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for record in wandb_records(wandb_run)
        if record.WhichOneof("record_type") == "history"
    ]
    assert [row["epoch/epoch"] for row in rows] == [0, 1, 2]  # one row per epoch
    assert [row["epoch/val_loss"] for row in rows] == pytest.approx(val_loss)
