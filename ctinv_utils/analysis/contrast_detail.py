"""Contrast-detail curves: for each lesion diameter, the smallest contrast a model observer detects
at a given d' (the standard way CT low-contrast detectability is reported).

1. :func:`dprime_table` computes d' for every (diameter, contrast) cell of a lesion data set from
   ROIs (one observer of :mod:`.observers`, one estimation method); :func:`dprime_table_for` does it
   for images of a :class:`~ctinv_utils.data.lesions.LesionSet` (low dose, full dose, or a
   denoiser's outputs on them).
2. :func:`threshold_contrast` reads the threshold contrast off one diameter's d' against |contrast|:
   **linear interpolation** of d' between the grid's contrasts of one sign, with the point
   (0 HU, d' = 0) prepended (no lesion, nothing to detect), at the **first upward crossing** of the
   threshold (default d' = 2, AUC 0.92). For a linear reconstruction and a linear observer d' is
   proportional to |contrast|, so this interpolation is exact there. NaN when d' stays below the
   threshold at every contrast of the grid ("not reached": the curve lies above the grid).
3. :func:`contrast_detail` does this for every diameter, separately for positive and negative
   lesions (a denoiser need not treat them alike).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .observers import N_CHANNELS, ObserverError, channel_width_px, cho, laguerre_gauss_channels, npw

#: d' at which a lesion counts as detected (AUC = Phi(2 / sqrt 2) = 0.92).
DEFAULT_THRESHOLD = 2.0


@dataclass
class DPrimeTable:
    """d' per (diameter, contrast): arrays (D, C); ``n`` is the number of present ROIs per cell."""

    observer: str
    method: str
    diameters_mm: np.ndarray
    contrasts_hu: np.ndarray
    dprime: np.ndarray
    stderr: np.ndarray
    dprime_resubstitution: np.ndarray
    n: np.ndarray

    def as_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}


def dprime_table(present_rois, absent_rois, diameter_mm, contrast_hu, observer: str = "npw",
                 pixel_mm: float | None = None, paired: bool = True, method: str = "holdout", folds: int = 2,
                 noise_rois=None, noise_groups=None, realisation=None, n_channels: int = N_CHANNELS) -> DPrimeTable:
    """d' of ``observer`` ("npw" or "cho") in every (diameter, contrast) cell.

    ``present_rois``, ``absent_rois``: (N, h, w) in HU, ``absent_rois[i]`` the lesion-free twin of
    ``present_rois[i]`` when ``paired`` (else every absent ROI serves every cell); ``diameter_mm``,
    ``contrast_hu``: (N,) labels of the samples. ``noise_rois`` (M, h, w): extra independent
    lesion-absent ROIs at the lesions' positions, with ``noise_groups`` (M,), for the score variance
    and the CHO's covariance of every cell (see :func:`~.observers.cho`).

    ``realisation`` (N,): with paired twins, the realisation (background: slice and lesion position)
    of each sample. Then the twins of the *other* cells join each cell's noise ROIs, grouped by
    realisation (``noise_groups`` must use the same labels): they are lesion-free, at the same
    positions, and their noise is independent of the cell's own (a separate scan), so a grid of
    D x C cells gives each cell D x C - 1 extra noise ROIs per realisation at no cost.
    CHO only: ``pixel_mm`` (channel width from the diameter in px, :func:`~.observers.channel_width_px`)."""
    observer = observer.lower()
    if observer not in ("npw", "cho"):
        raise ObserverError(f"unknown observer {observer!r}; use 'npw' or 'cho'")
    if observer == "cho" and not pixel_mm:
        raise ObserverError("the CHO's channel width depends on the lesion diameter in pixels: pass pixel_mm")
    p, a = np.asarray(present_rois), np.asarray(absent_rois)
    d_lab, c_lab = np.asarray(diameter_mm, dtype=float), np.asarray(contrast_hu, dtype=float)
    if not (len(p) == len(d_lab) == len(c_lab)) or (paired and len(a) != len(p)):
        raise ObserverError(f"need one diameter and contrast label per present ROI{' and one twin each' if paired else ''}; "
                            f"got {len(p)} present, {len(a)} absent, {len(d_lab)} diameters, {len(c_lab)} contrasts")
    if realisation is not None and (not paired or len(realisation) != len(p)):
        raise ObserverError("realisation labels need paired twins and one label per present ROI")
    if realisation is not None and noise_rois is not None and noise_groups is None:
        raise ObserverError("with realisation labels, give noise_groups (the realisation of each noise ROI) too")
    base_noise = np.zeros((0, *p.shape[1:])) if noise_rois is None else np.asarray(noise_rois)
    base_groups = (np.zeros(len(base_noise), dtype=int) if noise_groups is None else np.asarray(noise_groups))
    diameters, contrasts = np.unique(d_lab), np.unique(c_lab)
    shape = (len(diameters), len(contrasts))
    out = {k: np.full(shape, np.nan) for k in ("dprime", "stderr", "resub")}
    n = np.zeros(shape, dtype=int)
    how = ""
    for i, d in enumerate(diameters):
        channels = (laguerre_gauss_channels(p.shape[-1], channel_width_px(d / pixel_mm), n_channels)
                    if observer == "cho" else None)
        for j, c in enumerate(contrasts):
            in_cell = (d_lab == d) & (c_lab == c)
            idx = np.nonzero(in_cell)[0]
            if len(idx) == 0:
                continue
            absent = a[idx] if paired else a
            noise, groups = base_noise, base_groups
            if realisation is not None:
                noise = np.concatenate([base_noise, a[~in_cell]])
                groups = np.concatenate([base_groups, np.asarray(realisation)[~in_cell]])
            kw = dict(method=method, folds=folds, paired=paired, noise=noise if len(noise) else None,
                      noise_groups=groups if len(noise) else None)
            res = npw(p[idx], absent, **kw) if observer == "npw" else cho(p[idx], absent, channels, **kw)
            out["dprime"][i, j], out["stderr"][i, j], out["resub"][i, j] = res.dprime, res.stderr, res.dprime_resubstitution
            n[i, j], how = len(idx), res.method
    if realisation is not None:
        how += " (noise ROIs: lesion-free scans and the other cells' twins)"
    name = "NPW" if observer == "npw" else f"CHO ({n_channels} LG channels, a = max(1.5 x diameter, 2 px))"
    return DPrimeTable(name, how, diameters, contrasts, out["dprime"], out["stderr"], out["resub"], n)


def dprime_table_for(lesion_set, lesion_images, free_images, absent_images=None, observer: str = "npw",
                     pool_twins: bool = True, **kwargs) -> DPrimeTable:
    """:func:`dprime_table` on the images of a lesion set: ``lesion_images``, ``free_images``
    (N, H, W) (e.g. ``ls.low_lesion, ls.low_free`` or a denoiser's outputs on them), and
    ``absent_images`` (R, A, H, W) (e.g. ``ls.low_absent`` or its denoised version) as noise ROIs at
    each realisation's lesion position, grouped by realisation. ``pool_twins``: the other cells'
    twins join the noise ROIs (see :func:`dprime_table`). Both matter: 4 realisations per cell give
    a d' whose variance rests on ~3 degrees of freedom, and the CHO cannot even be fitted."""
    r = lesion_set.patient_seed.shape[0]
    if absent_images is not None:
        noise = lesion_set.absent_rois(absent_images)
        kwargs.setdefault("noise_rois", noise.reshape(-1, *noise.shape[-2:]))
        kwargs.setdefault("noise_groups", np.repeat(np.arange(r), noise.shape[1]))
    if pool_twins:
        kwargs.setdefault("realisation", lesion_set.realisation)
    return dprime_table(lesion_set.rois(lesion_images), lesion_set.rois(free_images), lesion_set.diameter_mm,
                        lesion_set.contrast_hu, observer=observer, pixel_mm=lesion_set.pixel_mm, paired=True, **kwargs)


def threshold_contrast(contrasts_hu, dprime, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Smallest |contrast| (HU) at which d' reaches ``threshold``, from d' at contrasts of one sign
    (see the module docstring: linear interpolation from (0, 0), first upward crossing; NaN when
    not reached; NaN d' values are skipped)."""
    c = np.abs(np.asarray(contrasts_hu, dtype=float))
    d = np.asarray(dprime, dtype=float)
    if c.shape != d.shape:
        raise ObserverError(f"contrasts and d' differ in shape: {c.shape} vs {d.shape}")
    if np.any(c == 0):
        raise ObserverError("contrast 0 HU in the grid: the (0, 0) point is added by the interpolation itself")
    keep = np.isfinite(d)
    order = np.argsort(c[keep])
    c = np.concatenate([[0.0], c[keep][order]])
    d = np.concatenate([[0.0], d[keep][order]])
    for k in range(1, len(c)):
        if d[k] >= threshold:
            lo, hi = d[k - 1], d[k]
            return float(c[k] if hi == lo else c[k - 1] + (threshold - lo) / (hi - lo) * (c[k] - c[k - 1]))
    return float("nan")


def contrast_detail(table: DPrimeTable, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """The contrast-detail curve of a d' table: threshold |contrast| per diameter, for positive and for
    negative lesions (NaN: not reached within the grid, or no contrasts of that sign). Returns
    ``{diameters_mm, positive, negative (D,), threshold, observer, method, max_contrast_hu}``."""
    out = {"diameters_mm": np.asarray(table.diameters_mm, dtype=float), "threshold": float(threshold),
           "observer": table.observer, "method": table.method,
           "max_contrast_hu": float(np.max(np.abs(table.contrasts_hu)))}
    for sign, name in ((1, "positive"), (-1, "negative")):
        cols = np.nonzero(np.sign(table.contrasts_hu) == sign)[0]
        out[name] = np.array([threshold_contrast(table.contrasts_hu[cols], table.dprime[i, cols], threshold)
                              if len(cols) else np.nan for i in range(len(table.diameters_mm))])
    return out
