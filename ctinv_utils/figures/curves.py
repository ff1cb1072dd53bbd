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


#: One marker per alpha, the same in every panel of a trade-off figure (colours: one per curve).
ALPHA_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _alpha_markers(alphas) -> dict[float, str]:
    ordered = sorted({float(a) for a in alphas})
    return {a: ALPHA_MARKERS[i % len(ALPHA_MARKERS)] for i, a in enumerate(ordered)}


def _legend_handles(colors: dict, markers: dict):
    from matplotlib.lines import Line2D

    return ([Line2D([], [], color=c, lw=2, label=label) for label, c in colors.items()]
            + [Line2D([], [], ls="", marker=m, ms=7, color="0.35", label=f"α = {a:g}") for a, m in markers.items()])


def tradeoff_axes(ax, curves: dict, xlabel: str, ylabel: str, title: str = "", markers: dict | None = None,
                  colors: dict | None = None, legend: bool = True):
    """Trade-off curves: ``curves`` is {label: (alphas, input change, output change)}, one colour per
    curve; each point's marker says its alpha (``markers``: {alpha: marker}, the same in every panel
    of a figure), so that points close together stay readable where text labels would overlap.
    ``legend``: the curves and the alphas in a legend of this axis (a figure of several axes draws
    one legend for all)."""
    markers = markers or _alpha_markers([a for alphas, _, _ in curves.values() for a in alphas])
    colors = colors or {label: f"C{i}" for i, label in enumerate(curves)}
    for label, (alphas, d_in, d_out) in curves.items():
        ax.plot(d_in, d_out, "-", color=colors[label], label=label, zorder=2)
        for a, xi, yo in zip(alphas, d_in, d_out):
            ax.scatter([xi], [yo], marker=markers[float(a)], s=42, color=colors[label], edgecolors="white",
                       linewidths=0.6, zorder=3)
    ax.set_xlabel(xlabel, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=10)
    ax.tick_params(labelsize=9)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(handles=_legend_handles({k: colors[k] for k in curves}, markers), fontsize=9)


def tradeoff_figure(panels, title: str = ""):
    """Trade-off axes in a grid (two columns for four panels): ``panels`` = ``[(title, curves, xlabel,
    ylabel)]`` with ``curves`` as in :func:`tradeoff_axes`. One legend above the axes gives each
    curve's colour and each alpha's marker."""
    n = len(panels)
    ncols = 2 if n == 4 else max(1, min(n, 3))
    nrows = int(np.ceil(n / ncols))
    fig = plt.figure(figsize=(5.2 * ncols, 3.9 * nrows + 0.8))
    grid = fig.add_gridspec(nrows + 1, ncols, height_ratios=[0.45] + [3.9] * nrows)
    axes = [fig.add_subplot(grid[1 + i // ncols, i % ncols]) for i in range(n)]
    markers = _alpha_markers([a for _, curves, _, _ in panels for alphas, _, _ in curves.values() for a in alphas])
    labels = list(dict.fromkeys(label for _, curves, _, _ in panels for label in curves))
    colors = {label: f"C{i}" for i, label in enumerate(labels)}
    for ax, (ax_title, curves, xlabel, ylabel) in zip(axes, panels):
        tradeoff_axes(ax, curves, xlabel, ylabel, ax_title, markers=markers, colors=colors, legend=False)
    key = fig.add_subplot(grid[0, :])  # made last: the data axes keep their numbers in the figure data
    key.set_axis_off()
    from matplotlib.lines import Line2D

    # two rows: the curves' colours above, the alphas' markers below (a legend fills column by column)
    handles = _legend_handles(colors, markers)
    top, bottom = handles[:len(colors)], handles[len(colors):]
    ncol = max(len(top), len(bottom))
    blank = Line2D([], [], ls="", label=" ")
    top, bottom = top + [blank] * (ncol - len(top)), bottom + [blank] * (ncol - len(bottom))
    key.legend(handles=[h for pair in zip(top, bottom) for h in pair], loc="center", ncol=ncol, fontsize=10,
               frameon=False, columnspacing=1.4, handlelength=1.6, borderaxespad=0)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig
