"""Learning-rate scaling, warmup and the staleness rule applied to a Keras optimizer in place."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .rules import lr_factor, staleness_factor


class LearningRateControl:
    """Sets `target.learning_rate` to base * lr_factor(progress) as training
    goes (and / staleness under the staleness rule); the target is a Keras
    optimizer or anything with that attribute (the GEM proxy). With no target
    or no scaling and warmup it does nothing."""

    def __init__(self, target: Any, workers: int, scaling: str, warmup_epochs: float | None) -> None:
        self.target = target
        self.workers = workers
        self.scaling = scaling
        self.warmup_epochs = warmup_epochs or 0.0
        self.active = target is not None and (scaling not in ("none", "auto") or self.warmup_epochs > 0)
        self.base = 0.0
        self._factor: float | None = None
        if self.active:
            import keras

            if isinstance(getattr(target, "_learning_rate", None), keras.optimizers.schedules.LearningRateSchedule):
                raise ConfigError(
                    "--lr-scaling and --warmup-epochs need a constant learning rate, not a schedule "
                    "(pass --lr-scaling none --warmup-epochs 0 to keep the schedule)"
                )
            self.base = float(target.learning_rate)
            self.update(0.0)

    def update(self, progress_epochs: float, staleness: int = 0) -> None:
        """`staleness`: master steps between the weights an asynchronous update was computed on and now."""
        if not self.active:
            return
        factor = lr_factor(progress_epochs, self.workers, self.scaling, self.warmup_epochs)
        if self.scaling == "staleness":
            factor *= staleness_factor(staleness)
        if factor != self._factor:
            self.target.learning_rate = self.base * factor
            self._factor = factor
