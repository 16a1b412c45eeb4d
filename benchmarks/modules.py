"""A plain PyTorch model for the `ddp` benchmark: `--model benchmarks/modules.py:build`.

The same shape as the calo-cnn demo model (two 3D convolutions, pooling, a
small dense classifier), written as a torch.nn.Module that returns logits.
It takes the calorimeter samples as they are stored, channels last
(N, D, H, W, 1), so mpilearn and DistributedDataParallel feed it the same arrays.
"""
from __future__ import annotations

from typing import Any


def build(input_shape: tuple[int, ...] = (25, 25, 25, 1), num_classes: int = 3, filters: int = 8, dense: int = 32) -> Any:
    import torch
    from torch import nn

    depth, height, width = input_shape[:3]
    channels = input_shape[3] if len(input_shape) == 4 else 1

    def pooled(size: int) -> int:
        return ((size - 2) // 2 - 2) // 2

    class CaloCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv3d(channels, filters, 3), nn.ReLU(), nn.MaxPool3d(2),
                nn.Conv3d(filters, 2 * filters, 3), nn.ReLU(), nn.MaxPool3d(2),
            )
            flat = 2 * filters * pooled(depth) * pooled(height) * pooled(width)
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, dense), nn.ReLU(), nn.Linear(dense, num_classes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.dim() == 5:  # channels last -> channels first
                x = x.permute(0, 4, 1, 2, 3)
            else:
                x = x.unsqueeze(1)
            return self.classifier(self.features(x))

    return CaloCNN()
