"""CT panels with HU windows and colorbars, grids of them, and figure captions."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..units import Window, get_window


#: A 0/1 mask (1: the pixel has the property the title names), drawn in two colours with a legend.
MASK = Window("mask", 0.5, 1.0)


def fitted_difference_window(diff_hu, floor: float = 100.0) -> Window:
    """A window centred on 0 HU that shows the structure of a large change: its width is twice the
    99th percentile of ``|diff_hu|`` rounded up to a multiple of 100 HU (at least ``floor``), so at most
    1 % of the pixels clip (the talk's C=0/W=100 HU clips most of a large invariance to black/white)."""
    p99 = float(np.percentile(np.abs(np.asarray(diff_hu, dtype=np.float64)), 99))
    return Window("fitted difference", 0, max(floor, 100.0 * np.ceil(2 * p99 / 100.0)))


def _show_mask(ax, mask, title: str | None):
    from matplotlib.colors import ListedColormap

    im = ax.imshow(np.asarray(mask, dtype=np.float64), cmap=ListedColormap(["0.15", "1.0"]), vmin=0, vmax=1,
                   interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title or "", fontsize=9)
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02, ticks=[0.25, 0.75])
    cb.ax.set_yticklabels(["no", "yes"], fontsize=8)
    return im


def show_ct(ax, image_hu, window: str | Window, title: str | None = None, colorbar: bool = True):
    """One CT panel in a HU window, axes off, with a colorbar in HU and the window in the title (and,
    for a difference window centred on 0 HU, the RMS of the difference in HU). A :data:`MASK` panel
    is drawn in two colours with a yes/no legend instead."""
    w = get_window(window)
    if w.name == MASK.name:
        return _show_mask(ax, image_hu, title)
    image_hu = np.asarray(image_hu, dtype=np.float64)
    im = ax.imshow(image_hu, cmap="gray", vmin=w.vmin, vmax=w.vmax, interpolation="nearest")
    ax.set_axis_off()
    label = f"C={w.center:g}/W={w.width:g} HU"
    if w.center == 0 and np.isfinite(image_hu).all():  # a difference image: say how large it is
        label += f"; RMS {float(np.sqrt(np.mean(np.square(image_hu)))):.3g} HU"
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


#: The caption's font size in points: figures are saved at 80 dpi, so 11 pt is about 12 px, which
#: reads as 9 pt where the PNG is shown at its own size.
CAPTION_PT = 11


def _wrap_caption(text: str, width: int) -> list[str]:
    """Lines of at most ``width`` characters, broken between the caption's " | " parts where they
    fit and between words inside a part that does not."""
    import textwrap

    lines: list[str] = []
    for part in text.split(" | "):
        pieces = textwrap.wrap(part, width, break_on_hyphens=False) or [""]
        if lines and len(lines[-1]) + 3 + len(pieces[0]) <= width:
            lines[-1] = f"{lines[-1]} | {pieces.pop(0)}"
        lines.extend(pieces)
    return lines


def add_caption(fig, text: str) -> None:
    """The caption under the figure (preset, data source, denoiser, distance, seed...), at
    :data:`CAPTION_PT` and wrapped to the figure's width, so that none runs off the saved PNG."""
    width = max(40, int(0.98 * fig.get_figwidth() * 72 / (CAPTION_PT * 0.6)))  # ~0.6 em per character
    fig.text(0.01, -0.01, "\n".join(_wrap_caption(text, width)), fontsize=CAPTION_PT, ha="left", va="top",
             color="0.2", linespacing=1.3)


def figure_data(fig) -> dict[str, np.ndarray]:
    """The arrays behind a figure, read off its artists: every image, line, bar and table cell, named
    by axis. Two figures with equal figure data show the same numbers, whatever the PNG encoder did."""
    from matplotlib.patches import Rectangle

    out: dict[str, np.ndarray] = {}
    for i, ax in enumerate(fig.axes):
        for j, im in enumerate(ax.get_images()):
            out[f"ax{i}_image{j}"] = np.ma.getdata(im.get_array()).astype(np.float64)
        for j, line in enumerate(ax.get_lines()):
            out[f"ax{i}_line{j}"] = np.asarray(line.get_xydata(), dtype=np.float64)
        bars = [(p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in ax.patches
                if isinstance(p, Rectangle)]  # bars; not the circles and arrows that mark places
        if bars:
            out[f"ax{i}_bars"] = np.asarray(bars, dtype=np.float64)
        for j, table in enumerate(ax.tables):
            cells = sorted(table.get_celld().items())
            out[f"ax{i}_table{j}"] = np.asarray([c.get_text().get_text() for _, c in cells], dtype=str)
    return out
