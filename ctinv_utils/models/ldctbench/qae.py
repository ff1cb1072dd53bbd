"""The quadratic autoencoder QAE (Fan et al., IEEE TMI 39(6), 2020) as ldct-benchmark builds it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .sizes import check_input

PADDINGS = ("valid", "same")


def _quadratic_parameters(module: nn.Module, weight_shape: list[int], out_channels: int) -> None:
    """W_r truncated normal (std 0.1, cut at 2 std), W_g = W_b = 0, b_r = b_b = 0, b_g = 1: the layer
    starts linear (ldct-benchmark's and the authors' initialisation)."""
    w_r = torch.empty(weight_shape)
    nn.init.trunc_normal_(w_r, mean=0.0, std=0.1, a=-0.2, b=0.2)
    module.W_r = nn.Parameter(w_r)
    module.W_g = nn.Parameter(torch.zeros(weight_shape))
    module.W_b = nn.Parameter(torch.zeros(weight_shape))
    module.b_r = nn.Parameter(torch.zeros(out_channels))
    module.b_g = nn.Parameter(torch.ones(out_channels))
    module.b_b = nn.Parameter(torch.zeros(out_channels))


def _check_padding(padding: str) -> str:
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    return padding


class QuadConv(nn.Module):
    """Quadratic convolution ``(W_r*x + b_r)(W_g*x + b_g) + W_b*x^2 + b_b`` (stride 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: str = "valid"):
        super().__init__()
        k = [kernel_size, kernel_size] if isinstance(kernel_size, int) else list(kernel_size)
        self.padding = _check_padding(padding)
        _quadratic_parameters(self, [out_channels, in_channels, *k], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = F.conv2d(x, self.W_r, self.b_r, stride=1, padding=self.padding)
        x2 = F.conv2d(x, self.W_g, self.b_g, stride=1, padding=self.padding)
        x3 = F.conv2d(x * x, self.W_b, self.b_b, stride=1, padding=self.padding)
        return x1 * x2 + x3


class QuadDeconv(nn.Module):
    """Quadratic transposed convolution (stride 1; ``same`` pads by ceil((k-1)/2))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: str = "valid"):
        super().__init__()
        self.kernel_size = [kernel_size, kernel_size] if isinstance(kernel_size, int) else list(kernel_size)
        self.padding = _check_padding(padding)
        _quadratic_parameters(self, [in_channels, out_channels, *self.kernel_size], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = math.ceil((self.kernel_size[0] - 1) / 2) if self.padding == "same" else 0
        x1 = F.conv_transpose2d(x, self.W_r, self.b_r, stride=1, padding=(pad, pad))
        x2 = F.conv_transpose2d(x, self.W_g, self.b_g, stride=1, padding=(pad, pad))
        x3 = F.conv_transpose2d(x * x, self.W_b, self.b_b, padding=(pad, pad))
        return x1 * x2 + x3


class QAE(nn.Module):
    """Five quadratic convolutions 3x3 (15 features; the last one valid), five quadratic transposed
    convolutions back, ReLUs, skip connections after layers 4 and 2, and the input added at the end.

    ``(B, 1, H, W)`` normalized in and out, any ``H, W >= 3`` (no divisibility needed). Parameter names
    (``encoder.0.W_r`` ... ``decoder.4.b_b``) are ldct-benchmark's (``ldctbench.methods.qae.network.Model``,
    whose only constructor argument ``args`` is unused and dropped)."""

    MIN_SIZE = 3
    DISPLAY = "QAE"

    def __init__(self):
        super().__init__()
        self.encoder = nn.ModuleList([
            QuadConv(1, 15, 3, "same"),
            QuadConv(15, 15, 3, "same"),
            QuadConv(15, 15, 3, "same"),
            QuadConv(15, 15, 3, "same"),
            QuadConv(15, 15, 3, "valid"),
        ])
        self.decoder = nn.ModuleList([
            QuadDeconv(15, 15, 3, "valid"),
            QuadDeconv(15, 15, 3, "same"),
            QuadDeconv(15, 15, 3, "same"),
            QuadDeconv(15, 15, 3, "same"),
            QuadDeconv(15, 1, 3, "same"),
        ])
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.DISPLAY, min_size=self.MIN_SIZE)
        x1 = self.relu(self.encoder[0](x))
        x2 = self.relu(self.encoder[1](x1))
        x3 = self.relu(self.encoder[2](x2))
        x4 = self.relu(self.encoder[3](x3))
        x5 = self.relu(self.encoder[4](x4))
        x6 = self.relu(self.decoder[0](x5) + x4)
        x7 = self.relu(self.decoder[1](x6))
        x8 = self.relu(self.decoder[2](x7) + x2)
        x9 = self.relu(self.decoder[3](x8))
        return self.decoder[4](x9) + x
