"""What every role needs, built the same way on every rank."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..backends import ModelBackend
from ..comm import Communicator
from ..comm.topology import Topology
from ..config import RunConfig
from ..data.sources import Source
from ..history import History


@dataclass
class Job:
    config: RunConfig
    comm: Communicator
    topology: Topology
    backend: ModelBackend
    train: Source
    # Validation samples, loaded on the rank that validates (master or solo).
    validation: tuple[np.ndarray, np.ndarray] | None
    history: History
    # Called after each validation with the epoch row; returns True to stop training.
    on_epoch_end: Callable[[dict[str, Any]], bool]
    run_dir: Path | None = None

    @property
    def model(self) -> Any:
        return self.backend.model
