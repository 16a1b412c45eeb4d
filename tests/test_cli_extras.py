"""The command line as cluster users meet it: the mpi_learn positional form
under a real external mpiexec, `mpilearn info`, and the progress display."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import run_cli, run_mpi


def test_positional_form_under_external_mpiexec_with_background_validation(small_data: Path, tmp_path: Path) -> None:
    """`mpiexec -n 3 python -m mpilearn train MODEL TRAIN_LIST VAL_LIST ...` as
    with mpi_learn, plus background validation, --validate-every, a target
    that the first epoch reaches (the stop decision arrives from the
    validation thread) and --quiet."""
    run = tmp_path / "run"
    result = run_mpi(
        3,
        [
            sys.executable,
            "-m",
            "mpilearn",
            "train",
            "mlp",
            str(small_data / "train.txt"),
            str(small_data / "val.txt"),
            "--epochs",
            "3",
            "--batch",
            "16",
            "--threads",
            "1",
            "--background-validation",
            "--validate-every",
            "5",
            "--target-metric",
            "val_loss,<=,1e9",
            "--timeline",
            str(run / "timeline.json"),
            "--quiet",
            "--run-dir",
            str(run),
        ],
        timeout=240,
    )
    assert result.returncode == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("[rank 0 master] trained"), result.stdout  # --quiet
    history = json.loads((run / "history.json").read_text())
    assert history["config"]["model"]["spec"] == "mlp" and len(history["workers"]) == 2
    epochs = [r for r in history["epochs"] if r.get("kind") != "updates" and not r.get("final")]
    assert epochs[0]["epoch"] == 1 and history["stopped_early"]
    assert epochs[-1]["epoch"] < 3  # the target reached after epoch 1 stopped the run before its end
    updates = [r for r in history["epochs"] if r.get("kind") == "updates"]
    assert updates and all(r["updates"] % 5 == 0 and "val_loss" in r for r in updates)
    events = json.loads((run / "timeline.json").read_text())["traceEvents"]
    background = [e for e in events if e.get("name") == "validate (background)"]
    assert background and all(e["pid"] == 0 and e["tid"] == 1 for e in background)
    assert {e["pid"] for e in events if e.get("ph") == "X"} == {0, 1, 2}


def test_info_prints_versions_and_the_rank_layout() -> None:
    result = run_cli(["info", "-n", "7", "--masters", "3"], timeout=120)
    assert result.returncode == 0, result.output
    out = result.stdout
    for name in ("MPI library", "MPI standard", "mpi4py", "keras", "backend", "numpy", "h5py"):
        assert f"\n{name}" in "\n" + out, name
    assert "backend       torch" in out
    assert "7 processes: rank 0 top master; sub-master 1 serves 3-4; sub-master 2 serves 5-6" in out
    assert "rank 2     sub-master -> rank 0 serves 2" in out and "rank 5     worker -> rank 2" in out


def test_progress_bar_when_the_launcher_had_a_terminal(small_data: Path, tmp_path: Path) -> None:
    """MPILEARN_TTY is what `mpilearn train -n N` sets for its ranks when its own output is a terminal."""
    result = run_cli(
        [
            "train",
            "--model",
            "mlp",
            "--train",
            str(small_data / "train.txt"),
            "--epochs",
            "1",
            "--batch",
            "16",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        timeout=120,
        env={"MPILEARN_TTY": "100"},
        exact_output=True,
    )
    assert result.returncode == 0, result.output
    assert "\r" in result.stdout and "sample/s" in result.stdout and "epoch 1/1" in result.stdout


def test_a_reader_that_leaves_early_ends_the_output_quietly() -> None:
    """`mpilearn info | head`: the pipe's reader is gone before the output ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mpilearn", "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0 and b"Traceback" not in stderr, stderr.decode()
