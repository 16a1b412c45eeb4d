"""Bad inputs to `mpilearn train`, each run for real on 2 MPI ranks (1 master + 1 worker).

Every case must end quickly with the exact exit status, print ONE clear
`mpilearn: error` line naming the offending file or option (not one per
rank), and leave no model.keras / history.json behind. A positive control
with good inputs proves the runner itself works, so the table cannot pass
just because nothing runs.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest

from conftest import run_cli

TIMEOUT_S = 240  # generous: 3 ranks importing Keras on a loaded 2-core machine take over a minute
USAGE = 2  # ConfigError / DataError / ModelError: "fix your input"
OUTPUTS = ("model.keras", "history.json")
ERROR_MARK = "mpilearn: error"


@dataclass
class Ctx:
    """What a case builds on: a private copy of the small data set and a run dir."""

    tmp: Path
    data: Path
    run_dir: Path
    options: dict[str, str | None] = field(default_factory=dict)
    keep: list = field(default_factory=list)  # objects held while the case runs (an open lock)

    def train_files(self) -> list[Path]:
        return sorted(self.data.glob("train_*.h5"))

    def val_files(self) -> list[Path]:
        return sorted(self.data.glob("val_*.h5"))

    def write_list(self, name: str, files: list[Path | str]) -> str:
        path = self.tmp / name
        path.write_text("".join(f"{f}\n" for f in files))
        return str(path)


def _write_h5(path: Path, samples: int, shape: tuple[int, ...], labels: int | None = None, class_ids: int = 0) -> Path:
    """One HDF5 file: one-hot labels of 3 classes, or integer ids below `class_ids`."""
    rng = np.random.default_rng(0)
    count = labels if labels is not None else samples
    with h5py.File(path, "w") as handle:
        handle["features"] = rng.random((samples, *shape, 1), dtype=np.float32)
        handle["labels"] = (
            rng.integers(0, class_ids, count) if class_ids else np.eye(3, dtype=np.float32)[rng.integers(0, 3, count)]
        )
    return path


def _base_options(ctx: Ctx) -> dict[str, str | None]:
    return {
        "--model": "mlp",
        "--train": ctx.write_list("train.txt", ctx.train_files()),
        "--val": ctx.write_list("val.txt", ctx.val_files()),
        "-n": "2",
        "--epochs": "1",
        "--threads": "1",
        "--run-dir": str(ctx.run_dir),
    }


# --- the cases: each edits ctx.options and returns a regex the error line must match ---------


def missing_train_file(ctx: Ctx) -> str:
    ctx.options["--train"] = ctx.write_list("train.txt", [*ctx.train_files()[:2], ctx.tmp / "ghost_017.h5"])
    return r"ghost_017\.h5: file does not exist"


def not_hdf5(ctx: Ctx) -> str:
    fake = ctx.tmp / "notes_as.h5"
    fake.write_text("this is a text file, not HDF5\n" * 20)
    ctx.options["--train"] = ctx.write_list("train.txt", [*ctx.train_files()[:2], fake])
    return r"notes_as\.h5: not a readable HDF5 file"


def truncated_hdf5(ctx: Ctx) -> str:
    cut = ctx.tmp / "cut_half.h5"
    shutil.copyfile(ctx.train_files()[0], cut)
    with open(cut, "r+b") as handle:
        handle.truncate(cut.stat().st_size // 2)
    ctx.options["--train"] = ctx.write_list("train.txt", [*ctx.train_files()[1:3], cut])
    return r"cut_half\.h5: .*truncated"


def missing_dataset(ctx: Ctx) -> str:
    ctx.options["--features-name"] = "nope"
    return r"train_000\.h5: no dataset 'nope' \(--features-name\)"


def length_mismatch(ctx: Ctx) -> str:
    odd = _write_h5(ctx.tmp / "lopsided.h5", samples=64, shape=(8, 8, 8), labels=50)
    ctx.options["--train"] = ctx.write_list("train.txt", [*ctx.train_files()[:2], odd])
    return r"lopsided\.h5: 'features' has 64 samples but 'labels' has 50"


def shape_mismatch(ctx: Ctx) -> str:
    small = _write_h5(ctx.tmp / "other_shape.h5", samples=64, shape=(4, 4, 4))
    ctx.options["--train"] = ctx.write_list("train.txt", [*ctx.train_files()[:2], small])
    return r"other_shape\.h5: sample shape \(4, 4, 4, 1\).*differs from \(8, 8, 8, 1\)"


def empty_list(ctx: Ctx) -> str:
    ctx.options["--train"] = ctx.write_list("empty_train.txt", [])
    return r"file list \S*empty_train\.txt names no files"


def missing_list(ctx: Ctx) -> str:
    ctx.options["--train"] = str(ctx.tmp / "no_such_list.txt")
    return r"file list \S*no_such_list\.txt does not exist"


def unknown_model(ctx: Ctx) -> str:
    ctx.options["--model"] = "no-such-model"
    return r"unknown model 'no-such-model'"


def unknown_optimizer(ctx: Ctx) -> str:
    ctx.options["--optimizer"] = "nosuchopt"
    return r"unknown optimizer 'nosuchopt' \(--optimizer\)"


def more_workers_than_files(ctx: Ctx) -> str:
    ctx.options["--train"] = ctx.write_list("train.txt", ctx.train_files()[:2])
    ctx.options["-n"] = "4"
    return r"2 training files for 3 workers"


def zero_epochs(ctx: Ctx) -> str:
    ctx.options["--epochs"] = "0"
    return r"--epochs must be a positive integer, got 0"


def negative_epochs(ctx: Ctx) -> str:
    ctx.options["--epochs"] = "-3"
    return r"--epochs must be a positive integer, got -3"


def zero_batch(ctx: Ctx) -> str:
    ctx.options["--batch"] = "0"
    return r"--batch must be a positive integer, got 0"


def model_syntax_error(ctx: Ctx) -> str:
    bad = ctx.tmp / "bad_syntax.py"
    bad.write_text("def build(input_shape, num_classes):\n    return (\n")
    ctx.options["--model"] = f"{bad}:build"
    return r"bad_syntax\.py: syntax error at line \d+"


def model_not_keras(ctx: Ctx) -> str:
    builder = ctx.tmp / "not_a_model.py"
    builder.write_text("def build(input_shape, num_classes):\n    return {'layers': 3}\n")
    ctx.options["--model"] = f"{builder}:build"
    return r"not_a_model\.py:build' is a dict, not a keras\.Model"


def bad_json(ctx: Ctx) -> str:
    broken = ctx.tmp / "broken_arch.json"
    broken.write_text('{"class_name": "Functional", "config": {"layers": [')
    ctx.options["--model"] = str(broken)
    return r"broken_arch\.json is not valid JSON"


def unwritable_run_dir(ctx: Ctx) -> str:
    blocker = ctx.tmp / "plain_file"
    blocker.write_text("a regular file, so nothing can be created under it\n")
    ctx.run_dir = blocker / "run"
    ctx.options["--run-dir"] = str(ctx.run_dir)
    return r"--run-dir \S*plain_file/run is not writable"


def missing_val_file(ctx: Ctx) -> str:
    ctx.options["--val"] = ctx.write_list("val.txt", [*ctx.val_files(), ctx.tmp / "ghost_val.h5"])
    return r"ghost_val\.h5: file does not exist"


def num_classes_too_many(ctx: Ctx) -> str:
    ctx.options["--model-arg"] = "num_classes=5"  # the labels are 3-class one-hot rows
    return r"train_000\.h5: labels have shape \(3,\) but the model's output has shape \(5,\)"


def class_id_beyond_num_classes(ctx: Ctx) -> str:
    files = [_write_h5(ctx.tmp / f"ids_{i}.h5", samples=64, shape=(8, 8, 8), class_ids=7) for i in range(3)]
    ctx.options["--train"] = ctx.write_list("train.txt", files)
    ctx.options["--val"] = None
    ctx.options["--model-arg"] = "num_classes=4"
    return r"ids_0\.h5: labels hold class id 6, but the model's output has 4 classes"


def sparse_loss_on_one_hot(ctx: Ctx) -> str:
    ctx.options["--loss"] = "sparse_categorical_crossentropy"
    return r"train_000\.h5: labels of shape \(3,\) \(float32\) are one-hot rows, but sparse_categorical_crossentropy"


def timeline_missing_dir(ctx: Ctx) -> str:
    ctx.options["--timeline"] = str(ctx.tmp / "missing" / "t.json")
    return r"--timeline \S*missing/t\.json: directory \S*missing does not exist"


def tensorboard_under_file(ctx: Ctx) -> str:
    blocker = ctx.tmp / "a_file"
    blocker.write_text("not a directory\n")
    ctx.options["--tensorboard"] = str(blocker / "tb")
    return r"--tensorboard \S*a_file/tb: \S*a_file is not a writable directory"


def val_shape_mismatch(ctx: Ctx) -> str:
    other = _write_h5(ctx.tmp / "val_small.h5", samples=32, shape=(4, 4, 4))
    ctx.options["--val"] = ctx.write_list("val.txt", [other])
    return r"val_small\.h5: validation samples have shape \(4, 4, 4, 1\) but the training samples \(8, 8, 8, 1\)"


def val_labels_mismatch(ctx: Ctx) -> str:
    other = _write_h5(ctx.tmp / "val_ids.h5", samples=32, shape=(8, 8, 8), class_ids=3)
    ctx.options["--val"] = ctx.write_list("val.txt", [other])
    return r"val_ids\.h5: validation labels have shape \(\) but the training labels \(3,\)"


def run_dir_in_use(ctx: Ctx) -> str:
    import fcntl
    import os

    ctx.run_dir.mkdir()
    holder = open(ctx.run_dir / ".lock", "w")
    holder.write(f"pid {os.getpid()} on testhost\n")
    holder.flush()
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    ctx.keep.append(holder)  # held until the case ends, like a running job
    return rf"--run-dir \S*run is in use by pid {os.getpid()} on testhost"


def malformed_model_arg(ctx: Ctx) -> str:
    ctx.options["--model-arg"] = "units"
    return r"--model-arg must be KEY=VALUE, got 'units'"


def zero_keep_checkpoints(ctx: Ctx) -> str:
    ctx.options["--keep-checkpoints"] = "0"
    return r"--keep-checkpoints must be a positive integer, got 0"


def zero_sync_every(ctx: Ctx) -> str:
    ctx.options["--sync-every"] = "0"
    return r"--sync-every must be a positive integer, got 0"


def masters_with_sync(ctx: Ctx) -> str:
    ctx.options["--masters"] = "2"
    ctx.options["--algo"] = "sync"
    return r"--masters 2 works with --algo downpour or easgd, not sync"


def empty_hdf5(ctx: Ctx) -> str:
    empty = _write_h5(ctx.tmp / "no_rows.h5", samples=0, shape=(8, 8, 8))
    ctx.options["--train"] = ctx.write_list("train.txt", [*ctx.train_files()[:3], empty])
    return r"no_rows\.h5: dataset 'features' holds no samples"


CASES: list[tuple[str, Callable[[Ctx], str], int]] = [
    ("missing-train-file", missing_train_file, USAGE),
    ("not-hdf5", not_hdf5, USAGE),
    ("truncated-hdf5", truncated_hdf5, USAGE),
    ("missing-dataset", missing_dataset, USAGE),
    ("length-mismatch", length_mismatch, USAGE),
    ("shape-mismatch", shape_mismatch, USAGE),
    ("empty-file-list", empty_list, USAGE),
    ("missing-file-list", missing_list, USAGE),
    ("unknown-model", unknown_model, USAGE),
    ("unknown-optimizer", unknown_optimizer, USAGE),
    ("more-workers-than-files", more_workers_than_files, USAGE),
    ("zero-epochs", zero_epochs, USAGE),
    ("negative-epochs", negative_epochs, USAGE),
    ("zero-batch", zero_batch, USAGE),
    ("model-file-syntax-error", model_syntax_error, USAGE),
    ("model-fn-not-keras", model_not_keras, USAGE),
    ("bad-keras-json", bad_json, USAGE),
    ("unwritable-run-dir", unwritable_run_dir, USAGE),
    ("missing-val-file", missing_val_file, USAGE),
    ("num-classes-too-many", num_classes_too_many, USAGE),
    ("class-id-beyond-num-classes", class_id_beyond_num_classes, USAGE),
    ("sparse-loss-on-one-hot", sparse_loss_on_one_hot, USAGE),
    ("timeline-missing-dir", timeline_missing_dir, USAGE),
    ("tensorboard-under-a-file", tensorboard_under_file, USAGE),
    ("val-shape-mismatch", val_shape_mismatch, USAGE),
    ("val-labels-mismatch", val_labels_mismatch, USAGE),
    ("run-dir-in-use", run_dir_in_use, USAGE),
    ("malformed-model-arg", malformed_model_arg, USAGE),
    ("zero-keep-checkpoints", zero_keep_checkpoints, USAGE),
    ("zero-sync-every", zero_sync_every, USAGE),
    ("masters-with-sync", masters_with_sync, USAGE),
    ("empty-hdf5-file", empty_hdf5, USAGE),
]


def _params() -> list:
    return [pytest.param(build, status, id=case_id) for case_id, build, status in CASES]


@pytest.fixture
def ctx(tmp_path: Path, small_data: Path) -> Ctx:
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    context = Ctx(tmp=tmp_path, data=data, run_dir=tmp_path / "run")
    context.options = _base_options(context)
    return context


def _argv(options: dict[str, str | None]) -> list[str]:
    argv = ["train"]
    for option, value in options.items():
        if value is not None:
            argv += [option, value]
    return argv


def _leftovers(run_dir: Path) -> list[Path]:
    if not run_dir.is_dir():
        return []
    return [p for name in OUTPUTS for p in run_dir.rglob(name)]


@pytest.mark.parametrize("build, status", _params())
def test_bad_input(ctx: Ctx, build: Callable[[Ctx], str], status: int) -> None:
    pattern = build(ctx)
    existed = ctx.run_dir.exists()
    result = run_cli(_argv(ctx.options), timeout=TIMEOUT_S, cwd=ctx.tmp)
    errors = [line for line in result.output.splitlines() if ERROR_MARK in line]
    print(f"exit {result.returncode} in {result.seconds:.2f}s: {errors}")  # shown by pytest -rA / -s
    report = f"exit {result.returncode} after {result.seconds:.1f}s\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"

    assert result.seconds < TIMEOUT_S, report
    assert result.returncode == status, report
    # One report for the whole job, not one per rank, and on stderr.
    assert result.output.count(ERROR_MARK) == 1, report
    error_lines = [line for line in result.stderr.splitlines() if ERROR_MARK in line]
    assert len(error_lines) == 1, report
    assert re.search(pattern, error_lines[0]), f"error line does not match {pattern!r}\n{report}"
    assert "Traceback" not in result.output, report  # a clear line, not a crash
    assert not _leftovers(ctx.run_dir), report
    assert existed or not ctx.run_dir.exists(), f"a failed start left {ctx.run_dir}\n{report}"  # nothing written


def test_good_input_control(ctx: Ctx) -> None:
    """Same command, good inputs: exit 0 and both outputs written."""
    result = run_cli(_argv(ctx.options), timeout=TIMEOUT_S, cwd=ctx.tmp)
    print(f"exit {result.returncode} in {result.seconds:.2f}s")
    report = f"exit {result.returncode} after {result.seconds:.1f}s\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, report
    assert ERROR_MARK not in result.output, report
    for name in OUTPUTS:
        assert (ctx.run_dir / name).is_file(), f"{name} missing\n{report}"
