"""Lesion figures drawn from notebook 05's artifacts alone (no network, no simulation): example ROIs
with their lesion-free twins, contrast retained and structure transfer, the lesion removed by
invariances, and the metrics table. Each panel function takes an
:class:`~ctinv_utils.pipeline.artifacts.Artifacts` and returns ``(fig, caption)`` (tables: markdown and CSV)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..names import display_name
from ..units import Window
from .ct import show_ct
from .tables import csv_text, markdown_table

#: Liver window for low-contrast lesions (the abdomen window's 400 HU would hide 10-20 HU).
LIVER = Window("liver", 60, 200)


def _label(kind: str) -> str:
    return display_name(kind)


def _source(meta: dict) -> str:
    return (f"preset {meta.get('preset', '?')}; simulated {meta.get('region', 'abdomen')} phantoms "
            f"({meta.get('image_size', '?')} px, {meta.get('n_views', '?')} views, lesions inserted before the "
            "acquisition)")


def lesion_examples(art):
    """The stored example lesions side by side (3 columns each): per image kind (rows) the ROI with
    the lesion (liver window), its lesion-free twin (same noise) and their difference in a window of
    +-2 |C|."""
    a = art.read_arrays("lesion_examples")
    kinds = [str(k) for k in a["kinds"]]
    n_ex = len(a["diameter_mm"])
    fig, axes = plt.subplots(len(kinds), 3 * n_ex, figsize=(3.0 * 3 * n_ex * 1.15, 2.9 * len(kinds) + 0.4), squeeze=False)
    for e in range(n_ex):
        d, c = float(a["diameter_mm"][e]), float(a["contrast_hu"][e])
        diff_window = Window("lesion difference", 0, 4 * abs(c))
        for r, kind in enumerate(kinds):
            les, free = a["lesion"][e, r], a["free"][e, r]
            head = f"{d:g} mm, {c:+g} HU | {_label(kind)}"
            show_ct(axes[r, 3 * e], les, LIVER, f"{head}\nwith lesion")
            show_ct(axes[r, 3 * e + 1], free, LIVER, f"{head}\nlesion-free twin")
            show_ct(axes[r, 3 * e + 2], les.astype(np.float64) - free, diff_window, f"{head}\ndifference")
    fig.tight_layout()
    caption = (f"Example lesions ({a['lesion'].shape[-1]} px crops centred on the lesion); rows: low dose, full dose and "
               "each denoiser on the low-dose scan; difference = image minus its lesion-free twin (same noise "
               f"realisation). {_source(a.meta)}")
    return fig, caption


def transfer_figure(art):
    """Contrast retained (top) and structure transfer (bottom) against lesion contrast, one panel per
    diameter, one line per image kind (mean over realisations)."""
    m = art.read_json("lesion_metrics")
    diameters, contrasts = np.asarray(m["diameters_mm"]), np.asarray(m["contrasts_hu"])
    fig, axes = plt.subplots(2, len(diameters), figsize=(3.6 * len(diameters), 6.2), squeeze=False, sharey="row")
    for kind in m["kinds"]:
        k = m["metrics"][kind]
        for i in range(len(diameters)):
            for row, key in enumerate(("contrast_retained_cells", "structure_transfer_cells")):
                y = np.asarray(k[key], dtype=float)[i]
                axes[row, i].plot(contrasts, y, "o-", ms=3, label=_label(kind))
    for i, d in enumerate(diameters):
        axes[0, i].set_title(f"{d:g} mm lesions", fontsize=9)
        axes[1, i].set_xlabel("lesion contrast C (HU)")
        for row in range(2):
            axes[row, i].axhline(1.0, color="0.5", lw=0.8, ls=":")
            axes[row, i].grid(alpha=0.3)
    axes[0, 0].set_ylabel("contrast retained\nC(f(x_les) - f(x_free)) / C(full)")
    axes[1, 0].set_ylabel("structure transfer\n||f(x_les) - f(x_free)|| / ||x_les - x_free||")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    caption = ("Per lesion cell, mean over realisations: the lesion's contrast kept in the denoised twin difference "
               "relative to full dose (1 = all kept; low and full dose are 1 by construction), and the energy "
               f"of the lesion passed through (ROI {m['roi_px']} px). {_source(m['lesion_set'] | {'preset': art.preset})}")
    return fig, caption


def dprime_from_artifacts(art, observers=("npw", "cho")):
    """d' against contrast (rows: observers; columns: diameters), one line per image kind, error bars
    = approximate standard error, from the ``contrast_detail`` artifact."""
    a = art.read_arrays("contrast_detail")
    observers = [observers] if isinstance(observers, str) else list(observers)
    diameters, contrasts, threshold = a["diameters_mm"], a["contrasts_hu"], float(a["threshold"])
    fig, axes = plt.subplots(len(observers), len(diameters), figsize=(3.8 * len(diameters), 3.3 * len(observers) + 0.4),
                             sharey="row", squeeze=False)
    for r, obs in enumerate(observers):
        for i, d in enumerate(diameters):
            ax = axes[r, i]
            for k, kind in enumerate(a["kinds"]):
                ax.errorbar(contrasts, a[f"{obs}_dprime"][k, i], yerr=a[f"{obs}_stderr"][k, i], fmt="o-", ms=3,
                            capsize=2, label=_label(str(kind)))
            ax.axhline(threshold, color="0.4", lw=0.8, ls="--")
            ax.axvline(0, color="0.8", lw=0.8)
            ax.set_title(f"{obs.upper()}: {d:g} mm lesions", fontsize=9)
            ax.set_xlabel("lesion contrast C (HU)")
            ax.grid(alpha=0.3)
        axes[r, 0].set_ylabel("d'")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    how = "; ".join(f"{obs.upper()}: {a.meta.get(obs + '_method', 'holdout')}" for obs in observers)
    caption = (f"d' of lesion-present vs lesion-absent ROIs per (diameter, contrast) ({how}); error bars: approximate "
               f"standard error; dashed: d' = {threshold:g}. {_source(a.meta)}")
    return fig, caption


def lesion_invariance_figure(art, denoisers):
    """The lesion and the invariances, one row per denoiser: x (lesion circled), then at each alpha
    the removal map (how much of a lesion of this profile x_inv - x removes at every place of the
    crop; the circle: the lesion's own place), and the lesion's removal against alpha with the chance
    band (5-95 % of the lesion-free places) and what the output loses.

    The map, not x_inv - x itself: a converged bounded-MSE change is hundreds of HU RMS at the
    highest frequencies, which fills any window of lesion size with a checkerboard; projected onto
    the lesion's profile it shows whether the lesion stands out of that change."""
    from matplotlib.patches import Circle

    runs = {name: art.read_arrays("lesion_invariance", denoiser=name) for name in denoisers}
    first = next(iter(runs.values()))
    n = len(first["alphas"])
    fig = plt.figure(figsize=(3.2 * (n + 2), 3.5 * len(runs) + 0.3))
    gs = fig.add_gridspec(len(runs), n + 2, width_ratios=[1] * (n + 1) + [1.4])
    for row, (name, a) in enumerate(runs.items()):
        alphas = np.asarray(a["alphas"], float)
        converged = a.meta.get("converged") or [True] * n
        h, w = a["x"].shape
        radius = float(a.meta["lesion_extent_px"]) / 2

        def ring(ax, w=w, h=h, radius=radius):
            ax.add_patch(Circle((w // 2, h // 2), radius, fill=False, ec="gold", lw=1.2, ls="--"))

        ax = fig.add_subplot(gs[row, 0])
        show_ct(ax, a["x"], LIVER, f"{display_name(name)}: x, lesion circled")
        ring(ax)
        border = np.zeros((h, w, 4))  # grey where the profile's copy would leave the crop
        if "profile_fits" in a.arrays:
            border[~np.asarray(a["profile_fits"], bool)] = (0.55, 0.55, 0.55, 0.8)
        lim = float(np.abs(a["removal_map"]).max())
        for k in range(n):
            ax = fig.add_subplot(gs[row, k + 1])
            im = ax.imshow(a["removal_map"][k], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.imshow(border, interpolation="nearest")  # grey: the copy would leave the crop (not in the chance set)
            ring(ax)
            ax.set_axis_off()
            ax.set_title(f"α={alphas[k]:g}: removed {a['removed'][k]:.2f} at the lesion,\n"
                         f"percentile {a['removed_percentile'][k]:.0f}; x_inv - x {float(a['input_rms_hu'][k]):.0f} HU RMS"
                         + ("" if converged[k] else "\nNOT converged"), fontsize=8)
            cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
            cb.set_label("lesion removed if centred here", fontsize=7)
            cb.ax.tick_params(labelsize=7)
        ax = fig.add_subplot(gs[row, n + 1])
        lo, hi = np.percentile(a["removed_elsewhere"], [5, 95], axis=1)
        ax.fill_between(alphas, lo, hi, color="0.82", label="5-95 % at lesion-free places")
        ax.plot(alphas, a["removed"], "o-", label="lesion removed by x_inv")
        for k in range(n):
            ax.annotate(f"{a['removed_percentile'][k]:.0f}", (alphas[k], a["removed"][k]), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=7, color="C0")
        late = [k for k in range(n) if not converged[k]]
        if late:
            ax.plot(alphas[late], a["removed"][late], "x", color="red", ms=9, label="not converged")
        ax.plot(alphas, a["output_removed"], "s--", label="lesion lost in f(x_inv) vs f(x)")
        ax.axhline(0, color="0.5", lw=0.8)
        ax.axhline(1, color="0.5", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xticks(alphas, [f"{v:g}" for v in alphas])  # the grid itself: log ticks crowd a short range
        ax.minorticks_off()
        ax.margins(x=0.08, y=0.12)
        ax.set_xlabel("α")
        ax.set_ylabel("lesion removed (1 = all of it)\nlabels: percentile among lesion-free places", fontsize=8)
        ax.set_title(display_name(name), fontsize=9)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    meta = first.meta
    n_free = first["removed_elsewhere"].shape[-1]
    steps = ", ".join(f"{display_name(name)} {r.meta.get('iterations')}" for name, r in runs.items())  # each run stops itself
    caption = (f"Distance {display_name(meta.get('distance', 'mse'))}, hu_range {meta.get('hu_range')}, "
               f"Adam iterations: {steps} ({meta.get('lr_schedule')} lr from {meta.get('lr')}); lesion "
               f"{meta.get('diameter_mm')} mm / {meta.get('contrast_hu')} HU, {first['x'].shape[-1]} px crop centred on it. "
               f"Removed = -<x_inv - x, s0>/<s, s0> at each place, s the lesion's noise-free reconstruction, s0 = s "
               f"less its mean; percentile among the {n_free} places whose copy of the profile lies inside the crop (grey "
               f"band: it would not) and misses the lesion (neighbouring places are correlated over the lesion's size). {_source(meta)}")
    return fig, caption


TABLE_COLUMNS = [("kind", "image", ""), ("diameter_mm", "D (mm)", "g"), ("contrast_hu", "C (HU)", "+g"),
                 ("contrast_retained", "contrast retained", ".2f"), ("structure_transfer", "structure transfer", ".2f"),
                 ("dprime_npw", "d' NPW", ".2f"), ("dprime_cho", "d' CHO", ".2f")]


def metrics_rows(art) -> list[dict]:
    m = art.read_json("lesion_metrics")
    rows = []
    for kind in m["kinds"]:
        k = m["metrics"][kind]
        for i, d in enumerate(m["diameters_mm"]):
            for j, c in enumerate(m["contrasts_hu"]):
                row = dict(kind=_label(kind), diameter_mm=float(d), contrast_hu=float(c),
                           contrast_retained=k["contrast_retained_cells"][i][j],
                           structure_transfer=k["structure_transfer_cells"][i][j])
                for obs, t in k["dprime"].items():
                    row[f"dprime_{obs}"] = t["dprime"][i][j]
                rows.append(row)
    return rows


def metrics_table(art) -> tuple[str, str]:
    """(markdown, csv) of the lesion metrics per image kind and cell."""
    rows = metrics_rows(art)
    note = ("contrast retained and structure transfer: mean over realisations; d': holdout estimate, lesion "
            "present vs absent ROIs")
    return markdown_table(rows, TABLE_COLUMNS, note), csv_text(rows, TABLE_COLUMNS)


def invariance_rows(art, denoisers) -> list[dict]:
    rows = []
    for name in denoisers:
        a = art.read_arrays("lesion_invariance", denoiser=name)
        converged = a.meta.get("converged") or [None] * len(a["alphas"])
        for k, alpha in enumerate(a["alphas"]):
            lo, hi = np.percentile(a["removed_elsewhere"][k], [5, 95])
            rows.append(dict(denoiser=display_name(name), alpha=float(alpha), removed=float(a["removed"][k]),
                             percentile=float(a["removed_percentile"][k]), chance_p5=float(lo), chance_p95=float(hi),
                             output_removed=float(a["output_removed"][k]),
                             input_rms_hu=float(a["input_rms_hu"][k]), output_rms_hu=float(a["output_rms_hu"][k]),
                             out_of_range=float(a["out_of_range_fraction"][k]),
                             iterations=a.meta.get("iterations"), converged=converged[k]))
    return rows


INVARIANCE_COLUMNS = [("denoiser", "denoiser", ""), ("alpha", "α", "g"),
                      ("removed", "lesion removed by x_inv (lesion amplitudes)", ".3f"),
                      ("percentile", "percentile among lesion-free places", ".0f"),
                      ("chance_p5", "lesion-free places: 5 %", ".2f"), ("chance_p95", "lesion-free places: 95 %", ".2f"),
                      ("output_removed", "lesion lost in f(x_inv)", ".3f"), ("input_rms_hu", "RMS x_inv - x (HU)", ".1f"),
                      ("output_rms_hu", "RMS f(x_inv) - f(x) (HU)", ".2f"), ("out_of_range", "out of range", ".3f"),
                      ("iterations", "iterations", ""), ("converged", "converged", "")]


INVARIANCE_NOTE = ("Lesion removed by x_inv: the part of the lesion's own profile that x_inv − x takes away at the "
                   "lesion's place, in lesion amplitudes (1: the whole lesion, 0: nothing). Above 1, x_inv removes "
                   "more than the lesion there, i.e. it also lowers its surround along the lesion's profile; below 0 "
                   "it adds to the lesion. The lesion-free places say how large the same number is by chance.")


def invariance_table(art, denoisers) -> tuple[str, str]:
    rows = invariance_rows(art, denoisers)
    return markdown_table(rows, INVARIANCE_COLUMNS, INVARIANCE_NOTE), csv_text(rows, INVARIANCE_COLUMNS)


CD_COLUMNS = [("kind", "image", ""), ("diameter_mm", "D (mm)", "g"), ("npw_positive", "NPW C+ (HU)", ".1f"),
              ("npw_negative", "NPW C- (HU)", ".1f"), ("cho_positive", "CHO C+ (HU)", ".1f"),
              ("cho_negative", "CHO C- (HU)", ".1f"), ("contrast_retained", "contrast retained", ".2f"),
              ("structure_transfer", "structure transfer", ".2f")]


def contrast_detail_rows(art) -> list[dict]:
    """Per image kind and diameter: threshold contrasts (NaN -> None: not reached within the grid)
    and the contrast retained / structure transfer averaged over the contrasts."""
    a = art.read_arrays("contrast_detail")
    m = art.read_json("lesion_metrics")
    rows = []
    for k, kind in enumerate(a["kinds"]):
        km = m["metrics"][str(kind)]
        for i, d in enumerate(a["diameters_mm"]):
            row = dict(kind=_label(str(kind)), diameter_mm=float(d),
                       contrast_retained=float(np.nanmean(np.asarray(km["contrast_retained_cells"][i], float))),
                       structure_transfer=float(np.nanmean(np.asarray(km["structure_transfer_cells"][i], float))))
            for obs in ("npw", "cho"):
                for sign in ("positive", "negative"):
                    key = f"{obs}_{sign}"
                    if key in a.arrays:
                        v = float(a[key][k, i])
                        row[key] = v if np.isfinite(v) else None
            rows.append(row)
    return rows


def contrast_detail_table(art) -> tuple[str, str]:
    """(markdown, csv): threshold contrast at the d' threshold per image kind and diameter (empty:
    not reached within the contrast grid), with the mean contrast retained and structure transfer."""
    rows = contrast_detail_rows(art)
    a = art.read_arrays("contrast_detail")
    note = (f"threshold |C| at d' = {float(a['threshold']):g}; empty: not reached up to "
            f"{float(np.max(np.abs(a['contrasts_hu']))):g} HU. Contrast retained and structure transfer: mean over "
            "the contrasts and realisations of that diameter.")
    return markdown_table(rows, CD_COLUMNS, note), csv_text(rows, CD_COLUMNS)
