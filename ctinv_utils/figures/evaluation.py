"""Panels of the denoisers' evaluation: a metric per region and method, and denoised example slices."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .ct import ct_grid


def metric_bars(rows, metric: str = "psnr", ylabel: str = "PSNR in region window (dB)", title: str = ""):
    """Bars of ``metric`` per region, one colour per method, in the order the methods first appear.
    ``rows`` = ``[{"method": display name, "region", metric: value}]``."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    regions = sorted({r["region"] for r in rows})
    fig, ax = plt.subplots(figsize=(7, 3.9))
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        vals = [next((r[metric] for r in rows if r["method"] == method and r["region"] == reg), np.nan)
                for reg in regions]
        bars = ax.bar(np.arange(len(regions)) + (k - (len(methods) - 1) / 2) * width, vals, width, label=method)
        ax.bar_label(bars, fmt="%.1f" if metric == "psnr" else "%.3f", fontsize=6, padding=1)  # numbers first
    ax.set_xticks(np.arange(len(regions)), regions)
    ax.set_ylabel(ylabel)
    lo = np.nanmin([r[metric] for r in rows])
    ax.set_ylim(bottom=max(0.0, lo - 3) if metric == "psnr" else None)
    ax.margins(y=0.08)
    # above the axes: inside, it covered the bars of the lowest region
    ax.legend(fontsize=8, ncol=len(methods), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    if title:
        ax.set_title(title, fontsize=9, pad=22)
    fig.tight_layout()
    return fig


def example_slices(rows, title: str = ""):
    """Denoised examples, one row per region: ``rows`` = ``[(window, [(image_hu, panel title), ...])]``."""
    ncols = max(len(images) for _, images in rows)
    panels = []
    for window, images in rows:
        panels += [(img, window, t) for img, t in images] + [None] * (ncols - len(images))
    return ct_grid(panels, ncols=ncols, panel_size=3.2, suptitle=title)
