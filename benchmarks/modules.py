"""A plain PyTorch model for the `ddp` benchmark: `--model benchmarks/modules.py:build`.

The same shape as the calo-cnn demo model (two 3D convolutions, pooling, a
small dense classifier), written as a torch.nn.Module that returns logits.
It takes the calorimeter samples as they are stored, channels last
(N, D, H, W, 1), so mpilearn and DistributedDataParallel feed it the same
arrays. The class is defined at module level so that saving the model
(model.keras pickles the module) works.
"""

from __future__ import annotations

import torch
from torch import nn


def _pooled(size: int) -> int:
    return ((size - 2) // 2 - 2) // 2


class CaloCNN(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, filters: int = 8, dense: int = 32) -> None:
        super().__init__()
        depth, height, width = input_shape[:3]
        channels = input_shape[3] if len(input_shape) == 4 else 1
        self.features = nn.Sequential(
            nn.Conv3d(channels, filters, 3),
            nn.ReLU(),
            nn.MaxPool3d(2),
            nn.Conv3d(filters, 2 * filters, 3),
            nn.ReLU(),
            nn.MaxPool3d(2),
        )
        flat = 2 * filters * _pooled(depth) * _pooled(height) * _pooled(width)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, dense), nn.ReLU(), nn.Linear(dense, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # (N, D, H, W)
            x = x.unsqueeze(1)
        elif x.shape[-1] == 1:  # (N, D, H, W, 1): a view with the usual channels-first strides
            x = x.reshape(x.shape[0], 1, *x.shape[1:4])
        else:  # channels last -> channels first, in the usual memory layout
            x = x.permute(0, 4, 1, 2, 3).contiguous()
        return self.classifier(self.features(x))


def build(
    input_shape: tuple[int, ...] = (25, 25, 25, 1), num_classes: int = 3, filters: int = 8, dense: int = 32
) -> CaloCNN:
    return CaloCNN(tuple(input_shape), num_classes, filters, dense)
