"""CNN-10 (Chen et al., "Low-dose CT denoising with convolutional neural network", ISBI 2017)."""

from __future__ import annotations

import torch
from torch import nn


class CNN10(nn.Module):
    """CNN-10 (Chen et al. 2017): Conv 1->64 9x9, ReLU, Conv 64->32 3x3, ReLU, Conv 32->1 5x5.

    Same padding, no residual, 24,513 parameters; trained with an L2 loss. The state-dict keys
    (``layers.0.weight`` ...) are those of ldct-benchmark's CNN-10, so its published checkpoints
    load directly (:func:`ctinv_utils.models.load_state_dict_into`).

    The forward pass maps ``(B, 1, H, W)`` normalized images to the same shape, any H, W.

    Examples
    --------
    >>> import torch
    >>> from ctinv_utils import CNN10
    >>> CNN10()(torch.zeros(2, 1, 48, 48)).shape
    torch.Size([2, 1, 48, 48])
    """

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
