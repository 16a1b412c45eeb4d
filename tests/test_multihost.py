"""Self-launch across two hosts (`-n 4 --hosts h1:2,h2:2`) through hydra's
ssh launcher, on two hosts emulated with namespaces (emulated_hosts.py):
both kinds of algorithm train across them, the node-local cache copies a
file once per host onto that host's disk, threads and GPUs are shared out
per host, and a worker killed on the second host ends the job."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import emulated_hosts
from conftest import run_command
from jobs import WatchedJob
from test_algorithms_mpi import COMBINED_BATCH_RUN, _reference_weights

STOP_LIMIT_S = 10.0
TIMEOUT_S = 480  # generous: a loaded 2-core machine takes minutes to start 4 ranks
pytestmark = [pytest.mark.timeout(2 * TIMEOUT_S), pytest.mark.serial]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emulated_hosts.TwoHosts]:
    reason = emulated_hosts.why_not()
    if reason:
        pytest.skip(reason)
    setup = emulated_hosts.create(tmp_path_factory.mktemp("hosts"))
    try:
        yield setup
    finally:
        emulated_hosts.destroy(setup)


def _mpilearn(hosts: emulated_hosts.TwoHosts, *args: str) -> list[str]:
    """`python -m mpilearn ARGS` started on the first host, as a user logged in there."""
    return hosts.on(0, [sys.executable, "-m", "mpilearn", *args])


def _train(data: Path, run_dir: Path, train_list: Path | None = None) -> list[str]:
    return [
        "train",
        "--model",
        "mlp",
        "--train",
        str(train_list or data / "train.txt"),
        "--val",
        str(data / "val.txt"),
        "--run-dir",
        str(run_dir),
        "--threads",
        "1",
        "--hosts",
        "mpl-host1:2,mpl-host2:2",
    ]


def test_downpour_caches_once_per_host_and_a_kill_on_the_second_host_ends_it(
    hosts: emulated_hosts.TwoHosts, small_data: Path, tmp_path: Path
) -> None:
    # One file shared by sample: the worker on host 1 and both workers on host 2 read it.
    one_file = tmp_path / "one.txt"
    one_file.write_text(f"{small_data / 'train_000.h5'}\n")
    for host in hosts.hosts:
        (host.disk / "WHOSE").write_text(f"disk of {host.name}")
    copies = tmp_path / "copies.log"
    copy = tmp_path / "copy"
    copy.write_text(
        f'#!/bin/sh\ncp "$1" "$2" && echo "$(hostname) $(cat {hosts.node_local}/WHOSE) $(basename "$1")" >> {copies}\n'
    )
    copy.chmod(0o755)
    job = WatchedJob(
        _mpilearn(
            hosts,
            *_train(small_data, tmp_path / "run", one_file),
            "--algo",
            "downpour",
            "--shard",
            "samples",
            "--epochs",
            "500",
            "--batch",
            "8",
            "--cache-dir",
            str(hosts.node_local),
            "--copy-command",
            f"{copy} {{src}} {{dst}}",
        ),
        tmp_path / "log",
        env=hosts.env(),
    )
    ranks = [job.rank(rank, TIMEOUT_S) for rank in range(4)]
    assert [host for _, host in ranks] == ["mpl-host1", "mpl-host1", "mpl-host2", "mpl-host2"], job.text()
    job.wait_for(r"epoch 2/500 .*val_accuracy", TIMEOUT_S)  # downpour trains across the hosts
    assert sorted(copies.read_text().splitlines()) == [
        "mpl-host1 disk of mpl-host1 train_000.h5",
        "mpl-host2 disk of mpl-host2 train_000.h5",
    ]
    os.kill(ranks[3][0], signal.SIGKILL)
    status, seconds = job.finish(120)
    print(f"2 hosts, worker SIGKILL on the second host: job gone {seconds:.2f}s after the kill, exit {status}")
    assert status != 0
    assert seconds < STOP_LIMIT_S, job.text()


def test_allreduce_across_two_hosts_equals_one_process(
    hosts: emulated_hosts.TwoHosts, small_data: Path, tmp_path: Path
) -> None:
    import keras

    result = run_command(
        _mpilearn(
            hosts,
            *_train(small_data, tmp_path / "run"),
            "--algo",
            "allreduce",
            *COMBINED_BATCH_RUN,
        ),
        timeout=TIMEOUT_S,
        env=hosts.env(),
    )
    assert result.returncode == 0, result.output
    assert re.search(
        r"ranks: 0 peer pid \d+@mpl-host1, 1 peer pid \d+@mpl-host1, 2 peer pid \d+@mpl-host2, "
        r"3 peer pid \d+@mpl-host2",
        result.stderr + result.stdout,
    ), result.output
    got = keras.saving.load_model(tmp_path / "run" / "model.keras").get_weights()
    want = _reference_weights(small_data, workers=4, batch=16, epochs=2, lr=0.1)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_threads_and_gpus_are_shared_out_per_host(hosts: emulated_hosts.TwoHosts) -> None:
    """1 rank on host 1, 2 on host 2, each host with 2 (pretend) GPUs: the
    lone master gets every core of its host; on host 2 the cores are halved
    and the workers take GPUs 0 and 1 by local rank."""
    env = {**hosts.env(), "CUDA_VISIBLE_DEVICES": "0,1"}
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    result = run_command(
        hosts.on(
            0, [mpiexec, "-hosts", "mpl-host1:1,mpl-host2:2", "-n", "3", sys.executable, "-m", "mpilearn", "info"]
        ),
        timeout=TIMEOUT_S,
        env=env,
    )
    assert result.returncode == 0, result.output
    rows = re.findall(r"rank (\d+) +(\S+) local (\d+)/(\d+)  threads (\d+)  gpu (\S+)", result.stdout)
    cores = len(os.sched_getaffinity(0))
    assert [(int(r), h, int(lr), int(ls), int(t), g) for r, h, lr, ls, t, g in rows] == [
        (0, "mpl-host1", 0, 1, cores, "cpu"),
        (1, "mpl-host2", 0, 2, max(1, cores // 2), "0"),
        (2, "mpl-host2", 1, 2, max(1, cores // 2), "1"),
    ], result.stdout
