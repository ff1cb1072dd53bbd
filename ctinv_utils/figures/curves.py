"""Line plots: training loss curves, synthesis histories and the alpha trade-off curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def moving_average(values, k: int = 25) -> np.ndarray:
    """Running mean over ``k`` iterations (the raw values when there are fewer)."""
    v = np.asarray(values, dtype=float)
    return np.convolve(v, np.ones(k) / k, mode="valid") if len(v) > k else v


def loss_curves(panels, title: str = "", smooth: int = 25):
    """One axis per entry of ``panels`` = ``[(axis title, {label: values per iteration}, log_y)]``;
    values are smoothed with a moving average over ``smooth`` iterations."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.7 * len(panels), 3.6), squeeze=False)
    for ax, (ax_title, curves, log_y) in zip(axes[0], panels):
        for label, values in curves.items():
            (ax.semilogy if log_y else ax.plot)(moving_average(values, smooth), label=label)
        ax.set_title(ax_title, fontsize=9)
        ax.set_xlabel(f"iteration (moving average over {smooth})")
        ax.grid(alpha=0.3)
        if len(curves) > 1:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def synthesis_status(rows, labels, keys=("loss", "output_distance", "input_distance")):
    """Optimisation histories (after plenoptic's ``synthesis_status``), one row of axes per entry of
    ``rows`` = ``[(row title, {key: (T, A) array})]``, one line per sample (``labels``, e.g. alphas)."""
    fig, axes = plt.subplots(len(rows), len(keys), figsize=(4.7 * len(keys), 3 * len(rows)), squeeze=False)
    for ax_row, (row_title, history) in zip(axes, rows):
        for ax, key in zip(ax_row, keys):
            h = np.asarray(history.get(key, []), dtype=float)
            if h.size == 0:
                ax.set_axis_off()
                continue
            for i, lab in enumerate(labels):
                ax.plot(np.arange(1, len(h) + 1), h[:, i], label=lab)
            ax.set_title(f"{row_title}: {key.replace('_', ' ')}", fontsize=9)
            ax.set_xlabel("iteration")
            ax.grid(alpha=0.3)
        ax_row[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def tradeoff_axes(ax, curves: dict, xlabel: str, ylabel: str, title: str = ""):
    """Trade-off curves: ``curves`` is {label: (alphas, input change, output change)}; each point is
    annotated with its alpha."""
    for label, (alphas, d_in, d_out) in curves.items():
        ax.plot(d_in, d_out, "o-", label=label)
        for a, xi, yo in zip(alphas, d_in, d_out):
            ax.annotate(f"{a:g}", (xi, yo), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def tradeoff_figure(panels, title: str = ""):
    """Several trade-off axes side by side: ``panels`` = ``[(title, curves, xlabel, ylabel)]`` with
    ``curves`` as in :func:`tradeoff_axes`."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (ax_title, curves, xlabel, ylabel) in zip(axes[0], panels):
        tradeoff_axes(ax, curves, xlabel, ylabel, ax_title)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
