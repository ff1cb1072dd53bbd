"""Units: HU <-> the networks' normalized scale, and the talk's HU display windows.

Normalization (ldct-benchmark's convention, so its published checkpoints can be analysed):
``x_norm = (HU + 1024 - 481.454) / 502.185``. ldct-benchmark stores images as HU + 1024 and
standardises with the training-set mean 481.454 and std 502.185 of those values. So water
(0 HU) maps to +1.0804 and air (-1000 HU) to -0.9111; one unit is 502.185 HU.

Windows: lung C=-600/W=1500 HU, abdomen C=50/W=400 HU, head C=40/W=80 HU, differences C=0/W=100 HU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The values a CT scanner reconstructs (12-bit DICOM with intercept -1024): air sits at -1000 HU with
#: noise reaching -1024; dense bone and metal-free contrast stay below 3071. Below -1024 HU the
#: attenuation would be negative.
PHYSICAL_HU_RANGE = (-1024.0, 3071.0)

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


@dataclass(frozen=True)
class Window:
    """A display window: centre C and width W in HU."""

    name: str
    center: float
    width: float

    @property
    def vmin(self) -> float:
        return self.center - self.width / 2

    @property
    def vmax(self) -> float:
        return self.center + self.width / 2


LUNG = Window("lung", -600, 1500)
ABDOMEN = Window("abdomen", 50, 400)
HEAD = Window("head", 40, 80)
DIFFERENCE = Window("difference", 0, 100)

WINDOWS = {w.name: w for w in (LUNG, ABDOMEN, HEAD, DIFFERENCE)}

#: The window a region is usually read in.
REGION_WINDOW = {"chest": LUNG, "abdomen": ABDOMEN, "head": HEAD}


def get_window(name_or_window: str | Window) -> Window:
    if isinstance(name_or_window, Window):
        return name_or_window
    try:
        return WINDOWS[name_or_window]
    except KeyError:
        raise ValueError(f"unknown HU window {name_or_window!r}; choose one of {sorted(WINDOWS)}") from None


def apply_window(image_hu, window: str | Window) -> np.ndarray:
    """Map HU to [0, 1] for display: C - W/2 -> 0, C + W/2 -> 1, clipped."""
    w = get_window(window)
    return np.clip((np.asarray(image_hu, dtype=np.float64) - w.vmin) / w.width, 0.0, 1.0)
