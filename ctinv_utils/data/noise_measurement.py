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


# -- noise power spectrum, noise in an ROI, radial profiles (simulator validation) ------------------

def square_rois(image: np.ndarray, centres_px, size_px: int) -> np.ndarray:
    """Square ROIs cut out of a 2-D image, stacked ``(n, size_px, size_px)``.

    Parameters
    ----------
    image : ndarray, (H, W)
        Image (any unit, e.g. HU).
    centres_px : iterable of (row, col)
        ROI centres in pixels (rounded to the nearest pixel).
    size_px : int
        Side of each square ROI in pixels.

    Returns
    -------
    ndarray, (n, size_px, size_px), float64

    Raises
    ------
    ValueError
        When an ROI does not lie wholly inside the image (move its centre or shrink ``size_px``).
    """
    image = np.asarray(image, dtype=np.float64)
    half = size_px // 2
    out = []
    for r, c in centres_px:
        r0, c0 = int(round(r)) - half, int(round(c)) - half
        if r0 < 0 or c0 < 0 or r0 + size_px > image.shape[0] or c0 + size_px > image.shape[1]:
            raise ValueError(f"ROI of {size_px} px at (row {r}, col {c}) leaves the {image.shape} image; "
                             "move it inwards or use a smaller size_px")
        out.append(image[r0:r0 + size_px, c0:c0 + size_px])
    return np.stack(out)


def nps_2d(noise_rois: np.ndarray, pixel_mm: float, *, difference: bool = False
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-dimensional noise power spectrum of noise-only ROIs (ensemble of periodograms).

    ``NPS(fy, fx) = dy dx / (Ny Nx) < |DFT(roi - mean(roi))|^2 >``, averaged over the ROIs, so that
    its integral over the frequency plane equals the noise variance (Parseval).

    Parameters
    ----------
    noise_rois : ndarray, (n, Ny, Nx) or (Ny, Nx)
        Noise-only ROIs in HU: an image minus its noise-free mean, or the difference of two independent
        realisations (then set ``difference``). Each ROI's own mean is removed.
    pixel_mm : float
        Pixel size in mm (square pixels).
    difference : bool
        The ROIs are differences of two independent realisations: divide the power by 2.

    Returns
    -------
    nps : ndarray, (Ny, Nx)
        Noise power in HU^2 mm^2, zero frequency at the centre (``fftshift`` order).
    fy, fx : ndarray, (Ny,), (Nx,)
        Spatial frequencies of the rows and columns of ``nps`` in 1/mm.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> nps, fy, fx = nps_2d(rng.normal(0, 10, (50, 64, 64)), 0.5)
    >>> round(float(nps.mean()), 0)  # white noise: sigma^2 * pixel area = 100 * 0.25
    25.0
    """
    rois = np.asarray(noise_rois, dtype=np.float64)
    if rois.ndim == 2:
        rois = rois[None]
    if rois.ndim != 3:
        raise ValueError(f"noise_rois must be (n, Ny, Nx) or (Ny, Nx), got shape {rois.shape}")
    ny, nx = rois.shape[1:]
    rois = rois - rois.mean(axis=(1, 2), keepdims=True)
    power = np.mean(np.abs(np.fft.fft2(rois)) ** 2, axis=0) * (pixel_mm * pixel_mm) / (ny * nx)
    if difference:
        power /= 2.0
    fy = np.fft.fftshift(np.fft.fftfreq(ny, d=pixel_mm))
    fx = np.fft.fftshift(np.fft.fftfreq(nx, d=pixel_mm))
    return np.fft.fftshift(power), fy, fx


def radial_nps(nps: np.ndarray, fy: np.ndarray, fx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radial (azimuthal) average of a 2-D NPS up to the Nyquist frequency.

    Annuli are one frequency sample wide (``df = min(|fx[1]-fx[0]|, |fy[1]-fy[0]|)``); the zero
    frequency sample (removed with the ROI mean) is left out.

    Parameters
    ----------
    nps : ndarray, (Ny, Nx)
        From :func:`nps_2d` (HU^2 mm^2, centred).
    fy, fx : ndarray
        Its frequency axes in 1/mm.

    Returns
    -------
    f : ndarray, (m,)
        Centre frequency of each annulus in 1/mm (the mean radius of the samples in it).
    nps_r : ndarray, (m,)
        Mean NPS in each annulus, HU^2 mm^2.
    """
    df = min(abs(fx[1] - fx[0]), abs(fy[1] - fy[0]))
    nyquist = min(abs(fx).max(), abs(fy).max())
    fr = np.hypot(*np.meshgrid(fy, fx, indexing="ij"))
    keep = (fr > 0) & (fr <= nyquist + 1e-9 * df)
    idx = np.rint(fr[keep] / df).astype(int)
    counts = np.bincount(idx)
    used = counts > 0
    f = np.bincount(idx, weights=fr[keep])[used] / counts[used]
    nps_r = np.bincount(idx, weights=np.asarray(nps)[keep])[used] / counts[used]
    return f, nps_r


def nps_peak_frequency(f: np.ndarray, nps_r: np.ndarray, smooth: int = 3) -> float:
    """Frequency (1/mm) where a radial NPS is largest, after a ``smooth``-sample running mean
    (1: none), so that one noisy annulus does not decide the peak."""
    nps_r = np.asarray(nps_r, dtype=np.float64)
    if smooth > 1:
        nps_r = ndimage.uniform_filter1d(nps_r, smooth, mode="nearest")
    return float(np.asarray(f)[int(np.argmax(nps_r))])


def nps_mean_frequency(f: np.ndarray, nps_r: np.ndarray) -> float:
    """Power-weighted mean frequency of a radial NPS, ``sum f NPS(f) / sum NPS(f)``, in 1/mm."""
    f, nps_r = np.asarray(f, dtype=np.float64), np.asarray(nps_r, dtype=np.float64)
    return float(np.sum(f * nps_r) / np.sum(nps_r))


def nps_summary(noise_rois: np.ndarray, pixel_mm: float, *, difference: bool = False) -> dict:
    """The NPS of noise-only ROIs, reduced to what two simulators are compared on.

    Parameters
    ----------
    noise_rois, pixel_mm, difference
        As in :func:`nps_2d`.

    Returns
    -------
    dict
        ``f_per_mm`` and ``nps_hu2mm2`` (radial curve, lists), ``peak_per_mm``, ``mean_per_mm``
        (1/mm), ``std_hu`` (square root of the integral of the 2-D NPS: the noise std in HU).
    """
    nps, fy, fx = nps_2d(noise_rois, pixel_mm, difference=difference)
    f, nps_r = radial_nps(nps, fy, fx)
    variance = float(nps.sum() * abs(fy[1] - fy[0]) * abs(fx[1] - fx[0]))
    return {"f_per_mm": f.tolist(), "nps_hu2mm2": nps_r.tolist(), "peak_per_mm": nps_peak_frequency(f, nps_r),
            "mean_per_mm": nps_mean_frequency(f, nps_r), "std_hu": variance ** 0.5}


def disc_mask(shape: tuple[int, int], centre_px: tuple[float, float], radius_px: float,
              inner_radius_px: float = 0.0) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie in a disc (or an annulus, with ``inner_radius_px``).

    Parameters
    ----------
    shape : (H, W)
        Image shape.
    centre_px : (row, col)
        Centre in pixels (fractional allowed: the centre of a 512 px image is (255.5, 255.5)).
    radius_px, inner_radius_px : float
        Outer and inner radius in pixels (inner < r <= outer; r <= outer for a disc).
    """
    rr, cc = np.ogrid[:shape[0], :shape[1]]
    r = np.hypot(rr - centre_px[0], cc - centre_px[1])
    mask = r <= radius_px
    if inner_radius_px > 0:
        mask &= r > inner_radius_px
    return mask


def radial_profile(image_hu: np.ndarray, pixel_mm: float, centre_px: tuple[float, float] | None = None,
                   bin_mm: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean of an image in rings around a centre: the radial profile of a cylinder, for cupping.

    Parameters
    ----------
    image_hu : ndarray, (H, W)
        Image in HU.
    pixel_mm : float
        Pixel size in mm.
    centre_px : (row, col), optional
        Ring centre in pixels; the image centre ``((H-1)/2, (W-1)/2)`` by default.
    bin_mm : float, optional
        Ring width in mm (one pixel by default).

    Returns
    -------
    r_mm : ndarray
        Mean radius of the pixels in each non-empty ring, mm.
    mean_hu : ndarray
        Mean value in each ring, HU.
    """
    image_hu = np.asarray(image_hu, dtype=np.float64)
    if centre_px is None:
        centre_px = ((image_hu.shape[0] - 1) / 2, (image_hu.shape[1] - 1) / 2)
    bin_mm = pixel_mm if bin_mm is None else bin_mm
    rr, cc = np.indices(image_hu.shape)
    r = np.hypot(rr - centre_px[0], cc - centre_px[1]).ravel() * pixel_mm
    idx = np.floor(r / bin_mm).astype(int)
    counts = np.bincount(idx)
    used = counts > 0
    r_mean = np.bincount(idx, weights=r)[used] / counts[used]
    mean = np.bincount(idx, weights=image_hu.ravel())[used] / counts[used]
    return r_mean, mean


def cupping_hu(image_hu: np.ndarray, pixel_mm: float, radius_mm: float,
               centre_px: tuple[float, float] | None = None, centre_fraction: float = 0.1,
               edge_fractions: tuple[float, float] = (0.8, 0.9)) -> dict:
    """Centre-minus-edge difference (HU) in a uniform cylinder: negative for the cupping of an
    uncorrected beam-hardened water scan (the centre reads lower than the periphery).

    Parameters
    ----------
    image_hu : ndarray, (H, W)
        Image of the cylinder in HU.
    pixel_mm : float
        Pixel size in mm.
    radius_mm : float
        Radius of the cylinder in mm.
    centre_px : (row, col), optional
        Cylinder centre in pixels (image centre by default).
    centre_fraction : float
        The centre is the disc ``r <= centre_fraction * radius_mm``.
    edge_fractions : (float, float)
        The edge is the annulus between these fractions of ``radius_mm``, inside the cylinder and
        clear of the partial-volume ring at its surface.

    Returns
    -------
    dict
        ``centre_hu``, ``edge_hu``, ``centre_minus_edge_hu``.

    Example
    -------
    >>> img = np.zeros((256, 256))
    >>> cupping_hu(img, 1.0, 100.0)["centre_minus_edge_hu"]
    0.0
    """
    image_hu = np.asarray(image_hu, dtype=np.float64)
    if centre_px is None:
        centre_px = ((image_hu.shape[0] - 1) / 2, (image_hu.shape[1] - 1) / 2)
    r_px = radius_mm / pixel_mm
    centre = float(image_hu[disc_mask(image_hu.shape, centre_px, centre_fraction * r_px)].mean())
    edge = float(image_hu[disc_mask(image_hu.shape, centre_px, edge_fractions[1] * r_px,
                                    edge_fractions[0] * r_px)].mean())
    return {"centre_hu": centre, "edge_hu": edge, "centre_minus_edge_hu": centre - edge}


def pack_square_rois(mask: np.ndarray, size_px: int, margin_px: int = 2, step_px: int = 2
                     ) -> list[tuple[float, float]]:
    """Centres of non-overlapping ``size_px`` squares that lie wholly inside a region, packed greedily
    from the region's centroid outwards (deterministic): where to measure noise in a uniform material.

    Parameters
    ----------
    mask : ndarray, (H, W), bool
        The region (e.g. the pixels of one material).
    size_px : int
        Side of the squares in pixels.
    margin_px : int
        Keep each square at least this many pixels inside the region's edge.
    step_px : int
        Grid step of the candidate centres in pixels.

    Returns
    -------
    list of (row, col)
        Square centres in pixels (as :func:`square_rois` takes them); empty when none fits.
    """
    mask = np.asarray(mask, dtype=bool)
    full = size_px + 2 * margin_px
    inside = ndimage.minimum_filter(mask.astype(np.uint8), size=full, mode="constant", cval=0).astype(bool)
    half = size_px // 2
    rows, cols = np.nonzero(inside)
    keep = (rows % step_px == 0) & (cols % step_px == 0) & (rows >= half) & (cols >= half)
    keep &= (rows - half + size_px <= mask.shape[0]) & (cols - half + size_px <= mask.shape[1])
    rows, cols = rows[keep], cols[keep]
    if rows.size == 0:
        return []
    cy, cx = np.argwhere(mask).mean(axis=0)
    order = np.lexsort((cols, rows, np.hypot(rows - cy, cols - cx)))
    chosen: list[tuple[int, int]] = []
    for i in order:
        r, c = int(rows[i]), int(cols[i])
        if all(abs(r - r2) >= size_px or abs(c - c2) >= size_px for r2, c2 in chosen):
            chosen.append((r, c))
    return [(float(r), float(c)) for r, c in chosen]


def nps_bootstrap(noise_rois: np.ndarray, pixel_mm: float, n_resamples: int = 200,
                  rng: np.random.Generator | None = None, *, difference: bool = False) -> dict:
    """Standard errors of the NPS peak and power-weighted mean frequency and of the noise std, by
    resampling the ROIs with replacement.

    Parameters
    ----------
    noise_rois, pixel_mm, difference
        As in :func:`nps_2d` (at least two ROIs).
    n_resamples : int
        Bootstrap resamples.
    rng : numpy.random.Generator, optional
        Draws the resamples (default: seeded with 0, so the result is reproducible).

    Returns
    -------
    dict
        ``peak_per_mm_se``, ``mean_per_mm_se`` (1/mm) and ``std_hu_se`` (HU): the standard deviations of
        the estimates over the resamples.
    """
    rois = np.asarray(noise_rois, dtype=np.float64)
    if rois.ndim != 3 or len(rois) < 2:
        raise ValueError(f"the bootstrap needs a stack of at least two ROIs, got shape {rois.shape}")
    rng = np.random.default_rng(0) if rng is None else rng
    rois = rois - rois.mean(axis=(1, 2), keepdims=True)
    ny, nx = rois.shape[1:]
    power = np.abs(np.fft.fft2(rois)) ** 2 * (pixel_mm * pixel_mm) / (ny * nx) / (2.0 if difference else 1.0)
    fy = np.fft.fftshift(np.fft.fftfreq(ny, d=pixel_mm))
    fx = np.fft.fftshift(np.fft.fftfreq(nx, d=pixel_mm))
    cell = abs(fy[1] - fy[0]) * abs(fx[1] - fx[0])
    peaks, means, stds = [], [], []
    for _ in range(n_resamples):
        nps = np.fft.fftshift(power[rng.integers(0, len(rois), len(rois))].mean(axis=0))
        f, nps_r = radial_nps(nps, fy, fx)
        peaks.append(nps_peak_frequency(f, nps_r))
        means.append(nps_mean_frequency(f, nps_r))
        stds.append(float(nps.sum() * cell) ** 0.5)
    return {"peak_per_mm_se": float(np.std(peaks)), "mean_per_mm_se": float(np.std(means)),
            "std_hu_se": float(np.std(stds))}
