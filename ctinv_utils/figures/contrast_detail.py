"""Contrast-detail curves (threshold contrast against lesion diameter, one line per method) and the
d' against contrast behind them. Arrays and plain dicts only (as returned by
``ctinv_utils.analysis.contrast_detail``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

def _plain_hu(value: float, _pos=None) -> str:
    """Log-axis labels as plain numbers, at 1, 2, 3 and 5 per decade (the other ticks unlabelled)."""
    if value <= 0:
        return ""
    lead = value / 10 ** np.floor(np.log10(value))
    return f"{value:g}" if any(abs(lead - m) < 1e-6 for m in (1, 2, 3, 5)) else ""


_PLAIN_HU = FuncFormatter(_plain_hu)
#: sideways offset between the methods' markers (mm): methods with equal thresholds (low dose and the
#: denoisers at 10 mm, say) would otherwise hide one another
DODGE_MM = 0.25
SIGNS = (("positive", "positive lesions (brighter than tissue)"), ("negative", "negative lesions (darker than tissue)"))


def contrast_detail_axes(ax, curves: dict, sign: str = "positive", title: str = "", max_contrast_hu: float | None = None):
    """One contrast-detail panel: ``curves`` = ``{method label: {"diameters_mm": (D,), sign: (D,) HU,
    optionally "max_contrast_hu"}}`` (the dicts of ``analysis.contrast_detail.contrast_detail``).
    Log-scaled contrast axis (lower is better: a smaller contrast is detected); the methods' markers
    sit ``DODGE_MM`` apart sideways around each diameter. A NaN (threshold not
    reached within the contrast grid) is drawn as an open triangle 15 % above the largest contrast
    simulated (``max_contrast_hu``, default: the curves' own)."""
    top = max_contrast_hu or max([float(c["max_contrast_hu"]) for c in curves.values() if "max_contrast_hu" in c]
                                 + [float(np.nanmax(np.abs(c[sign]))) for c in curves.values()
                                    if np.isfinite(np.asarray(c[sign], dtype=float)).any()] + [1.0])
    for k, (label, c) in enumerate(curves.items()):
        d, t = np.asarray(c["diameters_mm"], dtype=float), np.abs(np.asarray(c[sign], dtype=float))
        d = d + DODGE_MM * (k - (len(curves) - 1) / 2)  # side by side: equal thresholds stay visible
        line, = ax.plot(d, t, "o-", label=label)
        missing = ~np.isfinite(t)
        if missing.any():
            ax.plot(d[missing], np.full(missing.sum(), top * 1.15), "^", mfc="none", color=line.get_color())
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PLAIN_HU)  # 20, 30, 50, 100 HU, not 2x10^1
    ax.yaxis.set_minor_formatter(_PLAIN_HU)
    ax.axhline(top, color="0.6", lw=0.8, ls=":")
    ax.annotate("dotted: largest contrast simulated;\nopen triangles: not reached", (0.98, 0.97), xycoords="axes fraction",
                fontsize=6, va="top", ha="right", color="0.4")  # right: the small lesions' triangles sit left
    ax.set_xlabel("lesion diameter (mm)")
    ax.set_ylabel("threshold contrast |C| (HU)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)


def contrast_detail_figure(curves: dict, threshold: float = 2.0, observer: str = "", title: str = "",
                           max_contrast_hu: float | None = None):
    """Contrast-detail curves, positive and negative lesions side by side. ``curves`` as in
    :func:`contrast_detail_axes` with both ``"positive"`` and ``"negative"`` entries."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, (sign, label) in zip(axes, SIGNS):
        contrast_detail_axes(ax, curves, sign, label, max_contrast_hu)
    what = f"smallest |C| with d' >= {threshold:g}" + (f" ({observer})" if observer else "")
    fig.suptitle(f"{title}\n{what}" if title else what, fontsize=10)
    fig.tight_layout()
    return fig


def dprime_figure(tables: dict, threshold: float = 2.0, title: str = ""):
    """d' against contrast, one panel per diameter, one line per method, error bars = standard
    error. ``tables`` = ``{method label: {"diameters_mm": (D,), "contrasts_hu": (C,), "dprime": (D, C),
    "stderr": (D, C)}}`` (all with the same diameters)."""
    first = next(iter(tables.values()))
    diameters = np.asarray(first["diameters_mm"], dtype=float)
    fig, axes = plt.subplots(1, len(diameters), figsize=(4 * len(diameters), 3.5), sharey=True, squeeze=False)
    for i, ax in enumerate(axes[0]):
        for label, t in tables.items():
            c = np.asarray(t["contrasts_hu"], dtype=float)
            ax.errorbar(c, np.asarray(t["dprime"], dtype=float)[i], yerr=np.asarray(t["stderr"], dtype=float)[i],
                        fmt="o-", ms=3, capsize=2, label=label)
        ax.axhline(threshold, color="0.4", lw=0.8, ls="--")
        ax.axvline(0, color="0.8", lw=0.8)
        ax.set_title(f"{diameters[i]:g} mm lesions", fontsize=9)
        ax.set_xlabel("lesion contrast C (HU)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("d'")
    axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def contrast_detail_from_artifacts(art, observers=("npw", "cho")):
    """The contrast-detail figure from notebook 05's ``contrast_detail`` artifact alone (no network,
    no simulation). ``art``: an :class:`~ctinv_utils.pipeline.artifacts.Artifacts`; ``observers``: "npw",
    "cho" or both (one row each; positive and negative lesions side by side). One line per image kind
    (low dose, full dose, each denoiser on the low-dose scan). Returns ``(fig, caption)``."""
    from ..names import display_name

    a = art.read_arrays("contrast_detail")
    observers = [observers] if isinstance(observers, str) else list(observers)
    have = sorted({k.split("_")[0] for k in a.arrays if k.endswith("_positive")})
    for obs in observers:
        if f"{obs}_positive" not in a.arrays:
            raise KeyError(f"the contrast_detail artifact has no observer {obs!r}; it has {have}")
    threshold = float(a["threshold"])
    top = float(np.max(np.abs(a["contrasts_hu"])))
    names = {"npw": "NPW matched filter", "cho": "CHO, Laguerre-Gauss channels"}
    fig, axes = plt.subplots(len(observers), 2, figsize=(10, 4.0 * len(observers) + 0.4), sharey=True, squeeze=False)
    for row, obs in enumerate(observers):
        curves = {display_name(str(k)): {"diameters_mm": a["diameters_mm"], "positive": a[f"{obs}_positive"][i],
                                         "negative": a[f"{obs}_negative"][i], "max_contrast_hu": top}
                  for i, k in enumerate(a["kinds"])}
        for ax, (sign, label) in zip(axes[row], SIGNS):
            contrast_detail_axes(ax, curves, sign, f"{names.get(obs, obs)}: {label}", top)
    fig.suptitle(f"Contrast-detail curves: smallest |C| with d' >= {threshold:g}", fontsize=10)
    fig.tight_layout()
    meta = a.meta
    how = "; ".join(f"{obs.upper()}: {meta.get(obs + '_method', 'holdout')}" for obs in observers)
    caption = (f"Threshold contrast |C| at d' = {threshold:g} against lesion diameter ({how}), linear interpolation "
               f"of d' over the contrast grid {[float(c) for c in a['contrasts_hu']]} HU; lower = better "
               f"detectability; triangles: not reached; markers offset sideways by {DODGE_MM:g} mm per method so that "
               f"equal thresholds stay visible. Preset {meta.get('preset', art.preset)}; simulated "
               f"{meta.get('region', 'abdomen')} phantoms ({meta.get('image_size', '?')} px, {meta.get('n_views', '?')} "
               f"views), lesions inserted before the acquisition, {meta.get('realisations', '?')} realisations per "
               "cell; denoisers applied to the low-dose scan.")
    return fig, caption
