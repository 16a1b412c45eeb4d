"""mpilearn under srun, on a one-node SLURM cluster the fixture starts
(munged, slurmctld and slurmd from Debian's slurm-wlm and munge, all
configured in a temporary directory): `srun --mpi=pmi2` trains, `srun
--mpi=none` (a world of one per task) is refused with the fix, and a real
1-task step still trains."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Completed, run_command

DAEMONS = ("munged", "slurmctld", "slurmd", "srun", "sinfo")
TIMEOUT_S = 480  # generous: a loaded 2-core machine takes minutes to start 3 ranks
pytestmark = [pytest.mark.timeout(2 * TIMEOUT_S), pytest.mark.serial]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _config(root: Path, node: str, cpus: int) -> str:
    controller_port, node_port = _free_ports(2)
    return f"""ClusterName=mpilearn-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={controller_port}
SlurmdPort={node_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _stop(pid_file: Path) -> None:
    try:
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        pass


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment that points srun at the test cluster."""
    missing = [name for name in DAEMONS if not shutil.which(name)]
    if missing:
        pytest.skip(
            f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge (.ci/run does)"
        )
    if os.geteuid() != 0:
        pytest.skip("the test cluster's daemons run as root")
    root = tmp_path_factory.mktemp("slurm")
    for directory in ("state", "spool"):
        (root / directory).mkdir()
    key = root / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o600)
    conf = root / "slurm.conf"
    conf.write_text(_config(root, socket.gethostname().split(".")[0], len(os.sched_getaffinity(0))))
    env = {"SLURM_CONF": str(conf)}
    started: list[Path] = []
    try:
        subprocess.run(
            [
                "munged",
                "--force",
                f"--socket={root}/munge.socket",
                f"--key-file={key}",
                f"--log-file={root}/munged.log",
                f"--pid-file={root}/munged.pid",
                f"--seed-file={root}/munged.seed",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        started.append(root / "munged.pid")
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon, "-f", str(conf)], check=True, capture_output=True, timeout=60)
            started.append(root / f"{daemon}.pid")
        deadline = time.monotonic() + 120
        while (
            "idle"
            not in subprocess.run(
                ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
            ).stdout
        ):
            if time.monotonic() > deadline:
                pytest.fail(f"the test cluster's node never became idle:\n{(root / 'slurmd.log').read_text()}")
            time.sleep(0.5)
        yield env
    finally:
        for pid_file in reversed(started):
            _stop(pid_file)


def _srun(slurm: dict[str, str], tasks: int, mpi: str, *args: str) -> Completed:
    return run_command(
        ["srun", "-n", str(tasks), "--overcommit", f"--mpi={mpi}", sys.executable, "-m", "mpilearn", *args],
        timeout=TIMEOUT_S,
        env=slurm,
    )


def _train(data: Path, run_dir: Path) -> list[str]:
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
        "--epochs",
        "1",
    ]


def test_srun_with_pmi2_trains(slurm: dict[str, str], small_data: Path, tmp_path: Path) -> None:
    result = _srun(slurm, 3, "pmi2", *_train(small_data, tmp_path / "run"))
    assert result.returncode == 0, result.output
    assert "3 processes: rank 0 master, ranks 1-2 workers" in result.output
    assert json.loads((tmp_path / "run" / "history.json").read_text())["updates"] > 0


def test_srun_without_pmi_is_refused_and_one_task_still_trains(
    slurm: dict[str, str], small_data: Path, tmp_path: Path
) -> None:
    refused = _srun(slurm, 3, "none", *_train(small_data, tmp_path / "refused"))
    assert refused.returncode == 2, refused.output
    errors = [line for line in refused.stderr.splitlines() if line.startswith("mpilearn: error")]
    assert errors == [
        "mpilearn: error: srun started 3 processes (SLURM_STEP_NUM_TASKS=3) but each sees an MPI world of 1: "
        "srun gave MPI no process-management interface; use `srun --mpi=pmi2` (MPICH, Intel MPI) or "
        "`--mpi=pmix` (Open MPI); `srun --mpi=list` shows what this cluster has"
    ], refused.stderr
    assert not (tmp_path / "refused").exists()  # refused before any training wrote to the run directory
    alone = _srun(slurm, 1, "none", *_train(small_data, tmp_path / "alone"))
    assert alone.returncode == 0, alone.output
    assert "1 process: local training" in alone.output
