"""Panels of notebook 01: paired slices, measured noise against the dose prediction, and the
patient frequencies of two samplers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..units import DIFFERENCE
from .ct import ct_grid


def paired_slices(pairs, panel_size: float = 3.0):
    """One row per pair: low dose, full dose (in the pair's window) and low - full (C=0/W=100 HU).
    ``pairs`` = ``[(label, low_hu, full_hu, window, dose_fraction)]``."""
    panels = []
    for label, low, full, window, dose in pairs:
        panels += [(low, window, f"{label} low dose {dose:.0%}"), (full, window, f"{label} full dose"),
                   (low - full, DIFFERENCE, "low − full")]
    return ct_grid(panels, ncols=3, panel_size=panel_size)


def noise_bars(rows):
    """Median noise std in a flat ROI per region, full and low dose, against full x sqrt(1/dose).
    ``rows`` = ``[{"region", "full_std_hu", "low_std_hu", "dose_fraction"}]``."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for i, r in enumerate(rows):
        ax.bar(i - 0.2, r["full_std_hu"], 0.4, color="tab:blue", label="full dose" if i == 0 else None)
        ax.bar(i + 0.2, r["low_std_hu"], 0.4, color="tab:red", label="low dose" if i == 0 else None)
        ax.plot([i, i + 0.4], [r["full_std_hu"] / np.sqrt(r["dose_fraction"])] * 2, "k--",
                label="full × √(1/dose)" if i == 0 else None)
    ax.set_xticks(np.arange(len(rows)), [r["region"] for r in rows])
    ax.set_ylabel("noise std in flat ROI (HU), median over slices")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sampling_frequencies(labels, frequencies: dict, expected: float | None = None):
    """Fraction of draws per patient for several samplers: ``frequencies`` = {sampler label: (P,)}."""
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(labels)), 3.8))
    idx = np.arange(len(labels))
    width = 0.8 / max(1, len(frequencies))
    for k, (name, freq) in enumerate(frequencies.items()):
        ax.bar(idx + (k - (len(frequencies) - 1) / 2) * width, freq, width, label=name)
    if expected is not None:
        ax.axhline(expected, color="k", ls="--", lw=1, label="1 / patients")
    ax.set_xticks(idx, labels, fontsize=7)
    ax.set_ylabel("fraction of draws")
    ax.set_xlabel("patient (slices)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
