"""What do sampled invariances change: the noise (amplitude, realisation) or the anatomy?

Everything is measured on arrays in HU: ``x`` the low-dose slice, ``full`` its full-dose twin (so
``x - full`` is the low-dose noise), ``samples`` the invariances ``(n, H, W)``. The talk concludes that
natural invariances "mostly alter noise structure and much less the anatomical structure"; the
Med. Phys. follow-up says the networks are invariant to the noise amplitude, to the noise
realisation, and to anatomical structures. :func:`verdicts` turns the numbers below into one line
for each of the three claims, with the thresholds stated in the line.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..data.noise_measurement import find_flat_roi
from .spectra import mean_frequency, radial_nps, spectral_shape_distance

#: Thresholds of the verdicts (stated in every verdict line).
AMPLITUDE_TOL = 0.10        # a noise-std ratio outside 1 +- this: the amplitude changed
NEW_REALISATION_CORR = 0.9  # corr(sample noise, input noise) below this: a new noise realisation
ANATOMY_EDGE_FACTOR = 2.0   # change energy on edges / off edges, relative to the same ratio of the noise


def edge_mask(full_hu: np.ndarray, fraction: float = 0.15, sigma: float = 1.0) -> np.ndarray:
    """Anatomical edges: the ``fraction`` of pixels with the largest gradient magnitude of the
    Gaussian-smoothed full-dose image (its noise is low, its structure is the anatomy)."""
    smooth = ndimage.gaussian_filter(np.asarray(full_hu, dtype=np.float64), sigma)
    grad = np.hypot(ndimage.sobel(smooth, 0), ndimage.sobel(smooth, 1))
    return grad >= np.quantile(grad, 1 - fraction)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-300))


def _edge_ratio(d: np.ndarray, edges: np.ndarray) -> float:
    return float(np.mean(d[..., edges] ** 2) / max(np.mean(d[..., ~edges] ** 2), 1e-300))


def change_metrics(samples_hu, x_hu, full_hu, margin: int = 0) -> dict:
    """Numbers describing the changes ``samples - x`` (all in HU, on the image without ``margin`` px
    at the border): RMS and mean |change|, pixel-wise std over samples, correlation with the input's
    noise, noise amplitude in a flat ROI, energy on anatomical edges relative to the noise's, and the
    noise power spectrum against that of the real low-dose noise."""
    s = np.asarray(samples_hu, dtype=np.float64)
    x, full = np.asarray(x_hu, dtype=np.float64), np.asarray(full_hu, dtype=np.float64)
    if margin:
        cut = (slice(margin, -margin), slice(margin, -margin))
        s, x, full = s[(slice(None), *cut)], x[cut], full[cut]
    delta, noise = s - x, x - full
    edges = edge_mask(full)
    try:
        roi = find_flat_roi(full, roi_size=min(15, min(full.shape) // 4 * 2 + 1))
    except ValueError:  # no soft tissue in view (e.g. a tiny crop): no amplitude measurement
        roi = None
    f, nps_change = radial_nps(delta)
    _, nps_noise = radial_nps(noise)
    noise_std = float(np.std(noise[roi])) if roi is not None else float("nan")
    sample_noise_std = np.array([np.std((si - full)[roi]) if roi is not None else np.nan for si in s])
    return {
        "n_samples": int(len(s)),
        "rms_change_hu": float(np.sqrt(np.mean(delta ** 2))),
        "mean_abs_change_hu": float(np.mean(np.abs(delta))),
        "pixel_std_hu": float(np.mean(s.std(0))) if len(s) > 1 else 0.0,
        "noise_rms_hu": float(np.sqrt(np.mean(noise ** 2))),
        # a change that undoes the input's noise correlates -1 with it; a new realisation of the same
        # amplitude gives about -0.71; an added independent texture 0
        "corr_change_with_noise": float(np.mean([_corr(d, noise) for d in delta])),
        "corr_sample_noise_with_input_noise": float(np.mean([_corr(si - full, noise) for si in s])),
        "noise_std_roi_hu": noise_std,
        "sample_noise_std_roi_hu": float(sample_noise_std.mean()),
        "noise_amplitude_ratio": float(sample_noise_std.mean() / max(noise_std, 1e-12)),
        "noise_amplitude_ratio_spread": float(sample_noise_std.std() / max(noise_std, 1e-12)),
        "edge_fraction": float(edges.mean()),
        "edge_ratio_change": _edge_ratio(delta, edges),
        "edge_ratio_noise": _edge_ratio(noise, edges),
        "nps_distance_to_noise": spectral_shape_distance(nps_change, nps_noise),
        "mean_frequency_change": mean_frequency(f, nps_change),
        "mean_frequency_noise": mean_frequency(f, nps_noise),
        "nps": {"frequency": f.tolist(), "change": nps_change.tolist(), "noise": nps_noise.tolist()},
    }


def verdicts(m: dict) -> dict[str, str]:
    """One line per claim, computed from :func:`change_metrics` numbers."""
    r = m["noise_amplitude_ratio"]
    state = "not measurable (no flat soft-tissue ROI)" if not np.isfinite(r) else ("CHANGED" if abs(r - 1) > AMPLITUDE_TOL else "kept")
    amp = (f"noise amplitude: {state} — the samples' noise std in a "
           f"flat ROI is {r:.2f}x the input's (±{m['noise_amplitude_ratio_spread']:.2f} across samples; "
           f"changed if outside 1 ± {AMPLITUDE_TOL:g})")
    c = m["corr_sample_noise_with_input_noise"]
    real = (f"noise realisation: {'NEW' if c < NEW_REALISATION_CORR else 'same'} — the samples' noise correlates "
            f"{c:.2f} with the input's (a new realisation if below {NEW_REALISATION_CORR:g}); the change correlates "
            f"{m['corr_change_with_noise']:.2f} with the input noise (−1 removes it, −0.71 replaces it, 0 adds to it)")
    rel = m["edge_ratio_change"] / max(m["edge_ratio_noise"], 1e-12)
    anat = (f"anatomy: {'ALTERED' if rel > ANATOMY_EDGE_FACTOR else 'much less than noise'} — the change puts "
            f"{m['edge_ratio_change']:.2f}x as much energy per pixel on anatomical edges as elsewhere, the noise "
            f"{m['edge_ratio_noise']:.2f}x (ratio {rel:.2f}; anatomy altered if above {ANATOMY_EDGE_FACTOR:g})")
    return {"noise_amplitude": amp, "noise_realisation": real, "anatomy": anat}
