"""Validation on the rank that holds the central model."""
from __future__ import annotations

from typing import Any


def evaluate(model: Any, data: tuple[Any, ...] | None, batch_size: int) -> dict[str, float]:
    """Loss and compiled metrics over the validation samples, as model.evaluate computes them.
    `data` is (x, y) or (x, y, sample_weight); x and y may be lists of arrays (several inputs/outputs)."""
    if data is None:
        return {}
    x, y, *weights = data
    result = model.evaluate(x, y, sample_weight=weights[0] if weights else None, batch_size=max(batch_size, 256),
                            verbose=0, return_dict=True)
    return {name: float(value) for name, value in result.items()}
