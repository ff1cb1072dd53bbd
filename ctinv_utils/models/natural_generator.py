"""The natural-invariance generator network g(z|x): a conditional multi-scale CNN whose output is
``x + delta`` (trained in :mod:`ctinv_utils.synthesis.natural`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConditionalGenerator(nn.Module):
    """g(z|x): ``(B, 1, H, W)`` normalized in and out, H and W divisible by :attr:`factor`."""

    def __init__(self, channels=(64, 64, 48, 32, 32), z_channels: int = 4, init_delta_std: float = 0.1):
        super().__init__()
        self.channels, self.z_channels = tuple(int(c) for c in channels), int(z_channels)
        if len(self.channels) < 1 or min(self.channels) < 1 or self.z_channels < 1:
            raise ValueError(f"need at least one stage with >= 1 channel and z_channels >= 1, got {channels}, {z_channels}")
        self.factor = 2 ** (len(self.channels) - 1)
        blocks, c_prev = [], 0
        for c in self.channels:
            blocks.append(nn.Sequential(
                nn.Conv2d(c_prev + 1 + self.z_channels, c, 3, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.2)))
            c_prev = c
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(c_prev, 1, 3, padding=1)
        with torch.no_grad():  # start like the image-domain method: g(z|x) = x + a z-texture of std init_delta_std
            self.out.bias.zero_()
            probe = torch.randn(4, 1, 4 * self.factor, 4 * self.factor, generator=torch.Generator().manual_seed(0))
            delta = self(probe, self.noise(4, *probe.shape[-2:], torch.Generator().manual_seed(1))) - probe
            self.out.weight.mul_(init_delta_std / float(delta.std().clamp_min(1e-12)))

    def check_size(self, height: int, width: int) -> None:
        if height % self.factor or width % self.factor or min(height, width) < self.factor:
            f = self.factor
            raise ValueError(f"image size {height}x{width} does not work with this generator: {len(self.channels)} stages "
                             f"need sizes divisible by {f} (e.g. {', '.join(str(f * k) for k in (5, 8, 16, 32))}); "
                             "crop or pad the image")

    def noise(self, batch: int, height: int, width: int, generator: torch.Generator | None = None,
              device="cpu") -> list[torch.Tensor]:
        """z: one ``(batch, z_channels, h_i, w_i)`` standard-normal tensor per stage (drawn on the CPU)."""
        out = []
        for i in range(len(self.channels)):
            s = 2 ** (len(self.channels) - 1 - i)
            out.append(torch.randn(batch, self.z_channels, height // s, width // s, generator=generator).to(device))
        return out

    def forward(self, x: torch.Tensor, z: list[torch.Tensor]) -> torch.Tensor:
        self.check_size(*x.shape[-2:])
        h = None
        for i, block in enumerate(self.blocks):
            s = 2 ** (len(self.blocks) - 1 - i)
            cond = F.avg_pool2d(x, s) if s > 1 else x  # d_i(x): the condition at this stage's resolution
            parts = [cond, z[i]] if h is None else [F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False), cond, z[i]]
            h = block(torch.cat(parts, dim=1))
        return x + self.out(h)
