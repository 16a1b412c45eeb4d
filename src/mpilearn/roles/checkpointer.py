"""Rank 0 writes a checkpoint at an epoch end when one is due (--checkpoint-every, --checkpoint-every-seconds)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import checkpoint
from ..algorithms import defaults
from ..backends import ModelBackend
from ..config import RunConfig
from ..history import History
from ..log import get_logger
from ..timeline import Timeline


class Checkpointer:
    def __init__(
        self, config: RunConfig, backend: ModelBackend, history: History, timeline: Timeline, run_dir: Path
    ) -> None:
        self.config, self.backend, self.history, self.timeline, self.run_dir = (
            config,
            backend,
            history,
            timeline,
            run_dir,
        )
        self._last = time.monotonic()

    def due(self, completed_epochs: int) -> bool:
        settings = self.config.checkpoint
        return bool(
            settings.enabled
            and (
                (settings.every_epochs and completed_epochs % settings.every_epochs == 0)
                or (settings.every_seconds and time.monotonic() - self._last >= settings.every_seconds)
            )
        )

    def __call__(self, completed_epochs: int, optimizer: Any, force: bool = False) -> None:
        """After `completed_epochs`: the central weights and the state of `optimizer` (the one that steps
        them on this rank, None when none does), when a checkpoint is due (`force`: stopping for a signal,
        with checkpoints on)."""
        if not (self.due(completed_epochs) or (force and self.config.checkpoint.enabled)):
            return
        with self.timeline.span("checkpoint"):
            weights = np.empty(self.backend.layout.size, dtype=np.float32)
            self.backend.get_weights(weights)
            state: dict[str, Any] = {
                "config": self.config.to_dict(),
                "fingerprint": checkpoint.fingerprint(self.backend.layout),
                "history": self.history.snapshot(),
            }
            self.backend.sync_optimizer()
            sliced = hasattr(optimizer, "checkpoint_values")  # sharded servers: the state of every slice, merged
            if sliced:
                values = optimizer.checkpoint_values()
                state["sliced_optimizer"] = True
            else:
                values = checkpoint.optimizer_values(optimizer) if optimizer is not None else []
            path = checkpoint.save(self.run_dir, completed_epochs, weights, values, state, self.config.checkpoint.keep)
        self._last = time.monotonic()
        get_logger().info("checkpoint %s", path)


def restore_state(optimizer: Any, backend: ModelBackend, values: list[np.ndarray], where: Path, algorithm: Any) -> None:
    """A checkpoint's optimizer state into `optimizer` (the one `backend` steps with). When the loops control
    the rate, the compiled rate comes back: the saved one is already scaled (or warmed up, or staleness-divided)."""
    compiled_lr = defaults.constant_rate(optimizer)
    checkpoint.restore_optimizer(optimizer, backend.model.trainable_variables, values, where)
    if compiled_lr is not None and defaults.rate_is_controlled(algorithm):
        optimizer.learning_rate = compiled_lr
    backend.reload_optimizer()
