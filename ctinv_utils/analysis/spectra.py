"""Noise power spectra of difference images (HU)."""

from __future__ import annotations

import numpy as np


def radial_nps(images_hu, n_bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged noise power spectrum of ``(N, H, W)`` (or ``(H, W)``) difference images in HU.

    Each image has its mean removed and is Hann-windowed (so the image border adds no spurious
    high frequencies); ``NPS(f) = |FFT|^2 / sum(window^2)`` averaged over images and over rings of
    radial frequency. Returns (frequency in cycles/pixel, bin centres up to 0.5; NPS in HU^2 px^2),
    so that the sum of NPS over the 2-D frequency plane equals the variance."""
    a = np.asarray(images_hu, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    n, H, W = a.shape
    win = np.outer(np.hanning(H), np.hanning(W))
    a = (a - a.mean(axis=(1, 2), keepdims=True)) * win
    power = (np.abs(np.fft.fft2(a)) ** 2).mean(0) / (win ** 2).sum()
    fy, fx = np.fft.fftfreq(H), np.fft.fftfreq(W)
    r = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    edges = np.linspace(0, 0.5, n_bins + 1)
    idx = np.digitize(r.ravel(), edges) - 1
    ok = (idx >= 0) & (idx < n_bins)
    sums = np.bincount(idx[ok], weights=power.ravel()[ok], minlength=n_bins)
    counts = np.bincount(idx[ok], minlength=n_bins)
    return (edges[:-1] + edges[1:]) / 2, sums / np.maximum(counts, 1)


def spectral_shape_distance(nps_a: np.ndarray, nps_b: np.ndarray) -> float:
    """How different two spectra are in *shape* (texture), whatever their power: half the L1
    distance of the spectra normalized to unit sum, in [0, 1] (0: same texture, 1: disjoint bands)."""
    a, b = np.asarray(nps_a, float), np.asarray(nps_b, float)
    a, b = a / max(a.sum(), 1e-300), b / max(b.sum(), 1e-300)
    return float(0.5 * np.abs(a - b).sum())


def mean_frequency(freq: np.ndarray, nps: np.ndarray) -> float:
    """Power-weighted mean radial frequency (cycles/pixel): where the texture sits."""
    nps = np.asarray(nps, float)
    return float((freq * nps).sum() / max(nps.sum(), 1e-300))
