"""Self-launch (-n N): which MPI an mpiexec belongs to, the command line each
implementation needs, host lists, and the world-of-one refusal. Pure
functions here; the real launchers run in test_openmpi, test_slurm and
test_multihost."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mpilearn.cli.launch_options import without_launch_options
from mpilearn.errors import ConfigError
from mpilearn.launch import (
    INTEL_MPI,
    MPICH,
    OPEN_MPI,
    UNKNOWN,
    Host,
    Launcher,
    detect,
    find_mpiexec,
    identify,
    launch_argv,
    parse_hosts,
    read_hostfile,
)
from mpilearn.world_check import world_of_one_problem

HYDRA_VERSION = """HYDRA build details:
    Version:                                 5.0.2
    Release Date:                            Fri Sep 25 20:45:26 UTC 2026
"""
OPEN_MPI_VERSION = "mpiexec (Open MPI) 5.0.11\n\nReport bugs to https://www.open-mpi.org/community/help/\n"
INTEL_VERSION = "Intel(R) MPI Library for Linux* OS, Version 2021.13 Build 20240701 (id: 8f5b3b4)\nCopyright 2003-2024, Intel Corporation.\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        (HYDRA_VERSION, (MPICH, "5.0.2")),
        (OPEN_MPI_VERSION, (OPEN_MPI, "5.0.11")),
        (INTEL_VERSION, (INTEL_MPI, "2021.13")),
        ("srun: unrecognized option\n", (UNKNOWN, "")),
    ],
)
def test_identify_the_mpi_of_an_mpiexec(text: str, expected: tuple[str, str]) -> None:
    assert identify(text) == expected


def test_detect_runs_the_mpiexec_of_this_environment() -> None:
    launcher = detect(str(Path(sys.executable).parent / "mpiexec"))
    assert launcher.implementation == MPICH and launcher.version, launcher


COMMAND = ["python", "-m", "mpilearn", "train"]


def test_open_mpi_gets_oversubscribe_root_and_hosts_only_when_needed() -> None:
    ompi = Launcher("/x/mpiexec", OPEN_MPI, "5.0.11")
    argv, notes = launch_argv(ompi, 3, COMMAND, cores=2, is_root=True, variables=["PYTHONPATH"])
    assert argv == ["/x/mpiexec", "-n", "3", "--allow-run-as-root", "--oversubscribe", "-x", "PYTHONPATH", *COMMAND]
    assert notes == ["3 ranks on 2 cores: Open MPI runs them with --oversubscribe"]
    argv, notes = launch_argv(ompi, 2, COMMAND, cores=2)
    assert argv == ["/x/mpiexec", "-n", "2", *COMMAND] and not notes
    argv, _ = launch_argv(ompi, 4, COMMAND, hosts=[Host("a", 2), Host("b", 2)], cores=1)
    assert argv == ["/x/mpiexec", "-n", "4", "--host", "a:2,b:2", *COMMAND]  # slots count, not local cores


def test_hydra_and_intel_host_lists() -> None:
    hosts = [Host("a", 2), Host("b", 1)]
    argv, notes = launch_argv(
        Launcher("m", MPICH, "5"), 5, COMMAND, hosts=hosts, is_root=True, cores=2, variables=["X"]
    )
    assert argv == ["m", "-n", "5", "-hosts", "a:2,b:1", *COMMAND] and not notes  # hydra shares cores without a flag
    argv, _ = launch_argv(Launcher("i", INTEL_MPI, "2021"), 3, COMMAND, hosts=hosts, hostfile="/tmp/h")
    assert argv == ["i", "-n", "3", "-machinefile", "/tmp/h", *COMMAND]


def test_host_lists_and_hostfiles(tmp_path: Path) -> None:
    assert parse_hosts("a:2,b") == (Host("a", 2), Host("b", 1))
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# cluster\na:2\nb slots=3\n\nc  # one slot\n")
    assert read_hostfile(str(hostfile)) == (Host("a", 2), Host("b", 3), Host("c", 1))
    for bad in ("a:0", "a:x", "a,,b"):
        with pytest.raises(ConfigError, match="--hosts"):
            parse_hosts(bad)
    hostfile.write_text("a:2\nb slots=two\n")
    with pytest.raises(ConfigError, match=f"--hostfile {hostfile}:2"):
        read_hostfile(str(hostfile))


def test_launch_options_stay_with_the_launcher() -> None:
    argv = [
        "--model",
        "mlp",
        "-n",
        "4",
        "--hosts",
        "a:2,b:2",
        "--mpiexec=/x/mpiexec",
        "--hostfile",
        "f",
        "-n3",
        "--epochs",
        "1",
    ]
    assert without_launch_options(argv) == ["--model", "mlp", "--epochs", "1"]


MPICH_LIBRARY = "MPICH Version:      5.0.2\nMPICH Release date: ..."
OPEN_MPI_LIBRARY = "Open MPI v5.0.11, package: Open MPI user Distribution"


@pytest.mark.parametrize(
    "environ, library, fix",
    [
        ({"SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "3", "SLURM_NTASKS": "3"}, MPICH_LIBRARY, "srun --mpi=pmi2"),
        ({"OMPI_COMM_WORLD_SIZE": "3"}, MPICH_LIBRARY, "mpi4py loaded MPICH"),
        ({"PMI_SIZE": "4"}, OPEN_MPI_LIBRARY, "mpi4py loaded Open MPI"),
        ({"PMI_SIZE": "2", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "2"}, OPEN_MPI_LIBRARY, "srun --mpi=pmix"),
    ],
)
def test_a_world_of_one_under_a_launcher_of_several_is_explained(environ: dict, library: str, fix: str) -> None:
    problem = world_of_one_problem(1, library, environ)
    assert problem is not None and fix in problem and "\n" not in problem


@pytest.mark.parametrize(
    "world, environ",
    [
        (1, {}),  # no launcher
        (1, {"SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "1"}),  # a real 1-task step
        (1, {"SLURM_NTASKS": "3", "SLURM_PROCID": "0"}),  # a batch script of a 3-task job, before srun
        (1, {"PMI_SIZE": "1", "SLURM_STEP_NUM_TASKS": "2"}),  # hydra under SLURM: the PMI size counts, not the proxies
        (3, {"SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "3", "PMI_SIZE": "3"}),
    ],
)
def test_agreeing_worlds_pass(world: int, environ: dict) -> None:
    assert world_of_one_problem(world, MPICH_LIBRARY, environ) is None


def test_a_chosen_mpiexec_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=f"--mpiexec {tmp_path / 'nope'}: no such executable"):
        find_mpiexec(str(tmp_path / "nope"))
    monkeypatch.setenv("MPILEARN_MPIEXEC", "no-such-mpiexec")
    with pytest.raises(ConfigError, match=r"\$MPILEARN_MPIEXEC no-such-mpiexec: no such executable"):
        find_mpiexec()
