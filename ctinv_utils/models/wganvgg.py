"""WGAN-VGG (Yang et al., IEEE TMI 37(6), 2018): the generator, i.e. the denoiser (its critic is in ``critic``)."""

from __future__ import annotations

import torch
from torch import nn


class WGANVGG(nn.Module):
    """The WGAN-VGG generator (Yang et al. 2018), the denoiser: 3x3 convolutions, ReLU after all but the last.

    The keys ``net.0.weight`` ... ``net.14.weight`` match ldct-benchmark's WGAN-VGG generator. The
    forward pass maps ``(B, 1, H, W)`` normalized images to the same shape, any H, W.

    Parameters
    ----------
    channels : int
        Channels of the hidden layers (the paper: 32).
    n_layers : int
        Convolutions in all (the paper: 8).

    Examples
    --------
    >>> import torch
    >>> from ctinv_utils import WGANVGG
    >>> WGANVGG()(torch.zeros(1, 1, 40, 40)).shape
    torch.Size([1, 1, 40, 40])
    """

    def __init__(self, channels: int = 32, n_layers: int = 8):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, 1, 1), nn.ReLU()]
        for _ in range(n_layers - 2):
            layers += [nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU()]
        layers.append(nn.Conv2d(channels, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

