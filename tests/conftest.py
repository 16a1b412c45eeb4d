"""Shared fixtures: real data sets made by `mpilearn make-data`, and a runner
for the command line that always ends (hard timeout, whole process group)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tests run ranks with one compute thread each, as on a busy 2-core machine.
os.environ.setdefault("MPILEARN_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("KERAS_BACKEND", "torch")

SMALL_SHAPE = "8,8,8"

# The files that take longest (seconds of test time, measured with --durations), first: make test's
# first pass gives whole files to its two xdist workers in collection order (--no-loadscope-reorder),
# so that a long file started last does not leave one worker alone at the end.
LONGEST_FILES = (
    "test_algorithms_mpi.py",
    "test_failures.py",
    "test_scale_mpi.py",
    "test_hpo.py",
    "test_bad_input.py",
    "test_data_pipeline.py",
    "test_models.py",
    "test_train_mpi.py",
    "test_backend_matrix.py",
    "test_tracking.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FILES)))  # stable: file order kept within


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    args: list[str],
    timeout: float = 180,
    cwd: str | os.PathLike | None = None,
    env: dict | None = None,
    exact_output: bool = False,
) -> Completed:
    """Run `python -m mpilearn ARGS` (see run_command)."""
    return run_command([sys.executable, "-m", "mpilearn", *args], timeout, cwd, env, exact_output)


def run_mpi(processes: int, argv: list[str], timeout: float = 180, cwd: str | os.PathLike | None = None) -> Completed:
    """Run `mpiexec -n N ARGV` with the mpiexec of this environment."""
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    return run_command([mpiexec, "-n", str(processes), *argv], timeout, cwd)


def run_command(
    argv: list[str],
    timeout: float = 180,
    cwd: str | os.PathLike | None = None,
    env: dict | None = None,
    exact_output: bool = False,
) -> Completed:
    """Run a command; kill its whole process group on timeout, so a hanging
    rank fails the test instead of the CI run. `exact_output` keeps carriage
    returns, which text mode would turn into newlines."""
    full_env = dict(os.environ)
    full_env.pop("MPILEARN_LAUNCHED", None)
    full_env.update(env or {})
    start = time.monotonic()
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=not exact_output,
        cwd=cwd,
        env=full_env,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(process.pid)
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(argv)} did not end within {timeout}s\n{stdout}\n{stderr}")
    if exact_output:
        stdout, stderr = stdout.decode(errors="replace"), stderr.decode(errors="replace")
    return Completed(process.returncode, stdout, stderr, time.monotonic() - start)


def kill_session(session: int) -> None:
    """SIGKILL every process of a session (started with start_new_session):
    Open MPI gives each rank a process group of its own, so killing the
    launcher's group alone would leave its ranks running."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == session:
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:  # gone meanwhile, or not ours to see
            pass


def train_mlp(data: Path, run_dir: Path, processes: int, *extra: str, timeout: float = 240) -> dict:
    """`mpilearn train --model mlp` on DATA/train.txt and DATA/val.txt with -n PROCESSES, one thread
    a rank; asserts it ended well and returns its history.json."""
    result = run_cli(
        [
            "train",
            "--model",
            "mlp",
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
        timeout=timeout,
    )
    assert result.returncode == 0, result.output
    return json.loads((run_dir / "history.json").read_text())


def make_data(
    outdir: Path, files: int = 4, events: int = 64, shape: str = SMALL_SHAPE, seed: int = 0, val_files: int = 1
) -> Path:
    result = run_cli(
        [
            "make-data",
            str(outdir),
            "--files",
            str(files),
            "--val-files",
            str(val_files),
            "--events-per-file",
            str(events),
            "--shape",
            shape,
            "--seed",
            str(seed),
        ],
        timeout=120,
    )
    assert result.returncode == 0, result.output
    return outdir


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training files and 1 validation file of 64 events at 8x8x8."""
    return make_data(tmp_path_factory.mktemp("small"))
