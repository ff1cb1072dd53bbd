"""The residual denoising network of ldct-benchmark (noise subtraction with grouped-conv blocks)."""

from __future__ import annotations

import torch
from torch import nn

from .sizes import check_input


class ResBlock(nn.Module):
    """Conv 3x3 -> BN -> ReLU -> grouped Conv 3x3 (8 groups) -> BN -> ReLU -> Conv 1x1, plus the input."""

    def __init__(self, ch: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.BatchNorm2d(ch),
            nn.ReLU(),
            nn.Conv2d(ch, ch, 3, padding=1, groups=8),
            nn.BatchNorm2d(ch),
            nn.ReLU(),
            nn.Conv2d(ch, ch, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + x


class ResNet(nn.Module):
    """Conv 1->n_channels 9x9, ``n_blocks`` :class:`ResBlock`, Conv n_channels->1 3x3; the output is
    subtracted from the input (the network predicts the noise).

    ``(B, 1, H, W)`` normalized in and out, any size (all convolutions are padded). Evaluated in
    ``eval()`` mode the BatchNorm layers use their stored running statistics. Parameter names
    (``in_conv.weight``, ``blocks.0.layers.1.running_mean`` ...) and constructor arguments
    (``n_channels``, a multiple of 8, and ``n_blocks``) are ldct-benchmark's
    (``ldctbench.methods.resnet.network.Model``; its ``args`` is unused and dropped)."""

    DISPLAY = "ResNet"

    def __init__(self, n_channels: int = 128, n_blocks: int = 10):
        super().__init__()
        if n_channels % 8:
            raise ValueError(f"n_channels must be a multiple of 8 (the blocks use 8 groups), got {n_channels}")
        self.n_blocks = n_blocks
        self.in_conv = nn.Conv2d(1, n_channels, 9, padding=4)
        self.out_conv = nn.Conv2d(n_channels, 1, 3, padding=1)
        self.blocks = nn.ModuleList([ResBlock(n_channels) for _ in range(n_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.DISPLAY)
        res = x
        x = self.in_conv(x)
        for block in self.blocks:
            x = block(x)
        x = self.out_conv(x)
        return res - x
