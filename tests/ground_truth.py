"""Denoisers whose invariances are known exactly, shared by the synthesis tests."""

import torch


class IdealLowPass(torch.nn.Module):
    """Keeps Fourier components below ``cutoff`` cycles/pixel, removes the rest: its null space is
    every frequency above the cut-off, everywhere in the image."""

    def __init__(self, cutoff=0.15):
        super().__init__()
        self.cutoff = cutoff

    def passband(self, h: int, w: int) -> torch.Tensor:
        """1 where a frequency of an (h, w) image passes, 0 where it is removed (fft2 layout)."""
        fy, fx = torch.fft.fftfreq(h), torch.fft.fftfreq(w)
        return ((fy[:, None] ** 2 + fx[None, :] ** 2).sqrt() < self.cutoff).float()

    def forward(self, x):
        return torch.fft.ifft2(torch.fft.fft2(x) * self.passband(*x.shape[-2:]).to(x.dtype)).real

    def stopband_fraction(self, delta: torch.Tensor) -> float:
        """Fraction of the energy of ``delta`` (..., H, W) that this filter removes (Parseval)."""
        power = torch.fft.fft2(delta).abs() ** 2
        return float((power * (1 - self.passband(*delta.shape[-2:]))).sum() / power.sum())
