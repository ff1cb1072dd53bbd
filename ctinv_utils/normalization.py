"""The one normalizer between HU and the networks' input scale.

Convention (ldct-benchmark's, so its published checkpoints can be analysed):
``x_norm = (HU + 1024 - 481.454) / 502.185``. ldct-benchmark stores images as HU + 1024 and
standardises with the training-set mean 481.454 and std 502.185 of those values. So water
(0 HU) maps to +1.0804 and air (-1000 HU) to -0.9111; one unit is 502.185 HU.
"""

from __future__ import annotations

HU_OFFSET = 1024.0
MEAN = 481.45419786099086
STD = 502.18507379395044


def hu_to_norm(image_hu):
    """HU -> normalized network scale (works on numpy arrays and torch tensors)."""
    return (image_hu + (HU_OFFSET - MEAN)) / STD


def norm_to_hu(x_norm):
    """Normalized network scale -> HU (inverse of :func:`hu_to_norm`)."""
    return x_norm * STD - (HU_OFFSET - MEAN)


def hu_difference_to_norm(delta_hu):
    """A difference in HU (e.g. an attack budget) -> normalized units. No offset."""
    return delta_hu / STD


def norm_difference_to_hu(delta_norm):
    """A difference in normalized units -> HU. No offset."""
    return delta_norm * STD
