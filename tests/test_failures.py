"""Never hang, never lose work: failures on one rank end every rank quickly,
with the cause; checkpoints resume exactly."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import make_data, run_cli, run_mpi
from jobs import WatchedJob

# A failed job must be gone within this many seconds of the failure.
STOP_LIMIT_S = 10.0


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("fail"), files=4, events=256)


class Job(WatchedJob):
    """A self-launched training run whose output we can watch while it runs."""

    def __init__(self, args: list[str], log: Path) -> None:
        super().__init__([sys.executable, "-m", "mpilearn", *args], log)

    def pid_of(self, rank: int) -> int:
        return self.rank(rank)[0]


def _train_args(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
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


@pytest.mark.serial  # times the stop against the clock
@pytest.mark.parametrize("pipeline", ["off", "on"])  # on: killed while its exchange is in flight
def test_worker_killed_mid_epoch_ends_the_job(data: Path, tmp_path: Path, pipeline: str) -> None:
    args = _train_args(data, tmp_path / "run", "-n", "3", "--epochs", "50", "--batch", "8", "--pipeline", pipeline)
    job = Job(args, tmp_path / "log")
    worker = job.pid_of(2)
    job.wait_for(r"epoch 1/50")
    os.kill(worker, signal.SIGKILL)
    status, seconds = job.finish(60)
    print(f"worker SIGKILL: job gone {seconds:.2f}s after the kill, exit {status}")
    assert status != 0
    assert seconds < STOP_LIMIT_S, job.text()
    assert str(worker) in job.text()  # the launcher names the dead process; the ranks line maps it to rank 2


@pytest.mark.serial  # times the stop against the clock
def test_stuck_worker_is_detected_by_the_master(data: Path, tmp_path: Path) -> None:
    job = Job(
        _train_args(data, tmp_path / "run", "-n", "3", "--epochs", "50", "--batch", "8", "--timeout", "3"),
        tmp_path / "log",
    )
    worker = job.pid_of(1)
    job.wait_for(r"epoch 1/50")
    os.kill(worker, signal.SIGSTOP)  # alive but silent: no launcher notices this
    stopped = time.monotonic()
    status, _ = job.finish(60)
    seconds = time.monotonic() - stopped
    print(f"worker SIGSTOP with --timeout 3: job gone {seconds:.2f}s after the stop, exit {status}")
    assert status != 0
    assert seconds < 3 + STOP_LIMIT_S, job.text()
    assert re.search(
        r"mpilearn: error on rank 0 \(master\): worker rank 1( \(validating\))? sent nothing for \d+s \(--timeout 3\)",
        job.text(),
    )
    assert job.text().count("mpilearn: error") == 1


MASTER_RAISES = """
import sys
import numpy as np, keras, mpilearn

def exploding_metric(y_true, y_pred):
    raise RuntimeError("validation exploded")

rng = np.random.default_rng(0)
x = rng.normal(size=(256, 4)).astype("float32"); y = (x[:, 0] > 0).astype("int64")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=[exploding_metric])
mpilearn.fit(model, (x, y), validation=(x, y), epochs=20, run_dir=sys.argv[1])
"""


def test_exception_in_the_master_ends_every_rank_once(tmp_path: Path) -> None:
    script = tmp_path / "master_raises.py"
    script.write_text(MASTER_RAISES)
    result = run_mpi(3, [sys.executable, str(script), str(tmp_path / "run")], timeout=240)
    assert result.returncode != 0
    assert "mpilearn: error on rank 0 (master): validation exploded" in result.output
    assert result.output.count("mpilearn: error") == 1
    assert not (tmp_path / "run" / "model.keras").exists()


FAILS_BEFORE_FIT = """
import mpilearn
import keras
import numpy as np

if mpilearn.is_root():
    raise RuntimeError("the tracking server is down")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
mpilearn.fit(model, (np.zeros((64, 4), "float32"), np.zeros(64, "int64")), epochs=1, run_dir="run")
"""


def test_a_script_failing_on_one_rank_before_fit_ends_the_job(tmp_path: Path) -> None:
    """Rank 1 waits for rank 0 in MPI's start-up (inside fit), which nothing times out: rank 0's
    uncaught exception must end the job rather than leave rank 1 there."""
    (tmp_path / "early.py").write_text(FAILS_BEFORE_FIT)
    result = run_mpi(2, [sys.executable, "early.py"], timeout=120, cwd=tmp_path)
    assert result.returncode != 0
    assert "RuntimeError: the tracking server is down" in result.output
    assert "mpilearn: rank 0 failed before training started (RuntimeError above)" in result.output


def _poison(data: Path, tmp_path: Path) -> Path:
    """A copy of the data whose third training file holds one NaN sample."""
    poisoned = tmp_path / "poisoned"
    poisoned.mkdir()
    files = [Path(p) for p in (data / "train.txt").read_text().split()]
    for index, source in enumerate(files):
        target = poisoned / source.name
        target.write_bytes(source.read_bytes())
        if index == 2:
            with h5py.File(target, "r+") as handle:
                handle["features"][5] = np.nan
    (poisoned / "train.txt").write_text("\n".join(str(poisoned / f.name) for f in files) + "\n")
    (poisoned / "val.txt").write_text((data / "val.txt").read_text())
    return poisoned


def test_nan_loss_names_rank_batch_and_file(data: Path, tmp_path: Path) -> None:
    poisoned = _poison(data, tmp_path)
    result = run_cli(_train_args(poisoned, tmp_path / "run", "-n", "3", "--epochs", "1"), timeout=120)
    assert result.returncode != 0
    assert re.search(
        r"worker rank \d: loss is nan at epoch 1, batch \d+ \(batch starts in file .*train_00[0-9]\.h5\)", result.output
    ), result.output
    assert result.output.count("mpilearn: error") == 1


def test_skip_bad_batches_counts_them(data: Path, tmp_path: Path) -> None:
    poisoned = _poison(data, tmp_path)
    result = run_cli(
        _train_args(poisoned, tmp_path / "run", "-n", "2", "--epochs", "1", "--skip-bad-batches"), timeout=120
    )
    assert result.returncode == 0, result.output
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["skipped_batches"] == 1
    assert np.isfinite(history["epochs"][-1]["val_loss"])


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(path).get_weights()


@pytest.mark.parametrize("algo, processes", [("sync", 3), ("allreduce", 2)])
def test_sigkill_then_resume_gives_the_uninterrupted_weights(data, tmp_path, algo, processes) -> None:
    common = [
        "-n",
        str(processes),
        "--algo",
        algo,
        "--epochs",
        "3",
        "--batch",
        "16",
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
        "--model-arg",
        "dropout=0.2",
    ]
    full = run_cli(_train_args(data, tmp_path / "full", *common), timeout=240)
    assert full.returncode == 0, full.output

    job = Job(_train_args(data, tmp_path / "part", *common, "--checkpoint-every", "1"), tmp_path / "log")
    job.wait_for(r"checkpoint .*ckpt-00001")
    job.kill()  # mid-epoch 2
    assert not (tmp_path / "part" / "model.keras").exists()
    resumed = run_cli(
        ["train", "--resume", str(tmp_path / "part"), "-n", str(processes), "--threads", "1"], timeout=240
    )
    assert resumed.returncode == 0, resumed.output
    assert "resuming" in resumed.output
    for a, b in zip(_weights(tmp_path / "full" / "model.keras"), _weights(tmp_path / "part" / "model.keras")):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    history = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [row["epoch"] for row in history["epochs"]] == [1, 2, 3]


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _rank_pids(job: Job) -> list[int]:
    return [int(pid) for pid in re.findall(r"pid (\d+)@", job.wait_for(r"ranks: (.*)").group(1))]


@pytest.mark.serial  # times the stop against the clock
def test_sigterm_to_one_worker_checkpoints_stops_all_and_resumes(data: Path, tmp_path: Path) -> None:
    """A batch system's SIGTERM reaching one rank: the job trains to the epoch
    end, writes a checkpoint, every rank exits 143 and says how to resume;
    resuming finishes the run, and resuming a finished run ends at once."""
    run_dir = tmp_path / "run"
    args = _train_args(data, run_dir, "-n", "3", "--epochs", "40", "--batch", "8", "--checkpoint-every", "5")
    job = Job(args, tmp_path / "log")
    pids = _rank_pids(job)
    job.wait_for(r"epoch 1/40")
    os.kill(pids[2], signal.SIGTERM)
    status, seconds = job.finish(120)
    print(f"SIGTERM to worker rank 2: exit {status} {seconds:.2f}s later")
    assert status == 128 + signal.SIGTERM, job.text()
    assert _gone_within(pids, STOP_LIMIT_S), job.text()
    found = re.findall(
        r"mpilearn: interrupted by SIGTERM.*newest checkpoint \S*ckpt-(\d+); resume with: mpilearn train --resume "
        + re.escape(str(run_dir)),
        job.text(),
    )
    assert len(found) == 1 and 2 <= int(found[0]) < 40, (
        job.text()
    )  # written at the next epoch end, not at --checkpoint-every's
    assert "Traceback" not in job.text() and "mpilearn: error" not in job.text(), job.text()
    assert not (run_dir / "model.keras").exists()

    resume = ["train", "--resume", str(run_dir), "-n", "3", "--threads", "1", "--epochs", str(int(found[0]) + 1)]
    resumed = run_cli(resume, timeout=180)
    assert resumed.returncode == 0 and (run_dir / "model.keras").exists(), resumed.output
    again = run_cli(resume, timeout=60)  # a requeued job script that always passes --resume
    assert again.returncode == 0, again.output
    assert re.search(r"already finished: \d+ of \d+ epochs trained; nothing to do", again.output), again.output
    assert "ranks:" not in again.output  # no ranks were started


@pytest.mark.serial  # times the stop against the clock
def test_ctrl_c_stops_every_rank_without_mpich_alarm(data: Path, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the launcher's process group), allreduce, no
    checkpoints: stops within a step, exit 130, one line, no MPICH assert."""
    job = Job(
        _train_args(data, tmp_path / "run", "-n", "2", "--algo", "allreduce", "--epochs", "50", "--batch", "8"),
        tmp_path / "log",
    )
    pids = _rank_pids(job)
    job.wait_for(r"epoch 1/50")
    os.killpg(job.process.pid, signal.SIGINT)
    status, seconds = job.finish(60)
    print(f"Ctrl-C: exit {status} {seconds:.2f}s later")
    assert status == 128 + signal.SIGINT, job.text()
    assert _gone_within(pids, STOP_LIMIT_S), job.text()
    assert job.text().count("mpilearn: interrupted by SIGINT") == 1, job.text()
    assert "checkpoints are off" in job.text()
    assert "assert" not in job.text() and "Traceback" not in job.text(), job.text()


def test_resume_errors(data: Path, tmp_path: Path) -> None:
    missing = run_cli(["train", "--resume", str(tmp_path / "nothing"), "-n", "2"], timeout=60)
    assert missing.returncode == 2 and "no checkpoint in" in missing.stderr
    first = run_cli(
        _train_args(data, tmp_path / "run", "-n", "2", "--epochs", "1", "--checkpoint-every", "1"), timeout=120
    )
    assert first.returncode == 0, first.output
    changed = run_cli(
        ["train", "--resume", str(tmp_path / "run"), "-n", "2", "--epochs", "2", "--batch", "16"], timeout=60
    )
    assert changed.returncode == 2 and "--batch 16 differs from the run's 32" in changed.stderr, changed.output
    state_file = next((tmp_path / "run" / "checkpoints").glob("ckpt-*")) / "state.json"
    state = json.loads(state_file.read_text())
    state["config"]["model"]["model_args"] = [["units", 7]]  # same spec, other shapes
    state_file.write_text(json.dumps(state))
    other = run_cli(["train", "--resume", str(tmp_path / "run"), "-n", "2", "--epochs", "2"], timeout=120)
    assert other.returncode == 2, other.output
    assert "was written by a different model" in other.stderr
    assert other.output.count("mpilearn: error") == 1


@pytest.mark.serial  # times the stop against the clock
def test_a_rank_stuck_at_the_end_is_named_within_the_timeout(data: Path, tmp_path: Path) -> None:
    """MPILEARN_INJECT_FAULT=hang@2:end stops rank 2 after its training loop:
    no launcher notices; rank 0's bounded wait at the end names it."""
    result = run_cli(
        _train_args(data, tmp_path / "run", "-n", "3", "--epochs", "1", "--timeout", "5"),
        timeout=240,
        env={"MPILEARN_INJECT_FAULT": "hang@2:end"},
    )
    print(f"rank 2 stuck at the end, --timeout 5: exit {result.returncode} after {result.seconds:.1f}s")
    assert result.returncode != 0
    assert re.search(
        r"mpilearn: error on rank 0 \(master\): rank 0 waited 5s for rank 2 in the end of training", result.output
    ), result.output
    assert result.output.count("mpilearn: error") == 1, result.output


@pytest.mark.parametrize("fault", ["hang", "kill"])
@pytest.mark.timeout(600)  # 2 Keras ranks on a loaded 2-core machine
def test_a_rank_failing_at_start_up_ends_the_job(data: Path, tmp_path: Path, fault: str) -> None:
    """A rank stopped at start-up (SIGSTOP) is named as soon as its beats stop
    (30 s, far below the 600 s start-up limit of old); a rank killed
    there ends the job through the launcher. The others beat meanwhile, so a
    slow start-up is no failure."""
    result = run_cli(
        _train_args(data, tmp_path / "run", "-n", "2", "--epochs", "1", "--timeout", "5"),
        timeout=240,
        env={"MPILEARN_INJECT_FAULT": f"{fault}@1:start"},
    )
    print(f"rank 1 {fault} at start-up, --timeout 5: exit {result.returncode} after {result.seconds:.1f}s")
    assert result.returncode != 0 and f"injected fault {fault} on rank 1 at start" in result.output, result.output
    if fault == "hang":
        assert re.search(
            r"mpilearn: error on rank 0 \(master\): rank 0 waited \d+s for rank 1 in .*: it is stuck", result.output
        ), result.output
        assert result.output.count("mpilearn: error") == 1, result.output
    assert not (tmp_path / "run" / "model.keras").exists()
