"""Does a denoiser remove lesions? Denoised lesion ROIs, the lesion metrics of every image kind, and
how much of a lesion an invariance removes.

Image kinds: ``"low dose"`` and ``"full dose"`` (the scans of :mod:`ctinv_utils.data.lesions`) and
one per denoiser (its output on the low-dose scans). For each kind and every sample of a
:class:`~ctinv_utils.data.lesions.LesionSet` we keep three stacks of ROIs centred on the lesion
(HU): ``lesion`` (N, r, r), its lesion-free twin ``free`` (N, r, r) (same noise realisation) and
the independent lesion-free scans ``absent`` (R, A, r, r).

**Denoising crops.** A convolutional denoiser's output at a pixel depends only on the input within
its receptive field, so the lesion ROI of ``f(crop)`` equals the ROI of ``f(whole slice)`` when the
crop adds ``pad_px`` px on every side, more than the receptive-field radius (CNN-10 and the WGAN-VGG
generator: <= 10 px; default 24). That makes denoising 16x cheaper at 256 px. Denoisers whose output
depends on the position in the image (Gauss+RI zeroes the image's *central* square, so a crop
centred on the lesion would put the lesion in it) get the whole slice.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.lesions import LesionSet, crop
from ..units import hu_to_norm, norm_to_hu
from .contrast_detail import DEFAULT_THRESHOLD, contrast_detail, dprime_table
from .observers import ObserverError, lesion_contrast, structure_transfer

#: Denoisers (class names) whose output depends on where the content sits in the image: denoised
#: whole. A denoiser can also say so itself with an attribute ``position_dependent = True``.
POSITION_DEPENDENT = ("GaussRI",)
LOW, FULL = "low dose", "full dose"
OBSERVERS = ("npw", "cho")


@torch.no_grad()
def denoise_rois(denoiser, images_hu, centres_px, roi_px: int, pad_px: int = 24, device: str = "cpu",
                 batch_size: int = 32) -> np.ndarray:
    """``f`` on ``images_hu`` (N, H, W) HU -> the (N, roi_px, roi_px) ROIs of the outputs centred on
    ``centres_px`` (N, 2) (row, col), HU. Translation-equivariant denoisers see only a crop of
    ``roi_px + 2 pad_px`` px (see the module docstring); ``POSITION_DEPENDENT`` ones the whole slice."""
    images = np.asarray(images_hu, dtype=np.float32)
    centres = np.asarray(centres_px)
    if len(images) != len(centres):
        raise ObserverError(f"one centre per image: got {len(images)} images and {len(centres)} centres")
    whole = position_dependent(denoiser)
    size = roi_px + 2 * pad_px
    if whole:
        inputs = images
    else:  # edge-padded so that a crop near the border stays defined (lesions sit far inside the body)
        m = size // 2 + 1
        padded = np.pad(images, ((0, 0), (m, m), (m, m)), mode="edge")
        inputs = np.stack([crop(im, np.asarray(c) + m, size) for im, c in zip(padded, centres)])
    out = np.empty_like(inputs)
    for k in range(0, len(inputs), batch_size):
        x = torch.from_numpy(hu_to_norm(inputs[k:k + batch_size]))[:, None].float().to(device)
        out[k:k + batch_size] = norm_to_hu(denoiser(x))[:, 0].cpu().numpy()
    if whole:
        return np.stack([crop(o, c, roi_px) for o, c in zip(out, centres)])
    return out[:, pad_px:pad_px + roi_px, pad_px:pad_px + roi_px].copy()


def position_dependent(denoiser) -> bool:
    """Whether the denoiser must see the whole slice (see the module docstring)."""
    return bool(getattr(denoiser, "position_dependent", type(denoiser).__name__ in POSITION_DEPENDENT))


def lesion_rois(ls: LesionSet, denoisers: dict, pad_px: int = 24, device: str = "cpu") -> dict[str, dict]:
    """``{kind: {"lesion", "free", "absent"}}`` ROIs in HU for low dose, full dose and each denoiser
    (``{name: module}``, applied to the low-dose scans; see the module docstring)."""
    r = ls.roi_px
    out = {LOW: dict(lesion=ls.rois(ls.low_lesion), free=ls.rois(ls.low_free), absent=ls.absent_rois(ls.low_absent)),
           FULL: dict(lesion=ls.rois(ls.full_lesion), free=ls.rois(ls.full_free), absent=ls.absent_rois(ls.full_absent))}
    rc = ls.realisation_center_px
    n_abs = ls.low_absent.shape[1]
    abs_images = ls.low_absent.reshape(-1, *ls.low_absent.shape[-2:])
    abs_centres = np.repeat(rc, n_abs, axis=0)
    for name, f in denoisers.items():
        out[name] = dict(lesion=denoise_rois(f, ls.low_lesion, ls.center_px, r, pad_px, device),
                         free=denoise_rois(f, ls.low_free, ls.center_px, r, pad_px, device),
                         absent=denoise_rois(f, abs_images, abs_centres, r, pad_px, device).reshape(
                             len(rc), n_abs, r, r) if n_abs else np.zeros((len(rc), 0, r, r), np.float32))
    return out


def example_arrays(ls: LesionSet, denoisers: dict, indices, size: int | None = None, pad_px: int = 24,
                   device: str = "cpu") -> dict[str, np.ndarray]:
    """The ``lesion_examples`` artifact: for the samples ``indices`` (E,), crops of ``size`` px
    (default 2 x ROI + 1) centred on the lesion, per kind (low dose, full dose, each denoiser):
    ``lesion``, ``free`` (E, K, size, size) HU; ``kinds`` (K,), ``diameter_mm``, ``contrast_hu``,
    ``index`` (E,); ``signal`` (E, size, size) the lesion's noise-free reconstruction."""
    idx = np.asarray(indices, dtype=int)
    size = size or 2 * ls.roi_px + 1
    centres = ls.center_px[idx]

    def crops(images):
        return np.stack([crop(im, c, size) for im, c in zip(images[idx], centres)])

    lesion = [crops(ls.low_lesion), crops(ls.full_lesion)]
    free = [crops(ls.low_free), crops(ls.full_free)]
    for f in denoisers.values():
        lesion.append(denoise_rois(f, ls.low_lesion[idx], centres, size, pad_px, device))
        free.append(denoise_rois(f, ls.low_free[idx], centres, size, pad_px, device))
    return dict(kinds=np.asarray([LOW, FULL, *denoisers]), lesion=np.stack(lesion, 1), free=np.stack(free, 1),
                signal=crops(ls.signal), diameter_mm=ls.diameter_mm[idx], contrast_hu=ls.contrast_hu[idx], index=idx)


def _cells(ls: LesionSet, per_sample: np.ndarray) -> np.ndarray:
    """Mean of a per-sample value over the realisations of each (diameter, contrast) cell, (D, C)."""
    out = np.full((len(ls.diameters_mm), len(ls.contrasts_hu)), np.nan)
    for i, d in enumerate(ls.diameters_mm):
        for j, c in enumerate(ls.contrasts_hu):
            out[i, j] = float(np.nanmean(per_sample[ls.cell(d, c)]))
    return out


def kind_metrics(ls: LesionSet, rois: dict, method: str = "holdout", folds: int = 2,
                 threshold: float = DEFAULT_THRESHOLD, observers=OBSERVERS) -> dict:
    """The lesion metrics of one image kind (``rois`` = one entry of :func:`lesion_rois`):

    * ``contrast_retained``: per sample, the lesion's contrast (mask mean minus the 3-9 mm annulus)
      in ``lesion - free`` over that in the full-dose ``full_lesion - full_free`` (= the lesion's
      noise-free reconstruction ``signal``): noise cancels, so it measures the lesion itself.
    * ``structure_transfer``: ||lesion - free|| / ||x_lesion - x_free|| over the ROI, the input being
      the low-dose pair (whose difference is ``signal``).
    * d' of each observer per (diameter, contrast) cell (paired twins, lesion-free scans and the other
      cells' twins as noise ROIs, ``method``), and the contrast-detail curve at d' = ``threshold``.

    Returns per-sample arrays (N,), per-cell means (D, C), the d' tables and the curves."""
    signal = ls.rois(ls.signal)
    masks, rings = ls.roi_masks(), ls.roi_annuli()
    diff = np.asarray(rois["lesion"], np.float64) - rois["free"]
    cr = lesion_contrast(diff, masks, rings) / lesion_contrast(signal, masks, rings)
    st = structure_transfer(rois["lesion"], rois["free"], signal, np.zeros_like(signal))
    absent = np.asarray(rois["absent"])
    noise = absent.reshape(-1, *absent.shape[-2:]) if absent.shape[1] else None
    groups = np.repeat(np.arange(absent.shape[0]), absent.shape[1]) if absent.shape[1] else None
    out = dict(contrast_retained=cr, structure_transfer=st, contrast_retained_cells=_cells(ls, cr),
               structure_transfer_cells=_cells(ls, st), tables={}, curves={})
    for obs in observers:
        t = dprime_table(rois["lesion"], rois["free"], ls.diameter_mm, ls.contrast_hu, observer=obs,
                         pixel_mm=ls.pixel_mm, paired=True, method=method, folds=folds, noise_rois=noise,
                         noise_groups=groups, realisation=ls.realisation)
        out["tables"][obs], out["curves"][obs] = t, contrast_detail(t, threshold)
    return out


def lesion_metrics(ls: LesionSet, rois_by_kind: dict, **kwargs) -> dict[str, dict]:
    """:func:`kind_metrics` for every kind of :func:`lesion_rois`."""
    return {kind: kind_metrics(ls, rois, **kwargs) for kind, rois in rois_by_kind.items()}


def metrics_json(ls: LesionSet, metrics: dict) -> dict:
    """The ``lesion_metrics`` artifact: per kind, per cell and per sample, JSON-ready."""
    def tolist(a):
        return [None if not np.isfinite(v) else float(v) for v in np.ravel(a)] if np.ndim(a) == 1 else \
            [tolist(row) for row in a]

    kinds = {}
    for kind, m in metrics.items():
        kinds[kind] = dict(
            contrast_retained_cells=tolist(m["contrast_retained_cells"]),
            structure_transfer_cells=tolist(m["structure_transfer_cells"]),
            per_sample=dict(contrast_retained=tolist(m["contrast_retained"]),
                            structure_transfer=tolist(m["structure_transfer"])),
            dprime={obs: {k: (tolist(v) if isinstance(v, list) and np.ndim(v) == 2 else v)
                          for k, v in t.as_dict().items()} for obs, t in m["tables"].items()},
            contrast_detail={obs: {k: (tolist(v) if isinstance(v, np.ndarray) else v) for k, v in c.items()}
                             for obs, c in m["curves"].items()})
    return dict(kinds=list(metrics), diameters_mm=ls.diameters_mm.tolist(), contrasts_hu=ls.contrasts_hu.tolist(),
                samples=ls.summary(), lesion_set=ls.config.to_dict(), pixel_mm=ls.pixel_mm, roi_px=ls.roi_px,
                metrics=kinds)


def contrast_detail_arrays(metrics: dict, threshold: float = DEFAULT_THRESHOLD) -> dict[str, np.ndarray]:
    """The ``contrast_detail`` artifact: ``kinds`` (K,), ``diameters_mm`` (D,), ``contrasts_hu`` (C,),
    and per observer ``{obs}_positive``, ``{obs}_negative`` (K, D) threshold |contrast| in HU (NaN: not
    reached), ``{obs}_dprime``, ``{obs}_stderr`` (K, D, C)."""
    kinds = list(metrics)
    first = metrics[kinds[0]]["tables"]
    obs_list = list(first)
    t0 = first[obs_list[0]]
    out = {"kinds": np.asarray(kinds), "diameters_mm": np.asarray(t0.diameters_mm, float),
           "contrasts_hu": np.asarray(t0.contrasts_hu, float), "threshold": np.float64(threshold)}
    for obs in obs_list:
        for sign in ("positive", "negative"):
            out[f"{obs}_{sign}"] = np.stack([metrics[k]["curves"][obs][sign] for k in kinds])
        out[f"{obs}_dprime"] = np.stack([metrics[k]["tables"][obs].dprime for k in kinds])
        out[f"{obs}_stderr"] = np.stack([metrics[k]["tables"][obs].stderr for k in kinds])
    return out


def summary_rows(ls: LesionSet, metrics: dict, observer: str = "npw") -> list[dict]:
    """One row per (kind, diameter, contrast): contrast retained, structure transfer, d' (both
    observers), for the notebook's table."""
    rows = []
    for kind, m in metrics.items():
        for i, d in enumerate(ls.diameters_mm):
            for j, c in enumerate(ls.contrasts_hu):
                row = dict(kind=kind, diameter_mm=float(d), contrast_hu=float(c),
                           contrast_retained=float(m["contrast_retained_cells"][i, j]),
                           structure_transfer=float(m["structure_transfer_cells"][i, j]))
                for obs, t in m["tables"].items():
                    row[f"dprime_{obs}"] = float(t.dprime[i, j])
                rows.append(row)
    return rows


# -- the lesion and the invariances --------------------------------------------------------------

def _profile(signal_hu) -> tuple[np.ndarray, float]:
    """``s0 = s - mean(s)`` and ``<s, s0>`` of a lesion profile ``s`` (H, W) HU (float64)."""
    s = np.asarray(signal_hu, np.float64)
    s0 = s - s.mean()
    norm = float((s * s0).sum())
    if norm <= 0:
        raise ObserverError("the lesion profile is zero or flat: nothing to project onto")
    return s0, norm


def lesion_component(delta_hu, signal_hu) -> np.ndarray:
    """How much of the lesion (profile ``signal_hu`` (H, W), HU) the change ``delta_hu`` (..., H, W)
    removes at the lesion's own place: ``-<delta, s0> / <s, s0>`` (...,), in lesion amplitudes (1 =
    the whole lesion subtracted, 0 = untouched, < 0 = enhanced); ``s0 = s - mean(s)``, see
    :func:`removal_map`, whose centre value this is."""
    s0, norm = _profile(signal_hu)
    return -np.tensordot(np.asarray(delta_hu, np.float64), s0, axes=2) / norm


def removal_map(delta_hu, signal_hu) -> np.ndarray:
    """How much of a lesion of profile ``signal_hu`` (H, W) the change ``delta_hu`` (..., H, W) would
    remove at every place of the crop: ``-<delta, roll(s0, (dy, dx))> / <s, s0>`` for every circular
    shift, with ``s0 = s - mean(s)`` (so that a constant offset of x_inv, which says nothing about the
    lesion, removes nothing; ``delta = -s`` still gives exactly 1 at the lesion's place). One FFT
    cross-correlation instead of H x W projections. Returned fftshifted (..., H, W): the map's centre
    ``(H // 2, W // 2)`` is shift 0, the lesion's own place; with ``s`` centred on the crop's centre
    pixel (as :func:`~ctinv_utils.data.lesions.crop` centres it) the value at a pixel is the removal of
    a lesion centred there."""
    d = np.asarray(delta_hu, np.float64)
    s0, norm = _profile(signal_hu)
    corr = np.fft.ifft2(np.fft.fft2(d) * np.conj(np.fft.fft2(s0))).real
    return np.fft.fftshift(-corr / norm, axes=(-2, -1))


def lesion_extent_px(signal_hu, level: float = 0.05) -> float:
    """The lesion's equivalent diameter in px: that of a disc with the area where |s| exceeds
    ``level`` x its maximum (the noise-free reconstruction's blur and ringing stay below)."""
    s = np.abs(np.asarray(signal_hu, np.float64))
    area = float((s > level * s.max()).sum())
    return 2.0 * np.sqrt(area / np.pi)


def profile_fits(signal_hu) -> np.ndarray:
    """(H, W) bool, in :func:`removal_map`'s layout: the places whose copy of the lesion profile lies
    wholly inside the crop (no wrap-around: at the crop's border x_inv also carries the denoiser's
    padding effects, and a wrapped copy would straddle two borders). Raises when ``s`` is not centred
    on the crop."""
    s = np.abs(np.asarray(signal_hu, np.float64))
    h, w = s.shape
    yy, xx = np.mgrid[:h, :w]
    centroid = np.array([(yy * s).sum(), (xx * s).sum()]) / s.sum()
    if np.abs(centroid - [h // 2, w // 2]).max() > 1.0:
        raise ObserverError(f"the lesion profile's centre {tuple(np.round(centroid, 1))} is not the crop's centre "
                            f"({h // 2}, {w // 2}); crop the image and the profile around the lesion alike")
    r = lesion_extent_px(s) / 2
    return (yy >= r) & (yy <= h - 1 - r) & (xx >= r) & (xx <= w - 1 - r)


def lesion_free_places(signal_hu) -> np.ndarray:
    """(H, W) bool, in :func:`removal_map`'s layout: the places whose copy of the lesion profile fits
    in the crop (:func:`profile_fits`) and misses the lesion (centres more than its extent + 1 px
    apart): the chance set. Raises when ``s`` is not centred on the crop."""
    fits = profile_fits(signal_hu)
    h, w = fits.shape
    yy, xx = np.mgrid[:h, :w]
    return fits & (np.hypot(yy - h // 2, xx - w // 2) > lesion_extent_px(signal_hu) + 1.0)


def removal_fractions(x_inv_hu, x_hu, signal_hu) -> dict[str, np.ndarray]:
    """How much of the lesion each x_inv (A, H, W) removes, against chance.

    * ``removed`` (A,): -<x_inv - x, s0>/<s, s0> at the lesion's place, in lesion amplitudes
      (1 = the whole lesion subtracted, 0 = untouched, < 0 = enhanced; s0 the profile less its mean,
      :func:`removal_map`);
    * ``removal_map`` (A, H, W): the same at every place of the crop;
    * ``removed_elsewhere`` (A, P): the map at the P :func:`lesion_free_places`: the chance
      distribution, what x_inv does to a lesion-shaped profile where there is none;
    * ``removed_percentile`` (A,): the share of those places (%) where less is removed than at the
      lesion. A denoiser that makes x_inv remove the lesion puts it near 100 at every alpha; about 50
      is chance (neighbouring places are correlated over the lesion's size, so the P places are not P
      independent draws)."""
    x_inv, x, s = (np.asarray(v, np.float64) for v in (x_inv_hu, x_hu, signal_hu))
    maps = removal_map(x_inv - x, s)
    elsewhere = maps[..., lesion_free_places(s)]
    removed = lesion_component(x_inv - x, s)  # the maps' centre, shift 0
    percentile = 100.0 * (elsewhere < removed[..., None]).mean(axis=-1)
    return dict(removed=removed, removal_map=maps.astype(np.float32), removed_elsewhere=elsewhere,
                removed_percentile=percentile)


def invariance_lesion_removal(inv, signal_hu) -> tuple[dict, dict]:
    """What a finished :class:`~ctinv_utils.synthesis.invariances.Invariance` run on a lesion slice
    did to the lesion of profile ``signal_hu`` (H, W) (its noise-free reconstruction, HU; same crop
    as the run's image). The notebook runs the synthesis (``hu_range`` default: physical CT values).

    Returns (arrays, meta): ``x, f_x, signal`` (H, W); ``x_inv, f_x_inv`` (A, H, W) HU; ``alphas``;
    ``removed`` (A,) input lesion removed by x_inv (fraction of s), ``removal_map`` (A, H, W),
    ``removed_elsewhere`` (A, P) and ``removed_percentile`` (A,): the same at every lesion-free place
    and where the lesion ranks among them (:func:`removal_fractions`); ``profile_fits`` (H, W) bool,
    the places whose copy of the profile fits in the crop (:func:`profile_fits`); ``output_removed`` (A,) the
    same projection (:func:`lesion_component`) of f(x_inv) - f(x) (how much of the lesion the
    *output* loses); ``input_rms_hu, output_rms_hu,
    out_of_range_fraction`` (A,), ``history_loss`` (T, A). ``meta``: distance, iterations, lr,
    hu_range, convergence per alpha, ``lesion_extent_px`` (:func:`lesion_extent_px`)."""
    fig = inv.figure_arrays()
    if np.shape(signal_hu) != fig["x"].shape:
        raise ObserverError(f"the lesion profile {np.shape(signal_hu)} and the invariance's image {fig['x'].shape} "
                            "differ in shape; crop both around the lesion alike")
    rows = inv.summary()
    rem = removal_fractions(fig["x_inv"], fig["x"], signal_hu)
    out_rem = lesion_component(fig["f_x_inv"].astype(np.float64) - fig["f_x"], signal_hu)
    arrays = dict(x=fig["x"], f_x=fig["f_x"], x_inv=fig["x_inv"], f_x_inv=fig["f_x_inv"],
                  signal=np.asarray(signal_hu, np.float32), alphas=fig["alphas"], removed=rem["removed"],
                  removal_map=rem["removal_map"], removed_elsewhere=rem["removed_elsewhere"],
                  removed_percentile=rem["removed_percentile"], profile_fits=profile_fits(signal_hu),
                  output_removed=out_rem,
                  input_rms_hu=np.array([r["input_rms_hu"] for r in rows]),
                  output_rms_hu=np.array([r["output_rms_hu"] for r in rows]),
                  out_of_range_fraction=np.array([r["out_of_range_fraction"] for r in rows]),
                  history_loss=fig["history_loss"])
    meta = dict(distance=inv.distance_name, iterations=inv.iteration, lr=inv.lr,
                lesion_extent_px=lesion_extent_px(signal_hu),
                hu_range=list(inv.hu_range) if inv.hu_range else None, converged=inv.convergence())
    return arrays, meta


# -- verdicts ----------------------------------------------------------------------------------

def verdicts(metrics: dict, tolerance: float = 0.1, min_dprime: float = 1.0) -> dict:
    """Per denoiser (every kind but low and full dose), per observer:

    * ``threshold_ratio_median``: its threshold contrast over the low-dose one, median over the
      (diameter, sign) pairs where both are reached (None: none); ``lost`` / ``gained``: pairs
      reached at low dose only / after denoising only;
    * ``dprime_ratio_median``: its d' over the low-dose d', median over the cells where the low-dose
      d' >= ``min_dprime`` (None: none);
    * ``loses_lesions``: True when the threshold ratio exceeds ``1 + tolerance`` or more pairs are
      lost than gained, else (no threshold to compare) when the d' ratio is below ``1 - tolerance``;
      None when neither can be compared (the grid holds no lesion the low-dose observer detects).

    Plus the mean contrast retained and structure transfer over all cells."""
    low = metrics[LOW]
    out = {}
    for kind, m in metrics.items():
        if kind in (LOW, FULL):
            continue
        v = dict(contrast_retained=float(np.nanmean(m["contrast_retained_cells"])),
                 structure_transfer=float(np.nanmean(m["structure_transfer_cells"])))
        for obs, curve in m["curves"].items():
            ratios, lost, gained = [], 0, 0
            for sign in ("positive", "negative"):
                a, b = np.asarray(low["curves"][obs][sign]), np.asarray(curve[sign])
                both = np.isfinite(a) & np.isfinite(b)
                ratios += list(b[both] / a[both])
                lost += int((np.isfinite(a) & ~np.isfinite(b)).sum())
                gained += int((~np.isfinite(a) & np.isfinite(b)).sum())
            d_low, d_kind = np.asarray(low["tables"][obs].dprime), np.asarray(m["tables"][obs].dprime)
            usable = np.isfinite(d_low) & np.isfinite(d_kind) & (d_low >= min_dprime)
            t_ratio = float(np.median(ratios)) if ratios else None
            d_ratio = float(np.median(d_kind[usable] / d_low[usable])) if usable.any() else None
            if ratios or lost or gained:
                loses = bool((t_ratio is not None and t_ratio > 1 + tolerance) or lost > gained)
            elif d_ratio is not None:
                loses = bool(d_ratio < 1 - tolerance)
            else:
                loses = None
            v[obs] = dict(threshold_ratio_median=t_ratio, lost=lost, gained=gained, dprime_ratio_median=d_ratio,
                          loses_lesions=loses)
        out[kind] = v
    return out


def verdict_markdown(verdict: dict) -> str:
    """The verdicts as sentences."""
    from ..names import display_name

    def fmt(x):
        return "n/a" if x is None else f"{x:.2f}"

    lines = []
    for kind, v in verdict.items():
        parts = []
        for obs in OBSERVERS:
            if obs not in v:
                continue
            o = v[obs]
            say = {True: "loses lesions", False: "does not lose lesions",
                   None: "cannot tell (the low-dose observer detects no lesion of the grid)"}[o["loses_lesions"]]
            parts.append(f"{obs.upper()}: threshold contrast x{fmt(o['threshold_ratio_median'])} of low dose, d' "
                         f"x{fmt(o['dprime_ratio_median'])} (medians); {o['lost']} (diameter, sign) detected at low dose "
                         f"but not after denoising, {o['gained']} the other way: **{say}**")
        lines.append(f"- **{display_name(kind)}**: contrast retained {v['contrast_retained']:.2f}, structure transfer "
                     f"{v['structure_transfer']:.2f}. " + "; ".join(parts))
    return "\n".join(lines)
