"""Gauss+RI: a Gaussian filter with a rectangular invariance (the talk's known-answer denoiser)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def central_square(height: int, width: int, size: int = 30) -> tuple[slice, slice]:
    """Row and column slices of the centred ``size`` x ``size`` square (start = (H - size) // 2)."""
    if height < size or width < size:
        raise ValueError(f"image {height}x{width} is smaller than the {size}x{size} invariant square")
    r0, c0 = (height - size) // 2, (width - size) // 2
    return slice(r0, r0 + size), slice(c0, c0 + size)


def gaussian_kernel_1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Normalized 1-D Gaussian with radius ``int(truncate * sigma + 0.5)`` (as scipy.ndimage)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


class GaussRI(nn.Module):
    """Gauss+RI, the talk's known-answer denoiser: a Gaussian blur whose output is zero in a central square.

    Every input change inside the square that the blur does not carry outside it is invisible in the
    output, so the invariances are known exactly. Zero is in normalized units (-542.5 HU). Borders
    are mirror-padded (scipy.ndimage mode 'mirror'). No parameters, any device. The forward pass maps
    ``(B, 1, H, W)`` normalized images, H, W >= ``square``, to the same shape.

    Parameters
    ----------
    sigma : float
        Standard deviation of the Gaussian, in pixels (kernel radius ``int(4 sigma + 0.5)``).
    square : int
        Side of the central square set to zero, in pixels (``start = (H - square) // 2``).

    Examples
    --------
    >>> import torch
    >>> from ctinv_utils import GaussRI
    >>> y = GaussRI()(torch.ones(1, 1, 64, 64))
    >>> float(y[0, 0, 32, 32]), round(float(y[0, 0, 0, 0]), 4)
    (0.0, 1.0)
    """

    def __init__(self, sigma: float = 1.0, square: int = 30):
        super().__init__()
        self.sigma, self.square = float(sigma), int(square)
        self.register_buffer("kernel", gaussian_kernel_1d(sigma), persistent=False)  # float64; cast per call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel.to(dtype=x.dtype, device=x.device)
        r = (k.numel() - 1) // 2
        B, C, H, W = x.shape
        y = F.pad(x.reshape(B * C, 1, H, W), (r, r, r, r), mode="reflect")
        y = F.conv2d(y, k.view(1, 1, 1, -1))
        y = F.conv2d(y, k.view(1, 1, -1, 1)).reshape(B, C, H, W)
        rows, cols = central_square(H, W, self.square)
        mask = torch.ones(H, W, dtype=x.dtype, device=x.device)
        mask[rows, cols] = 0
        return y * mask

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, square={self.square}x{self.square}, radius={math.floor(4 * self.sigma + 0.5)}"
