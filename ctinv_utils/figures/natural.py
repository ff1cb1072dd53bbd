"""Panels of the natural invariances: samples in two windows, their differences, the pixel-wise
standard deviation over samples, and noise power spectra."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..units import ABDOMEN, DIFFERENCE, LUNG, Window
from .ct import ct_grid


def natural_samples(x_hu, samples_hu, std_hu, windows: tuple[Window, Window] = (LUNG, ABDOMEN), title: str = ""):
    """Rows: x and the samples in the first window; the same in the second window; the pixel-wise
    std over all samples and each sample's difference g(z|x) - x in C=0/W=100 HU. ``samples_hu``
    ``(k, H, W)``; ``std_hu`` ``(H, W)``."""
    k = len(samples_hu)
    w1, w2 = windows
    top = float(max(20.0, np.ceil(np.percentile(std_hu, 99.5) / 10) * 10))
    std_window = Window("pixel std", top / 2, top)
    panels = [(x_hu, w1, "x (low dose)")] + [(s, w1, f"g(z{i + 1}|x)") for i, s in enumerate(samples_hu)]
    panels += [(x_hu, w2, "x")] + [(s, w2, f"g(z{i + 1}|x)") for i, s in enumerate(samples_hu)]
    panels += [(std_hu, std_window, "pixel-wise std over samples")]
    panels += [(s - x_hu, DIFFERENCE, f"g(z{i + 1}|x) − x") for i, s in enumerate(samples_hu)]
    return ct_grid(panels, ncols=k + 1, panel_size=2.8, suptitle=title)


def nps_plot(frequency, curves: dict, title: str = ""):
    """Radially averaged noise power spectra (HU² px²) against frequency (cycles/pixel), log scale."""
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    for label, nps in curves.items():
        ax.semilogy(frequency, np.maximum(np.asarray(nps, float), 1e-6), label=label)
    ax.set_xlabel("radial frequency (cycles/pixel)")
    ax.set_ylabel("NPS (HU² px²)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
