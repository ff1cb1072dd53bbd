"""Simulated CT acquisition: HU -> attenuation -> parallel-beam projections -> Poisson counts at
full dose and at a dose fraction -> log -> filtered back-projection -> HU.

Physics (mono-energetic, ~70 keV): ``mu = MU_WATER * (1 + HU/1000)`` with a real pixel size, so
line integrals through a body reach 5-7 and photon counts drop to tens behind bone: the low-dose
noise is streaky and correlated like real CT. The low-dose scan is the full-dose scan with photons
removed (binomial thinning of the full-dose counts, as the Mayo data's low-dose images were made by
noise insertion into the full-dose projections): its counts are exactly Poisson at ``dose * I0`` and
its noise variance is the full-dose variance divided by the dose fraction.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import iradon, radon

#: Linear attenuation of water at ~70 keV, per mm.
MU_WATER_PER_MM = 0.0195


def hu_to_mu(image_hu: np.ndarray) -> np.ndarray:
    """HU -> linear attenuation in 1/mm (air and below clipped to 0)."""
    return np.clip(MU_WATER_PER_MM * (1.0 + np.asarray(image_hu, dtype=np.float64) / 1000.0), 0.0, None)


def mu_to_hu(mu_per_mm: np.ndarray) -> np.ndarray:
    """Linear attenuation in 1/mm -> HU."""
    return (np.asarray(mu_per_mm) / MU_WATER_PER_MM - 1.0) * 1000.0


def view_angles(n_views: int) -> np.ndarray:
    """Parallel-beam view angles in degrees over 180 degrees."""
    return np.linspace(0.0, 180.0, n_views, endpoint=False)


def project(image_hu: np.ndarray, pixel_mm: float, n_views: int) -> np.ndarray:
    """Noise-free line integrals (dimensionless), shape (n_detectors, n_views)."""
    return radon(hu_to_mu(image_hu), theta=view_angles(n_views), circle=True) * pixel_mm


def fbp_hu(line_integrals: np.ndarray, pixel_mm: float, size: int, filter_name: str = "hann") -> np.ndarray:
    """Filtered back-projection of line integrals -> image in HU, (size, size) float32.

    A Hann-windowed ramp gives the smoother texture of a clinical soft-tissue kernel."""
    n_views = line_integrals.shape[1]
    mu = iradon(line_integrals / pixel_mm, theta=view_angles(n_views), filter_name=filter_name,
                circle=True, output_size=size)
    return mu_to_hu(mu).astype(np.float32)


def noisy_line_integrals(line_integrals: np.ndarray, photons: float, dose_fraction: float,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts at ``photons`` per ray (full dose) and their binomial thinning to
    ``dose_fraction``; returns the log-converted (full, low) line integrals.

    Zero counts (photon starvation) are clamped to 0.5 photons before the log."""
    expected = photons * np.exp(-line_integrals)
    counts_full = rng.poisson(expected)
    counts_low = rng.binomial(counts_full, dose_fraction)
    full = -np.log(np.maximum(counts_full, 0.5) / photons)
    low = -np.log(np.maximum(counts_low, 0.5) / (photons * dose_fraction))
    return full, low


def simulate_pair(image_hu: np.ndarray, pixel_mm: float, photons: float, dose_fraction: float,
                  n_views: int, rng: np.random.Generator, filter_name: str = "hann"):
    """One slice -> (low_dose_hu, full_dose_hu), both (size, size) float32, same geometry."""
    size = image_hu.shape[0]
    clean = project(image_hu, pixel_mm, n_views)
    full, low = noisy_line_integrals(clean, photons, dose_fraction, rng)
    return fbp_hu(low, pixel_mm, size, filter_name), fbp_hu(full, pixel_mm, size, filter_name)


# -- differences: lesion insertion by linearity ------------------------------------------------
# Projection and FBP are linear, so an object added to a slice adds its own line integrals to the
# scan and its own noise-free FBP to the image. ``lesions`` uses these to build a lesion-free twin
# with the same noise realisation as a lesion-present scan.

def project_delta(delta_hu: np.ndarray, pixel_mm: float, n_views: int) -> np.ndarray:
    """Line integrals (dimensionless) of an HU *difference* map, shape (n_detectors, n_views).

    ``project(image + delta) == project(image) + project_delta(delta)`` wherever ``image + delta``
    stays above -1000 HU (``hu_to_mu`` clips air; a lesion in soft tissue never reaches it)."""
    delta_mu = MU_WATER_PER_MM * np.asarray(delta_hu, dtype=np.float64) / 1000.0
    return radon(delta_mu, theta=view_angles(n_views), circle=True) * pixel_mm


def fbp_delta_hu(delta_line_integrals: np.ndarray, pixel_mm: float, size: int,
                 filter_name: str = "hann") -> np.ndarray:
    """FBP of a line-integral *difference* -> HU difference, (size, size) float64, no offset:
    ``fbp_hu(a) - fbp_hu(b) == fbp_delta_hu(a - b)`` up to float32 rounding of ``fbp_hu``."""
    n_views = delta_line_integrals.shape[1]
    mu = iradon(np.asarray(delta_line_integrals, dtype=np.float64) / pixel_mm, theta=view_angles(n_views),
                filter_name=filter_name, circle=True, output_size=size)
    return mu / MU_WATER_PER_MM * 1000.0
