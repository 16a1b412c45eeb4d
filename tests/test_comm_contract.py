"""Both communicators against one contract (tests/comm_contract.py): the in-process one
in threads, the MPI one under real mpiexec with 2 and 3 ranks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from comm_contract import CASES
from conftest import run_mpi
from mpilearn.comm.local import Aborted, run_ranks

HERE = Path(__file__).parent


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_in_process_communicator(case, size) -> None:
    run_ranks(size, case, timeout=60)


@pytest.mark.parametrize("size", [2, 3])
def test_mpi_communicator(size) -> None:
    result = run_mpi(
        size,
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", str(HERE / "comm_contract.py")],
        timeout=300,
        cwd=HERE,
    )
    assert result.returncode == 0, result.output
    assert result.stdout.count(f"{len(CASES)} passed") == size, result.output


def test_in_process_abort_ends_every_rank() -> None:
    def work(comm) -> None:
        if comm.rank == 1:
            comm.abort(3)
        comm.barrier()  # the others would wait for rank 1 forever

    with pytest.raises(Aborted, match="status 3"):
        run_ranks(3, work, timeout=30)
