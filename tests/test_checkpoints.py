"""Checkpoints and run directories on a real file system, in one process:
atomic replace, damaged checkpoints named and skipped, leftovers removed,
JSON without NaN, the run-directory lock, unique default names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mpilearn import checkpoint, faults
from mpilearn.data.cache import OWNER, remove_stale
from mpilearn.errors import CheckpointError, ConfigError
from mpilearn.rundir import RunDirLock, atomic_write_json, default_run_dir, remove_leftovers


def _save(run_dir: Path, epoch: int, value: float = 1.0) -> Path:
    state = {"config": {"epochs": 9}, "fingerprint": {}, "history": {}}
    return checkpoint.save(run_dir, epoch, np.full(4, value, np.float32), [np.zeros(2, np.float32)], state, keep=3)


def test_replacing_a_checkpoint_keeps_a_whole_one_and_leaves_nothing_behind(tmp_path: Path) -> None:
    _save(tmp_path, 1, 1.0)
    path = _save(tmp_path, 1, 2.0)  # the same epoch again (a resumed run)
    assert np.load(path / "weights.npy")[0] == 2.0
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["ckpt-00001"]
    for epoch in (2, 3, 4):
        _save(tmp_path, epoch)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["ckpt-00002", "ckpt-00003", "ckpt-00004"]


def test_a_damaged_newest_checkpoint_is_named_and_skipped(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    newest = _save(tmp_path, 2)
    weights = newest / "weights.npy"
    weights.write_bytes(weights.read_bytes()[:-8])  # cut short (a full disk)
    path, damaged = checkpoint.newest_good(tmp_path)
    assert path.name == "ckpt-00001"
    assert len(damaged) == 1 and "ckpt-00002" in damaged[0] and "weights.npy" in damaged[0]
    (path / "state.json").write_text('{"epoch": 1, "config": {"ep')  # every one damaged: one error naming both
    with pytest.raises(
        CheckpointError, match=r"no readable checkpoint: .*ckpt-00002.*ckpt-00001 is damaged \(state.json"
    ):
        checkpoint.newest_good(tmp_path)


def test_leftovers_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    (tmp_path / "checkpoints" / ".tmp-abc").mkdir()
    (tmp_path / "checkpoints" / ".old-ckpt-00001").mkdir()
    (tmp_path / ".history.json.x1y2.tmp").write_text("{")
    (tmp_path / ".model.abcd.keras").write_text("")
    removed = remove_leftovers(tmp_path)
    assert len(removed) == 4
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["checkpoints", "ckpt-00001", "optimizer.npz", "state.json", "weights.npy"]
    )


def test_json_outputs_hold_null_for_nan(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "h.json", {"loss": float("nan"), "rows": [np.float32("inf"), 1.5], "n": np.int64(3)})
    assert json.loads((tmp_path / "h.json").read_text()) == {"loss": None, "rows": [None, 1.5], "n": 3}


def test_a_run_directory_in_use_is_refused_with_its_owner(tmp_path: Path) -> None:
    first = RunDirLock(tmp_path)
    with pytest.raises(ConfigError, match=r"is in use by pid \d+ on \S+"):
        RunDirLock(tmp_path)
    first.release()
    RunDirLock(tmp_path).release()  # free again once released


def test_default_run_dirs_of_the_same_second_differ(tmp_path: Path) -> None:
    names = {default_run_dir(str(tmp_path)) for _ in range(3)}
    assert len(names) == 3 and all(Path(n).is_dir() for n in names)


def test_fault_specs() -> None:
    assert faults.parse("kill@2:5,hang@1:start") == (faults.Fault("kill", 2, "5"), faults.Fault("hang", 1, "start"))
    with pytest.raises(ConfigError, match="KIND@RANK:WHEN"):
        faults.parse("explode@1:2")


def test_cache_copies_of_a_killed_job_are_removed_at_the_next_start(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for name, pid in (("mpilearn-dead", gone.pid), ("mpilearn-alive", os.getpid())):
        (tmp_path / name).mkdir()
        (tmp_path / name / "000000-train_000.h5").write_text("copy")
        (tmp_path / name / f"{OWNER}{pid}").touch()
        os.utime(tmp_path / name / f"{OWNER}{pid}", (1, 1))  # written long ago
    remove_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mpilearn-alive"]
