"""Linearised invariances: the directions a denoiser ignores (smallest eigenvalues of J^T J) and
amplifies (largest), and its spectrum against the alpha grid. Draws from the arrays of
``LinearisedSpectrum.arrays()`` (the ``linearised`` artifact) only: no network, no torch."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..units import ABDOMEN, DIFFERENCE, Window, get_window
from .ct import show_ct

#: The RMS (HU) of the change drawn along each direction: inside the C=0/W=100 HU difference window.
CHANGE_RMS_HU = 20.0


def _get(arrays, key):
    arrays = getattr(arrays, "arrays", arrays)
    if key not in arrays:
        raise KeyError(f"the arrays have no {key!r}: draw from LinearisedSpectrum.arrays() or the 'linearised' "
                       "artifact (Artifacts.read_arrays('linearised', denoiser=name))")
    return np.asarray(arrays[key])


def direction_hu(vector, change_rms_hu: float = CHANGE_RMS_HU) -> np.ndarray:
    """A unit-L2 direction ``(H, W)`` (or ``(1, H, W)``) as a change of RMS ``change_rms_hu`` HU."""
    v = np.asarray(vector, dtype=np.float64).reshape(np.shape(vector)[-2:])
    return v * np.sqrt(v.size) * change_rms_hu / max(float(np.linalg.norm(v)), 1e-300)


def spectrum_axes(ax, arrays, alphas=(), title: str = "J^T J spectrum against the alpha grid"):
    """The k smallest and k largest eigenvalues (log scale, filled: converged, open: not) with their
    residual ``||J^T J v - lambda v||`` as an error bar, and one horizontal line per alpha."""
    ends = (("smallest", "C0", "k smallest"), ("largest", "C3", "k largest"))
    lam_all = []
    for end, color, label in ends:
        lam, res = _get(arrays, end), _get(arrays, f"residuals_{end}")
        conv = _get(arrays, f"converged_{end}").astype(bool)
        idx = np.arange(1, len(lam) + 1) if end == "smallest" else -np.arange(1, len(lam) + 1)
        floor = max(float(np.min(np.abs(lam[lam > 0]))) * 1e-2, 1e-12) if np.any(lam > 0) else 1e-12
        lam_plot = np.maximum(lam, floor)
        lower = np.minimum(res, lam_plot - floor)  # log axis: keep the bar above the floor
        ax.errorbar(idx, lam_plot, yerr=[lower, res], fmt="none", ecolor=color, elinewidth=0.8, capsize=2)
        # (a residual r puts an exact eigenvalue within r of lambda; the smallest lambda is also an upper bound)
        ax.plot(idx[conv], lam_plot[conv], "o", color=color, label=f"{label} (converged)")
        if (~conv).any():
            ax.plot(idx[~conv], lam_plot[~conv], "o", mfc="none", color=color, label=f"{label} (not converged)")
        lam_all.append(lam_plot)
    for j, a in enumerate(np.atleast_1d(np.asarray(alphas, dtype=np.float64))):
        ax.axhline(a, color="0.45", lw=0.8, ls="--")
        ax.annotate(f"α={a:g}", (0.02, a), xycoords=("axes fraction", "data"), fontsize=7, va="bottom", color="0.3")
    lam_min = float(_get(arrays, "smallest")[0])
    ax.set_yscale("log")
    ax.set_xlabel("index (i: i-th smallest, −i: i-th largest)")
    ax.set_ylabel("eigenvalue of J^T J (squared gain)")
    ax.set_title(f"{title}\nλ_min ≤ {lam_min:.3g}: smaller alphas hold every direction", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")


def linearised_figure(arrays, alphas=(), meta: dict | None = None, n_show: int = 4, show_largest: bool = True,
                      window: str | Window = ABDOMEN, change_rms_hu: float = CHANGE_RMS_HU, title: str = ""):
    """The linearised invariances of one denoiser at one slice -> ``(fig, caption)``.

    First row: the slice x in ``window`` and the ``n_show`` smallest-eigenvalue directions (what the
    denoiser ignores), each drawn as a change of RMS ``change_rms_hu`` HU in the C=0/W=100 HU window,
    titled with its eigenvalue, residual and the RMS output change in HU that this input change
    causes (``sqrt(lambda) * change_rms_hu``). Second row (``show_largest``): f(x) and the largest-
    eigenvalue directions (what it amplifies most). Right: :func:`spectrum_axes` against ``alphas``.
    ``arrays``: ``LinearisedSpectrum.arrays()`` or the ``linearised`` artifact; ``meta``: facts for
    the caption (``denoiser``, ``preset``, ``data``; the artifact's meta is used when ``arrays`` is one)."""
    meta = {**(getattr(arrays, "meta", None) or {}), **(meta or {})}
    w = get_window(window)
    k = len(_get(arrays, "smallest"))
    n_show = max(1, min(int(n_show), k))
    rows = 2 if show_largest else 1
    ncols = n_show + 1
    fig = plt.figure(figsize=(3.4 * ncols + 5.0, 3.4 * rows + 0.6))
    gs = fig.add_gridspec(rows, ncols + 2, width_ratios=[1] * ncols + [0.1, 1.6])
    x_hu, f_x_hu = _get(arrays, "x_hu"), _get(arrays, "f_x_hu")
    for r, (end, ref, ref_label, verb) in enumerate((("smallest", x_hu, "x", "ignored"),
                                                      ("largest", f_x_hu, "f(x)", "amplified"))[:rows]):
        show_ct(fig.add_subplot(gs[r, 0]), ref, w, ref_label)
        lam, res = _get(arrays, end), _get(arrays, f"residuals_{end}")
        vecs = _get(arrays, f"vectors_{end}")
        conv = _get(arrays, f"converged_{end}").astype(bool)
        for i in range(n_show):
            out_rms = np.sqrt(max(float(lam[i]), 0.0)) * change_rms_hu
            flag = "" if conv[i] else ", NOT converged"
            show_ct(fig.add_subplot(gs[r, i + 1]), direction_hu(vecs[i], change_rms_hu), DIFFERENCE,
                    f"{verb} #{i + 1}{flag}\nλ={lam[i]:.2g} (residual {res[i]:.1g})\n→ f changes {out_rms:.2g} HU RMS")
    spectrum_axes(fig.add_subplot(gs[:, -1]), arrays, alphas)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig, linearised_caption(arrays, alphas, meta, change_rms_hu)


def linearised_caption(arrays, alphas=(), meta: dict | None = None, change_rms_hu: float = CHANGE_RMS_HU) -> str:
    """The caption of :func:`linearised_figure`: what was computed, how well, and what it says about alpha."""
    meta = {**(getattr(arrays, "meta", None) or {}), **(meta or {})}
    lam_min, lam = float(_get(arrays, "smallest")[0]), _get(arrays, "smallest")
    k, shape = len(lam), _get(arrays, "x_hu").shape
    tol, lmax = float(_get(arrays, "tol")), float(_get(arrays, "lambda_max_estimate"))
    conv = bool(np.all(_get(arrays, "converged_smallest"))) and bool(np.all(_get(arrays, "converged_largest")))
    which = str(_get(arrays, "which"))
    if which == "smallest":
        conv = bool(np.all(_get(arrays, "converged_smallest")))
    elif which == "largest":
        conv = bool(np.all(_get(arrays, "converged_largest")))
    who = ", ".join(f"{key} {meta[key]}" for key in ("denoiser", "preset", "data") if meta.get(key))
    alphas = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    lmax_seen = float(np.max(_get(arrays, "largest")))
    below = [f"{a:g}: all (α > λ_max ≈ {lmax_seen:.2g})" if a > lmax_seen else
             f"{a:g}: {'≥' if np.sum(lam < a) == k else ''}{int(np.sum(lam < a))}" for a in alphas]
    # no wall time in the caption (it stays in the arrays' 'seconds'): it would change the PNG at every run
    return (f"Linearised invariances{' (' + who + ')' if who else ''}, {shape[0]}x{shape[1]} px: the {k} smallest "
            f"and largest eigenvalues of J^T J (f in network units; a dimensionless squared gain, the same in HU), "
            f"thick-restart Lanczos on jvp/vjp products, {int(_get(arrays, 'iterations'))} products; "
            f"residual check ||J^T J v − λv|| ≤ {tol:g}·λ_max "
            f"({tol * lmax:.2g}): {'all converged' if conv else 'NOT all converged'}. Directions drawn as a change of "
            f"{change_rms_hu:g} HU RMS (C=0/W=100 HU). Distance: bounded MSE, whose invariance grows locally only "
            f"along directions with λ < α; λ_min ≤ {lam_min:.3g} (upper bound), so every alpha above it is worth "
            f"running" + (f"; computed eigenvalues below each alpha: {', '.join(below)}" if alphas.size else "") + ".")
