"""WGAN-VGG (Yang et al., IEEE TMI 37(6), 2018): the generator, i.e. the denoiser (its critic is in ``critic``)."""

from __future__ import annotations

import torch
from torch import nn


class WGANVGG(nn.Module):
    """The WGAN-VGG generator: 8 conv layers 3x3 with 32 channels, ReLU after the first 7.

    ``(B, 1, H, W)`` normalized in and out. Keys ``net.0.weight`` ... ``net.14.weight`` match
    ldct-benchmark's WGAN-VGG generator."""

    def __init__(self, channels: int = 32, n_layers: int = 8):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, 1, 1), nn.ReLU()]
        for _ in range(n_layers - 2):
            layers += [nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU()]
        layers.append(nn.Conv2d(channels, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

