"""Learning-rate scaling and warmup applied to a Keras optimizer in place."""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .rules import lr_factor


class LearningRateControl:
    """Sets `target.learning_rate` to base * lr_factor(progress) as training
    goes; the target is a Keras optimizer or anything with that attribute
    (the GEM proxy). With no target or no scaling and warmup it does nothing."""

    def __init__(self, target: Any, workers: int, scaling: str, warmup_epochs: float) -> None:
        self.target = target
        self.workers = workers
        self.scaling = scaling
        self.warmup_epochs = warmup_epochs
        self.active = target is not None and (scaling != "none" or warmup_epochs > 0)
        self.base = 0.0
        self._factor: float | None = None
        if self.active:
            import keras

            if isinstance(getattr(target, "_learning_rate", None), keras.optimizers.schedules.LearningRateSchedule):
                raise ConfigError("--lr-scaling and --warmup-epochs need a constant learning rate, not a schedule")
            self.base = float(target.learning_rate)
            self.update(0.0)

    def update(self, progress_epochs: float) -> None:
        if not self.active:
            return
        factor = lr_factor(progress_epochs, self.workers, self.scaling, self.warmup_epochs)
        if factor != self._factor:
            self.target.learning_rate = self.base * factor
            self._factor = factor
