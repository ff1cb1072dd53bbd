"""Noise measurement in a flat region of a CT slice."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def find_flat_roi(full_hu: np.ndarray, roi_size: int = 15, hu_range=(-50.0, 120.0)) -> np.ndarray:
    """Boolean mask of the ``roi_size`` x ``roi_size`` square of soft tissue with the least structure.

    Structure is the gradient magnitude of the Gaussian-smoothed (sigma 3 px) full-dose image, so
    the choice does not favour squares where the noise happens to be low (which would bias the
    measured noise down)."""
    smooth = ndimage.gaussian_filter(full_hu.astype(np.float64), 3.0)
    grad = np.hypot(ndimage.sobel(smooth, 0), ndimage.sobel(smooth, 1))
    structure = ndimage.uniform_filter(grad, roi_size)
    local_mean = ndimage.uniform_filter(smooth, roi_size)
    inside = ndimage.minimum_filter(smooth, roi_size) > hu_range[0]
    inside &= ndimage.maximum_filter(smooth, roi_size) < hu_range[1]
    inside &= (local_mean > hu_range[0]) & (local_mean < hu_range[1])
    half = roi_size // 2
    inside[:half], inside[-half:], inside[:, :half], inside[:, -half:] = False, False, False, False
    if not inside.any():
        raise ValueError(f"no {roi_size}x{roi_size} px soft-tissue region in this slice; "
                         "pick another slice or a smaller roi_size")
    y, x = np.unravel_index(np.argmin(np.where(inside, structure, np.inf)), structure.shape)
    mask = np.zeros(full_hu.shape, dtype=bool)
    mask[y - half:y - half + roi_size, x - half:x - half + roi_size] = True
    return mask


def noise_std_hu(image_hu: np.ndarray, roi: np.ndarray) -> float:
    """Standard deviation (HU) inside a boolean ROI."""
    return float(np.std(image_hu[roi]))


def noise_by_region(data, slices_per_patient: int | None = None, roi_size: int = 15) -> list[dict]:
    """Median noise std (HU) of full and low dose in each slice's flattest soft-tissue ROI, per region.

    ``data``: a :class:`~ctinv_utils.data.dataset.PairedCTData`; ``slices_per_patient``: evenly spaced
    slices per patient (None: all). Slices without a soft-tissue ROI are skipped. Rows:
    ``{region, slices, full_std_hu, low_std_hu, ratio, expected_ratio, dose_fraction}``."""
    per_region: dict[str, list[tuple[float, float]]] = {}
    dose = {}
    for pi, p in enumerate(data.patients):
        n = p.n_slices if slices_per_patient is None else min(p.n_slices, slices_per_patient)
        for s in np.unique(np.linspace(0, p.n_slices - 1, n).round().astype(int)):
            low, full = data.slice_hu(pi, int(s))
            try:
                roi = find_flat_roi(full, roi_size)
            except ValueError:
                continue
            per_region.setdefault(p.region, []).append((noise_std_hu(full, roi), noise_std_hu(low, roi)))
            dose[p.region] = p.dose_fraction
    rows = []
    for region, vals in sorted(per_region.items()):
        full_std, low_std = np.median(np.asarray(vals), axis=0)
        rows.append({"region": region, "slices": len(vals), "full_std_hu": float(full_std), "low_std_hu": float(low_std),
                     "ratio": float(low_std / full_std), "expected_ratio": float(np.sqrt(1 / dose[region])),
                     "dose_fraction": dose[region]})
    return rows
