"""CT panels with HU windows and colorbars; figure captions. The core modules never import this."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..units import Window, get_window


def show_ct(ax, image_hu, window: str | Window, title: str | None = None, colorbar: bool = True):
    """One CT panel in a HU window, axes off, with a colorbar in HU and the window in the title."""
    w = get_window(window)
    im = ax.imshow(np.asarray(image_hu), cmap="gray", vmin=w.vmin, vmax=w.vmax, interpolation="nearest")
    ax.set_axis_off()
    label = f"C={w.center:g}/W={w.width:g} HU"
    ax.set_title(f"{title}\n{label}" if title else label, fontsize=9)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        cb.set_label("HU", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    return im


def ct_grid(panels, ncols: int, panel_size: float = 3.0, suptitle: str | None = None):
    """A grid of CT panels; ``panels`` is a list of (image_hu, window, title) or None (empty)."""
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols * 1.15, panel_size * nrows + 0.4),
                             squeeze=False)
    for ax, panel in zip(axes.flat, list(panels) + [None] * (nrows * ncols - len(panels))):
        if panel is None:
            ax.set_axis_off()
        else:
            show_ct(ax, *panel)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


def add_caption(fig, text: str) -> None:
    """A small caption under the figure (preset, data source, denoiser, distance, seed...)."""
    fig.text(0.01, -0.01, text, fontsize=7, ha="left", va="top", wrap=True, color="0.25")


def tradeoff_axes(ax, curves: dict, xlabel: str, ylabel: str, title: str = ""):
    """Trade-off curves: ``curves`` is {label: (alphas, input_distance, output_distance)}; each point
    is annotated with its alpha."""
    for label, (alphas, d_in, d_out) in curves.items():
        ax.plot(d_in, d_out, "o-", label=label)
        for a, xi, yo in zip(alphas, d_in, d_out):
            ax.annotate(f"{a:g}", (xi, yo), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def synthesis_status(axes, history: dict, labels, title: str = ""):
    """Optimisation history of a synthesis (after plenoptic's ``synthesis_status``): loss, output
    and input distance per iteration, one line per sample (alpha). ``axes``: three matplotlib axes."""
    h = {k: np.asarray(v) for k, v in history.items()}
    for ax, key in zip(axes, ("loss", "output_distance", "input_distance")):
        if key not in h or h[key].size == 0:
            ax.set_axis_off()
            continue
        for i, lab in enumerate(labels):
            ax.plot(h[key][:, i], label=lab)
        ax.set_title(f"{title} {key.replace('_', ' ')}".strip(), fontsize=9)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
