"""Validation on the rank that holds the central model."""
from __future__ import annotations

from typing import Any

import numpy as np


def evaluate(model: Any, data: tuple[np.ndarray, np.ndarray] | None, batch_size: int) -> dict[str, float]:
    """Loss and compiled metrics over the validation samples, as model.evaluate computes them."""
    if data is None:
        return {}
    x, y = data
    result = model.evaluate(x, y, batch_size=max(batch_size, 256), verbose=0, return_dict=True)
    return {name: float(value) for name, value in result.items()}
