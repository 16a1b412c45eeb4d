"""Checkpoints: written atomically, kept K deep, read back for --resume.

A checkpoint is a directory RUN_DIR/checkpoints/ckpt-EEEEE holding
- weights.npy: the central model as one flat float32 vector (FlatLayout order),
- optimizer.npz: every variable of the optimizer that applies updates,
- state.json: completed epochs, the history so far, the run config, and the
  model's fingerprint (variable shapes) to refuse a different model.
No pickle anywhere. Data positions and random states need no saving: batch
order and dropout seeds are functions of (seed, worker, epoch), so a run
resumed at an epoch boundary replays exactly what it would have done.

A checkpoint is replaced by renaming the old one aside, renaming the new one
into place and only then deleting the old one, with the files and the
directory fsynced: a crash at any moment leaves at least one whole
checkpoint. A damaged newest checkpoint (a disk that filled up, a copy cut
short) is named and skipped: resume falls back to the newest readable one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError
from .flat import FlatLayout

CHECKPOINTS = "checkpoints"
PREFIX = "ckpt-"
# Leftovers of a run killed while writing: a half-written new checkpoint, an old one renamed aside.
TEMP_PREFIXES = (".tmp-", ".old-")
FILES = ("state.json", "weights.npy", "optimizer.npz")


def fingerprint(layout: FlatLayout) -> dict[str, Any]:
    return {"trainable": [list(s) for s in layout.trainable_shapes], "state": [list(s) for s in layout.state_shapes]}


def save(
    run_dir: Path, epoch: int, weights: np.ndarray, optimizer_values: list[np.ndarray], state: dict[str, Any], keep: int
) -> Path:
    """Write checkpoint `epoch` (completed epochs) and drop all but the newest `keep`."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=TEMP_PREFIXES[0]))
    final = root / f"{PREFIX}{epoch:05d}"
    aside = root / f"{TEMP_PREFIXES[1]}{final.name}"
    try:
        np.save(tmp / "weights.npy", weights, allow_pickle=False)
        np.savez(tmp / "optimizer.npz", **{f"v{i:05d}": v for i, v in enumerate(optimizer_values)})  # type: ignore[arg-type]
        (tmp / "state.json").write_text(json.dumps({**state, "epoch": epoch}, indent=1, default=_plain))
        for file in tmp.iterdir():
            _fsync(file)
        _fsync(tmp)
        if final.exists():  # the same epoch again (a resumed run): the old copy goes only once the new one is in place
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
        os.replace(tmp, final)
        _fsync(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    for old in sorted(root.glob(f"{PREFIX}*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync(path: Path) -> None:
    """Flush a file or a directory entry list to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory: the rename order still holds
        pass
    finally:
        os.close(fd)


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete what a killed run left in checkpoints/ (call with the run directory locked)."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for prefix in TEMP_PREFIXES for p in root.glob(f"{prefix}*")]
    for path in found:
        shutil.rmtree(path, ignore_errors=True)
    return found


def damage(path: Path) -> str | None:
    """Why checkpoint `path` cannot be read (naming the file), or None when it
    looks whole. Cheap: parses state.json, reads the array headers and the
    archive's directory, not the arrays."""
    for name in FILES:
        if not (path / name).is_file():
            return f"{name} is missing"
    try:
        state = json.loads((path / "state.json").read_text())
        if not isinstance(state, dict) or "epoch" not in state or "config" not in state:
            return "state.json lacks its epoch or configuration"
    except (OSError, ValueError) as exc:
        return f"state.json: {exc}"
    try:
        np.load(path / "weights.npy", mmap_mode="r", allow_pickle=False)  # header and length
    except (OSError, ValueError) as exc:
        return f"weights.npy: {exc}"
    try:
        with zipfile.ZipFile(path / "optimizer.npz") as archive:
            archive.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        return f"optimizer.npz: {exc}"
    return None


def newest_good(run_dir: Path) -> tuple[Path, list[str]]:
    """The newest readable checkpoint of run_dir, and one line per newer damaged one."""
    root = run_dir / CHECKPOINTS
    found = sorted(root.glob(f"{PREFIX}*")) if root.is_dir() else []
    if not found:
        raise CheckpointError(
            f"--resume {run_dir}: no checkpoint in {root} (train with --checkpoint-every to write them)"
        )
    skipped: list[str] = []
    for path in reversed(found):
        problem = damage(path)
        if problem is None:
            return path, skipped
        skipped.append(f"checkpoint {path} is damaged ({problem})")
    raise CheckpointError(f"--resume {run_dir}: no readable checkpoint: {'; '.join(skipped)}")


def latest(run_dir: Path) -> Path:
    return newest_good(run_dir)[0]


def finished_message(config: Any) -> str | None:
    """For --resume: a line saying the run already trained all its epochs and
    wrote its outputs, else None (then the ranks resume, or finish the outputs)."""
    run_dir = Path(config.run_dir)
    path = latest(run_dir)
    epoch = int(json.loads((path / "state.json").read_text())["epoch"])
    try:  # the outputs of a run whose last epochs came after its last checkpoint
        history = json.loads((run_dir / "history.json").read_text())
        epoch = max([epoch, *(int(row["epoch"]) for row in history["epochs"] if row.get("kind") != "updates")])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if epoch < config.epochs or not (run_dir / "model.keras").is_file():
        return None
    return (
        f"{run_dir} already finished: {epoch} of {config.epochs} epochs trained; "
        "nothing to do (a larger --epochs trains on)"
    )


def load(path: Path, layout: FlatLayout) -> tuple[np.ndarray, list[np.ndarray], dict[str, Any]]:
    """Weights, optimizer values and state of a checkpoint written for this model."""
    try:
        state = json.loads((path / "state.json").read_text())
        weights = np.load(path / "weights.npy", allow_pickle=False)
        with np.load(path / "optimizer.npz", allow_pickle=False) as archive:
            optimizer_values = [archive[k] for k in sorted(archive.files)]
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from None
    if state.get("fingerprint") != fingerprint(layout) or weights.shape != (layout.size,):
        raise CheckpointError(f"checkpoint {path} was written by a different model (variable shapes differ)")
    return weights, optimizer_values, state


def optimizer_values(optimizer: Any) -> list[np.ndarray]:
    return [np.asarray(v.numpy()) for v in optimizer.variables]


def restore_optimizer(optimizer: Any, trainable_variables: list[Any], values: list[np.ndarray], where: Path) -> None:
    if not values:
        return
    if not optimizer.built:
        optimizer.build(trainable_variables)
    if len(optimizer.variables) != len(values):
        raise CheckpointError(
            f"checkpoint {where}: optimizer has {len(optimizer.variables)} variables, checkpoint {len(values)}"
        )
    for variable, value in zip(optimizer.variables, values):
        variable.assign(value)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to a checkpoint")
