"""Linearised invariances: the directions a denoiser ignores (smallest eigenvalues of J^T J) and
amplifies (largest), and its spectrum against the alpha grid. Only certified directions are drawn; pairs
below the solver's resolution or not converged are stated as upper bounds. Draws from the arrays of
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
                       "artifact (Artifacts.read_arrays('linearised', denoiser=name)); an artifact written before "
                       "the certified spectrum lacks it: rerun notebook 03's linearised cell")
    return np.asarray(arrays[key])


def _scalar(arrays, key):
    return _get(arrays, key)[()]


def pair_states(arrays, end: str) -> list[str]:
    """Per pair of ``end`` ("smallest" or "largest"): "null" (certified zero to the products'
    precision), "certified", "below floor" or "not converged"."""
    conv = _get(arrays, f"converged_{end}").astype(bool)
    null = _get(arrays, f"null_{end}").astype(bool)
    below = _get(arrays, f"below_floor_{end}").astype(bool)
    return ["null" if n else "certified" if c else "below floor" if b else "not converged"
            for c, n, b in zip(conv, null, below)]


def direction_hu(vector, change_rms_hu: float = CHANGE_RMS_HU) -> np.ndarray:
    """A unit-L2 direction ``(H, W)`` (or ``(1, H, W)``) as a change of RMS ``change_rms_hu`` HU."""
    v = np.asarray(vector, dtype=np.float64).reshape(np.shape(vector)[-2:])
    return v * np.sqrt(v.size) * change_rms_hu / max(float(np.linalg.norm(v)), 1e-300)


def spectrum_axes(ax, arrays, alphas=(), title: str = "J^T J spectrum against the alpha grid"):
    """The k smallest and k largest eigenvalues on a log axis: filled = certified (with the residual
    as an error bar), open = not converged (an upper bound), a downward triangle = below the solver's
    resolution (drawn at its upper bound lambda + noise) or null (drawn at the noise); the band below
    the floor is shaded. One dashed line per alpha."""
    noise, floor = float(_scalar(arrays, "noise")), float(_scalar(arrays, "floor"))
    # the axis reaches a decade below the rounding or the smallest eigenvalue it draws (null pairs sit at the rounding)
    drawn = [lam[(lam > 0) & (np.asarray(pair_states(arrays, end)) != "null")]
             for end in ("smallest", "largest") for lam in [_get(arrays, end)]]
    bottom = max(min([noise, *np.concatenate(drawn).tolist()]) / 10, 1e-300)
    for end, color, label in (("smallest", "C0", "k smallest"), ("largest", "C3", "k largest")):
        lam, res = _get(arrays, end), _get(arrays, f"residuals_{end}")
        states = np.asarray(pair_states(arrays, end))
        idx = np.arange(1, len(lam) + 1) if end == "smallest" else -np.arange(1, len(lam) + 1)
        cert = states == "certified"
        if cert.any():
            y = np.maximum(lam[cert], bottom)
            ax.errorbar(idx[cert], y, yerr=[np.minimum(res[cert], y - bottom), res[cert]], fmt="o", color=color,
                        ecolor=color, elinewidth=0.8, capsize=2, label=f"{label}: certified")
        for state, y, marker, text in (("not converged", np.maximum(lam + noise, bottom), "o", "not converged (≤)"),
                                       ("below floor", np.maximum(lam + noise, bottom), "v", "below resolution (≤)"),
                                       ("null", np.full(len(lam), max(noise, bottom)), "v", "null (≤ noise)")):
            sel = states == state
            if sel.any():
                ax.plot(idx[sel], y[sel], marker, mfc="none" if state == "not converged" else color, color=color,
                        ls="none", label=f"{label}: {text}")
    ax.axhspan(bottom, floor, color="0.85", zorder=0, label=f"below the solver's resolution (floor {floor:.2g})")
    for a in np.atleast_1d(np.asarray(alphas, dtype=np.float64)):
        ax.axhline(a, color="0.45", lw=0.8, ls="--")
        ax.annotate(f"α={a:g}", (0.02, a), xycoords=("axes fraction", "data"), fontsize=7, va="bottom", color="0.3")
    ax.set_yscale("log")
    ax.set_ylim(bottom=bottom)
    ax.set_xlabel("index (i: i-th smallest, −i: i-th largest)")
    ax.set_ylabel("eigenvalue of J^T J (squared gain)")
    upper = float(_get(arrays, "smallest")[0]) + noise
    ax.set_title(f"{title}\nλ_min ≤ {upper:.3g}: smaller alphas hold every direction", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5, loc="best")


def _pair_text(i: int, state: str, lam: float, res: float, noise: float, floor: float, precision: str) -> str:
    if state == "below floor":
        return (f"#{i + 1}: below the solver's resolution\n    λ ≤ {lam + noise:.2g} (floor {floor:.2g},"
                f" {precision} products)")
    return f"#{i + 1}: not converged\n    λ ≤ {lam + noise:.2g} (residual {res:.1g} > tolerance)"


def linearised_figure(arrays, alphas=(), meta: dict | None = None, n_show: int = 4, show_largest: bool = True,
                      window: str | Window = ABDOMEN, change_rms_hu: float = CHANGE_RMS_HU, title: str = ""):
    """The linearised invariances of one denoiser at one slice -> ``(fig, caption)``.

    First row: the slice x in ``window`` and the ``n_show`` smallest-eigenvalue pairs. A certified pair
    is drawn as a change of RMS ``change_rms_hu`` HU in the C=0/W=100 HU window, titled "ignored" when
    its squared gain is at most the arrays' ``ignored_max`` (with its eigenvalue, residual and the
    RMS output change ``sqrt(lambda) * change_rms_hu`` HU) and "least changed" otherwise. Pairs below
    the solver's resolution or not converged are never drawn: one text panel states their upper
    bounds. Second row (``show_largest``): f(x) and the largest-eigenvalue directions. Right:
    :func:`spectrum_axes` against ``alphas``. ``arrays``: ``LinearisedSpectrum.arrays()`` or the
    ``linearised`` artifact; ``meta``: facts for the caption (``denoiser``, ``preset``, ``data``; the
    artifact's meta is used when ``arrays`` is one)."""
    meta = {**(getattr(arrays, "meta", None) or {}), **(meta or {})}
    w = get_window(window)
    k = len(_get(arrays, "smallest"))
    n_show = max(1, min(int(n_show), k))
    rows = 2 if show_largest else 1
    ncols = n_show + 1
    fig = plt.figure(figsize=(3.4 * ncols + 5.4, 3.4 * rows + 0.6))
    gs = fig.add_gridspec(rows, ncols + 2, width_ratios=[1] * ncols + [0.1, 1.7])
    x_hu, f_x_hu = _get(arrays, "x_hu"), _get(arrays, "f_x_hu")
    noise, floor = float(_scalar(arrays, "noise")), float(_scalar(arrays, "floor"))
    precision, ignored_max = str(_scalar(arrays, "precision")), float(_scalar(arrays, "ignored_max"))
    for r, (end, ref, ref_label) in enumerate((("smallest", x_hu, "x"), ("largest", f_x_hu, "f(x)"))[:rows]):
        show_ct(fig.add_subplot(gs[r, 0]), ref, w, ref_label)
        lam, res = _get(arrays, end), _get(arrays, f"residuals_{end}")
        vecs = _get(arrays, f"vectors_{end}")
        states = pair_states(arrays, end)
        drawn = [i for i in range(n_show) if states[i] in ("certified", "null")]
        for col, i in enumerate(drawn):
            null = states[i] == "null"  # its gain is only bounded: by the rounding
            out_rms = np.sqrt(max(float(lam[i]) + (noise if null else 0.0), 0.0)) * change_rms_hu
            if end == "largest":
                head = f"amplified #{i + 1}"
            elif lam[i] <= ignored_max:
                head = f"ignored #{i + 1}"
            else:
                head = f"least changed #{i + 1} (not ignored)"
            value = (f"λ ≈ 0 (null: |λ|, residual ≤ {noise:.1g})" if null
                     else f"λ={lam[i]:.2g} (residual {res[i]:.1g})")
            show_ct(fig.add_subplot(gs[r, col + 1]), direction_hu(vecs[i], change_rms_hu), DIFFERENCE,
                    f"{head}\n{value}\n→ f changes {'≤ ' if null else ''}{out_rms:.2g} HU RMS")
        rest = [i for i in range(k) if states[i] not in ("certified", "null")]
        if len(drawn) < n_show:  # one text panel over the free columns: what is known about the rest
            ax = fig.add_subplot(gs[r, len(drawn) + 1:ncols])
            ax.set_axis_off()
            lines = [f"{end} pairs not drawn: not certified"]
            lines += [_pair_text(i, states[i], float(lam[i]), float(res[i]), noise, floor, precision) for i in rest]
            ax.text(0.04, 0.5, "\n".join(lines), fontsize=10, va="center", ha="left", transform=ax.transAxes,
                    linespacing=1.5, bbox=dict(boxstyle="round,pad=0.8", fc="0.96", ec="0.7"))
    spectrum_axes(fig.add_subplot(gs[:, -1]), arrays, alphas)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig, linearised_caption(arrays, alphas, meta, change_rms_hu)


def _end_summary(arrays, end: str) -> str:
    states = pair_states(arrays, end)
    k = len(states)
    counts = {s: states.count(s) for s in ("certified", "null", "below floor", "not converged")}
    parts = []
    if counts["certified"] or counts["null"]:
        parts.append(f"{counts['certified'] + counts['null']}/{k} certified"
                     + (f" ({counts['null']} null)" if counts["null"] else ""))
    if counts["below floor"]:
        parts.append(f"{counts['below floor']}/{k} below the solver's resolution")
    if counts["not converged"]:
        parts.append(f"{counts['not converged']}/{k} not converged")
    return ", ".join(parts)


def linearised_caption(arrays, alphas=(), meta: dict | None = None, change_rms_hu: float = CHANGE_RMS_HU) -> str:
    """The caption of :func:`linearised_figure`: what was computed, what is certified, and what it says
    about alpha."""
    meta = {**(getattr(arrays, "meta", None) or {}), **(meta or {})}
    lam = _get(arrays, "smallest")
    k, shape = len(lam), _get(arrays, "x_hu").shape
    tol, noise, floor = float(_scalar(arrays, "tol")), float(_scalar(arrays, "noise")), float(_scalar(arrays, "floor"))
    precision, which = str(_scalar(arrays, "precision")), str(_scalar(arrays, "which"))
    ends = {"both": ("smallest", "largest"), "smallest": ("smallest",), "largest": ("largest",)}[which]
    conv = all(bool(np.all(_get(arrays, f"converged_{end}"))) for end in ends)
    below_sel = _get(arrays, "below_floor_smallest").astype(bool)
    below = int(np.sum(below_sel))
    who = ", ".join(f"{key} {meta[key]}" for key in ("denoiser", "preset", "data") if meta.get(key))
    alphas = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    lmax_seen = float(np.max(_get(arrays, "largest")))
    upper = float(lam[0]) + noise
    n_below = [int(np.sum(lam + noise < a)) for a in alphas]  # eigenvalues certainly below each alpha
    below_txt = [f"{a:g}: all (α > λ_max ≈ {lmax_seen:.2g})" if a > lmax_seen else
                 f"{a:g}: {'≥' if nb == k else ''}{nb}" for a, nb in zip(alphas, n_below)]
    floor_txt = (f" {below} of the smallest lie below the solver's resolution: at least {below} eigenvalues are "
                 f"≤ {float(np.max(lam[below_sel])) + noise:.2g} (Ritz values bound them from above), and their "
                 "directions are not drawn." if below else "")
    # no wall time in the caption (it stays in the arrays' 'seconds'): it would change the PNG at every run
    return (f"Linearised invariances{' (' + who + ')' if who else ''}, {shape[0]}x{shape[1]} px: the {k} smallest "
            f"and largest eigenvalues of J^T J (f in network units; a dimensionless squared gain, the same in HU), "
            f"thick-restart Lanczos on {precision} jvp/vjp products, {int(_scalar(arrays, 'iterations'))} products. "
            f"A pair is certified when its explicit residual plus the products' rounding ({noise:.2g}) is at most "
            f"{tol:g}·λ, or as a null direction when |λ| and its residual are at most that rounding; below the "
            f"floor 2·rounding/tol = {floor:.2g} nothing can be certified: "
            f"{'all converged' if conv else 'NOT all converged'} (smallest: {_end_summary(arrays, 'smallest')}; "
            f"largest: {_end_summary(arrays, 'largest')}).{floor_txt} Only certified directions are drawn, as a "
            f"change of {change_rms_hu:g} HU RMS (C=0/W=100 HU); 'ignored' means λ ≤ "
            f"{float(_scalar(arrays, 'ignored_max')):g}. "
            f"Distance: bounded MSE, whose invariance grows locally only along directions with λ < α; "
            f"λ_min ≤ {upper:.3g} (an upper bound), so every alpha above it is worth running"
            + (f"; computed eigenvalues (upper bounds) below each alpha: {', '.join(below_txt)}" if alphas.size else "")
            + ".")


#: The columns of the per-denoiser summary table (``figures.tables.markdown_table``).
TABLE_COLUMNS = [("denoiser", "denoiser", ""), ("crop", "crop (px)", ""), ("lambda_min", "λ_min", ""),
                 ("lambda_max", "λ_max", ".3g"), ("smallest", "k smallest", ""),
                 ("ignored", "ignored (certified)", ""), ("floor", "floor", ".2g"),
                 ("products", "J^T J v products", ""),
                 ("alphas_worth", "α of the grid above λ_min", "")]
TABLE_NOTE = ("λ: eigenvalues of JᵀJ (dimensionless squared gain of f, network units in and out). A pair is "
              "certified when its explicit residual plus the products' rounding is at most tol·λ, or as a null "
              "direction at that rounding; below the floor (2·rounding/tol) the solver cannot resolve an eigenvalue "
              "and states an upper bound (≤). α above the bound on λ_min grows x_inv along at least one direction.")


def table_row(arrays, alphas, denoiser: str = "", crop=None) -> dict:
    """One row of :data:`TABLE_COLUMNS` for a denoiser's ``linearised`` arrays: λ_min as certified
    (a value, or 0 for a null direction) or as an upper bound (≤) with the reason."""
    lam, noise, floor = _get(arrays, "smallest"), float(_scalar(arrays, "noise")), float(_scalar(arrays, "floor"))
    state = pair_states(arrays, "smallest")[0]
    upper = float(lam[0]) + noise
    lambda_min = {"null": f"0 (null, ≤ {noise:.1g})", "certified": f"{float(lam[0]):.2e}",
                  "below floor": f"≤ {upper:.2g} (below resolution)",
                  "not converged": f"≤ {upper:.2e} (not converged)"}[state]
    ignored_max = float(_scalar(arrays, "ignored_max"))
    ignored = sum(s in ("certified", "null") and v <= ignored_max
                  for s, v in zip(pair_states(arrays, "smallest"), lam))
    return {"denoiser": denoiser, "crop": crop, "lambda_min": lambda_min,
            "lambda_max": float(_get(arrays, "largest")[0]),
            "smallest": _end_summary(arrays, "smallest"), "ignored": f"{ignored}/{len(lam)}", "floor": floor,
            "products": int(_scalar(arrays, "iterations")),
            "alphas_worth": ", ".join(f"{a:g}" for a in np.atleast_1d(alphas) if float(a) > upper) or "none"}
