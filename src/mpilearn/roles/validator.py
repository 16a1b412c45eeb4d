"""The validation seam of the epoch-end path.

Rank 0's supervisor asks a `Validator` for the metrics at every epoch end,
at --validate-every points and at the end of the run; background validation
asks a twin of it bound to a copy of the model. `InlineValidator` evaluates
the samples rank 0 holds; a distributed validator implements the same
protocol (its `evaluate` is where the other ranks would join in).
"""
from __future__ import annotations

from typing import Any, Protocol

from .validation import evaluate


class Validator(Protocol):
    # False without validation samples: epoch rows carry the training counts only.
    available: bool

    def evaluate(self, epoch: float) -> dict[str, float]:
        """Loss and compiled metrics of the model, named as Model.evaluate names them ({} without data)."""

    def twin(self, model: Any) -> "Validator":
        """The same validation of another model of the same architecture (background validation's copy)."""


class InlineValidator:
    """Model.evaluate over the validation samples loaded on rank 0."""

    def __init__(self, model: Any, data: tuple[Any, ...] | None, batch_size: int) -> None:
        self.model, self.data, self.batch_size = model, data, batch_size
        self.available = data is not None

    def evaluate(self, epoch: float) -> dict[str, float]:
        return evaluate(self.model, self.data, self.batch_size)

    def twin(self, model: Any) -> "InlineValidator":
        return InlineValidator(model, self.data, self.batch_size)
