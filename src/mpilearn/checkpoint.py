"""Checkpoints: written atomically, kept K deep, read back for --resume.

A checkpoint is a directory RUN_DIR/checkpoints/ckpt-EEEEE holding
- weights.npy: the central model as one flat float32 vector (FlatLayout order),
- optimizer.npz: every variable of the optimizer that applies updates,
- state.json: completed epochs, the history so far, the run config, and the
  model's fingerprint (variable shapes) to refuse a different model.
No pickle anywhere. Data positions and random states need no saving: batch
order and dropout seeds are functions of (seed, worker, epoch), so a run
resumed at an epoch boundary replays exactly what it would have done.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError
from .flat import FlatLayout

CHECKPOINTS = "checkpoints"
PREFIX = "ckpt-"


def fingerprint(layout: FlatLayout) -> dict[str, Any]:
    return {"trainable": [list(s) for s in layout.trainable_shapes], "state": [list(s) for s in layout.state_shapes]}


def save(
    run_dir: Path, epoch: int, weights: np.ndarray, optimizer_values: list[np.ndarray], state: dict[str, Any], keep: int
) -> Path:
    """Write checkpoint `epoch` (completed epochs) and drop all but the newest `keep`."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        np.save(tmp / "weights.npy", weights, allow_pickle=False)
        np.savez(tmp / "optimizer.npz", **{f"v{i:05d}": v for i, v in enumerate(optimizer_values)})  # type: ignore[arg-type]
        (tmp / "state.json").write_text(json.dumps({**state, "epoch": epoch}, indent=1, default=_plain))
        for file in tmp.iterdir():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        final = root / f"{PREFIX}{epoch:05d}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(root.glob(f"{PREFIX}*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(run_dir: Path) -> Path:
    root = run_dir / CHECKPOINTS
    found = sorted(p for p in root.glob(f"{PREFIX}*") if (p / "state.json").exists()) if root.is_dir() else []
    if not found:
        raise CheckpointError(f"--resume {run_dir}: no checkpoint in {root} (train with --checkpoint-every to write them)")
    return found[-1]


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
        raise CheckpointError(f"checkpoint {where}: optimizer has {len(optimizer.variables)} variables, checkpoint {len(values)}")
    for variable, value in zip(optimizer.variables, values):
        variable.assign(value)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to a checkpoint")
