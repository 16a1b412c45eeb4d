"""The validation seam of the epoch-end path.

Rank 0's supervisor asks a `Validator` for the metrics at every epoch end,
at --validate-every points and at the end of the run; background validation
asks a twin of it bound to a copy of the model. `InlineValidator` evaluates
the samples rank 0 holds; the distributed validators of roles/spread.py
implement the same protocol (their `evaluate` is where the other ranks join
in, from their own loops).
"""

from __future__ import annotations

from typing import Any, Protocol

from ..config import DataConfig
from ..data.pipeline import NodeContext
from ..data.sources import Source
from ..data.validation import ValidationReader, sharded, validation_pieces
from .validation import evaluate


class Validator(Protocol):
    # False without validation samples: epoch rows carry the training counts only.
    available: bool

    def evaluate(self, epoch: float) -> dict[str, float]:
        """Loss and compiled metrics of the model, named as Model.evaluate names them ({} without data)."""

    def twin(self, model: Any) -> "Validator":
        """The same validation of another model of the same architecture (background validation's copy)."""

    def release(self) -> None:
        """After the final validation: ranks that wait to join in go on to the end of the run."""


class InlineValidator:
    """Model.evaluate over the validation samples of rank 0, streamed (data/validation.py)."""

    def __init__(self, model: Any, reader: ValidationReader | None) -> None:
        self.model, self.reader = model, reader
        self.available = reader is not None

    def evaluate(self, epoch: float) -> dict[str, float]:
        return evaluate(self.model, self.reader)

    def twin(self, model: Any) -> "InlineValidator":
        return InlineValidator(model, self.reader)

    def release(self) -> None:
        pass


def validation_reader(data: DataConfig, source: Source | None, node: NodeContext) -> ValidationReader | None:
    """Rank 0's reader of every validation sample (held in memory once with --preload)."""
    if source is None:
        return None
    pieces = validation_pieces(source.counts, 1, 0) if sharded(source) else None
    return ValidationReader(
        source,
        pieces,
        data.batch_size,
        data.prefetch,
        data.preload,
        data.memory_limit_bytes,
        node.available,
        node.ranks,
    )
