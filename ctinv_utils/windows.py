"""HU display windows (the talk's) and the one helper that applies them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

    @property
    def label(self) -> str:
        return f"{self.name}: C={self.center:g} HU, W={self.width:g} HU"


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
