"""The Wasserstein critic of WGAN-VGG (Yang et al. 2018), also the critic of the natural invariances."""

from __future__ import annotations

import torch
from torch import nn


class WGANCritic(nn.Module):
    """The Wasserstein critic of WGAN-VGG: scores how much a patch looks like a real one.

    Six 3x3 convolutions (64, 64, 128, 128, 256, 256 channels; strides 1, 2, 1, 2, 1, 2; no padding;
    LeakyReLU), then FC ``hidden``, LeakyReLU, FC 1. The forward pass maps ``(B, 1, P, P)``
    normalized patches to ``(B, 1)`` scores (no sigmoid: a Wasserstein critic); another patch size
    is a ``ValueError``.

    Parameters
    ----------
    patch_size : int
        The fixed side ``P`` of the patches, in pixels (at least 29).
    width : float
        Scales every layer's channels (1: Yang et al.'s critic; the natural-invariance critic uses 0.25).
    hidden : int
        Size of the first fully connected layer.

    Raises
    ------
    ValueError
        A patch size too small for the six convolutions.

    Examples
    --------
    >>> import torch
    >>> from ctinv_utils import WGANCritic
    >>> WGANCritic(80)(torch.zeros(2, 1, 80, 80)).shape
    torch.Size([2, 1])
    """

    CHANNELS_STRIDES = ((1, 64, 1), (64, 64, 2), (64, 128, 1), (128, 128, 2), (128, 256, 1), (256, 256, 2))

    def __init__(self, patch_size: int, width: float = 1.0, hidden: int = 1024):
        super().__init__()
        layers: list[nn.Module] = []
        n = patch_size
        ch = lambda c: c if c == 1 else max(1, int(round(c * width)))  # noqa: E731
        for c_in, c_out, stride in self.CHANNELS_STRIDES:
            layers += [nn.Conv2d(ch(c_in), ch(c_out), 3, stride, 0), nn.LeakyReLU()]
            n = (n - 3) // stride + 1
        if n < 1:
            raise ValueError(f"patch size {patch_size} is too small for the critic (six 3x3 convolutions, three of stride 2)")
        self.feature_size = n
        self.net = nn.Sequential(*layers)
        self.patch_size = int(patch_size)
        self.fc1 = nn.Linear(ch(256) * n * n, hidden)
        self.fc2 = nn.Linear(hidden, 1)
        self.lrelu = nn.LeakyReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.patch_size, self.patch_size):
            raise ValueError(f"the critic was built for {self.patch_size}x{self.patch_size} patches, got "
                             f"{tuple(x.shape[-2:])}; tile larger images (see NaturalInvariance.critic_scores)")
        out = self.net(x).flatten(1)
        return self.fc2(self.lrelu(self.fc1(out)))
