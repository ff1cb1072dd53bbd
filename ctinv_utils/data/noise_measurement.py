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
