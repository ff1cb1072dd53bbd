"""CNN-10 (Chen et al., "Low-dose CT denoising with convolutional neural network", ISBI 2017)."""

from __future__ import annotations

import torch
from torch import nn


class CNN10(nn.Module):
    """Conv 1->64 9x9, ReLU, Conv 64->32 3x3, ReLU, Conv 32->1 5x5; same padding, no residual.

    ``(B, 1, H, W)`` normalized in and out. Trained with an L2 loss. The module list is called
    ``layers`` with the ReLUs at indices 1 and 3, so the state-dict keys (``layers.0.weight`` ...)
    are those of ldct-benchmark's CNN-10 and its published checkpoints load directly
    (see :func:`ctinv_utils.models.load_state_dict_into`)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.Conv2d(1, 64, 9, padding=4), nn.ReLU(),
            nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 1, 5, padding=2),
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
