"""Fan-beam geometry of a Siemens Definition Flash class CT scanner: the projector that turns
attenuation maps into fan-beam line integrals, the rebinning of fan-beam data to parallel-beam data
that clinical scanners do before reconstruction, and the filtered back-projection.

Conventions, shared by every function here:

* Image coordinates in mm: ``x`` along increasing column, ``y`` towards decreasing row (up on the
  screen). The isocentre is the centre of pixel ``(size // 2, size // 2)``, scikit-image's rotation
  centre, so these images line up with :func:`skimage.transform.radon`/``iradon``.
* Parallel-beam data: a line at angle ``theta`` and signed distance ``s`` is the set
  ``x cos(theta) + y sin(theta) = s`` (scikit-image's ``radon``); ``p(theta + pi, -s) = p(theta, s)``.
* Fan-beam data: at view angle ``beta`` the source sits at ``R (-sin(beta), cos(beta))`` (above the
  image at ``beta = 0``, moving counter-clockwise as ``beta`` grows; ``R`` is the source-isocentre
  distance). The ray of channel angle ``gamma`` leaves the source rotated counter-clockwise by
  ``gamma`` from the central ray (the ray through the isocentre), so it is the parallel-beam line
  ``theta = beta + gamma``, ``s = R sin(gamma)``.
* Attenuation maps are in 1/mm; line integrals are dimensionless (any map per mm works the same:
  every operator here is linear).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.transform import iradon, radon

from ...errors import BadArgumentError

#: The FBP filters of :func:`skimage.transform.iradon` (``None`` is no filter, a plain back-projection).
FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann", None)


def _positive(name: str, value: object, fix: str) -> float:
    """``value`` as a finite float > 0, or a BadArgumentError naming ``name`` and ``fix``."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadArgumentError(f"{name} must be a number, got {value!r}; {fix}") from None
    if not math.isfinite(v) or v <= 0.0:
        raise BadArgumentError(f"{name} must be a finite number > 0, got {value!r}; {fix}")
    return v


def _count(name: str, value: object, minimum: int, fix: str) -> int:
    """``value`` as an int >= ``minimum`` (bools refused), or a BadArgumentError naming ``name`` and ``fix``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise BadArgumentError(f"{name} must be an integer, got {value!r}; {fix}")
    if value < minimum:
        raise BadArgumentError(f"{name} must be at least {minimum}, got {value}; {fix}")
    return int(value)


@dataclass(frozen=True)
class FanBeamGeometry:
    """Fan-beam geometry of one detector row of a clinical CT scanner, by default a Siemens
    Definition Flash class scanner.

    The detector is equiangular (an arc centred on the focal spot). It is shifted by a quarter of
    a channel, as such scanners' detectors are: the central ray falls a quarter channel beside a
    channel centre, so the rays of opposite views (``beta + pi + 2 gamma``, ``-gamma``) fall between
    the rays of a view and a 360-degree rotation samples the field twice as finely as one view
    does. There is no flying focal spot: every view has one source position. The views are equally
    spaced over one full rotation.

    Parameters
    ----------
    source_iso_mm : float
        Distance from the focal spot to the isocentre (rotation axis), mm. Default 595.
    source_detector_mm : float
        Distance from the focal spot to the detector arc, mm; larger than ``source_iso_mm``.
        Default 1085.6.
    n_channels : int
        Detector channels in the row, at least 2. Default 736.
    channel_pitch_mm : float
        Width of one channel measured along the detector arc, mm. The channel angle is
        ``channel_pitch_mm / source_detector_mm`` (about 0.00118 rad by default, 0.705 mm at the
        isocentre, a fan of about 50 degrees and a field of measurement of about 500 mm).
        Default 1.2858.
    channel_offset : float
        Offset of the detector, in channels, in the direction of increasing ``gamma``: channel
        ``k`` sits at ``gamma_k = (k - (n_channels - 1) / 2 + channel_offset) * channel_angle``.
        Default 0.25 (the quarter-channel offset); between -0.5 and 0.5.
    n_views : int
        Views per 360-degree rotation, at least 2. Default 1152.

    Raises
    ------
    BadArgumentError
        A distance or pitch not a finite positive number, the detector not beyond the isocentre,
        a count not an integer or too small, a fan of 180 degrees or more, or an offset beyond
        half a channel.

    Examples
    --------
    >>> geom = FanBeamGeometry()
    >>> geom.gamma.shape, geom.beta.shape
    ((736,), (1152,))
    >>> round(geom.iso_sampling_mm, 3), round(geom.field_of_measurement_mm)
    (0.705, 501)
    """

    source_iso_mm: float = 595.0
    source_detector_mm: float = 1085.6
    n_channels: int = 736
    channel_pitch_mm: float = 1.2858
    channel_offset: float = 0.25
    n_views: int = 1152

    def __post_init__(self) -> None:
        fix = "a clinical scanner has about 500-1100 mm here (default FanBeamGeometry())"
        r = _positive("source_iso_mm", self.source_iso_mm, fix)
        d = _positive("source_detector_mm", self.source_detector_mm, fix)
        if d <= r:
            raise BadArgumentError(f"source_detector_mm ({d}) must exceed source_iso_mm ({r}): the detector lies "
                                   f"beyond the isocentre; swap them or use the defaults (1085.6 and 595)")
        n = _count("n_channels", self.n_channels, 2, "the default scanner has 736")
        pitch = _positive("channel_pitch_mm", self.channel_pitch_mm, "the default scanner has 1.2858 mm")
        views = _count("n_views", self.n_views, 2, "the default scanner has 1152 per rotation")
        try:
            offset = float(self.channel_offset)
        except (TypeError, ValueError):
            raise BadArgumentError(f"channel_offset must be a number of channels, got {self.channel_offset!r}; "
                                   f"use 0.25 (quarter-channel offset) or 0") from None
        if not -0.5 <= offset <= 0.5:
            raise BadArgumentError(f"channel_offset must be within -0.5..0.5 channels, got {offset}; "
                                   f"use 0.25 (quarter-channel offset) or 0")
        if n * pitch / d >= math.pi:
            raise BadArgumentError(f"the fan of {n} channels x {pitch} mm at {d} mm spans "
                                   f"{math.degrees(n * pitch / d):.0f} degrees, 180 or more; use fewer or "
                                   f"narrower channels")
        for name, value in (("source_iso_mm", r), ("source_detector_mm", d), ("n_channels", n),
                            ("channel_pitch_mm", pitch), ("channel_offset", offset), ("n_views", views)):
            object.__setattr__(self, name, value)

    @property
    def channel_angle_rad(self) -> float:
        """Angle between neighbouring channels seen from the focal spot, rad."""
        return self.channel_pitch_mm / self.source_detector_mm

    @property
    def gamma(self) -> np.ndarray:
        """Channel angles, rad, shape (n_channels,), increasing with the channel index (see the
        module docstring for the sign)."""
        k = np.arange(self.n_channels, dtype=np.float64)
        return (k - (self.n_channels - 1) / 2.0 + self.channel_offset) * self.channel_angle_rad

    @property
    def beta(self) -> np.ndarray:
        """View angles, rad, shape (n_views,): ``2 pi j / n_views`` over one rotation."""
        return np.arange(self.n_views, dtype=np.float64) * (2.0 * math.pi / self.n_views)

    @property
    def iso_sampling_mm(self) -> float:
        """Channel spacing at the isocentre, mm: ``source_iso_mm * channel_angle_rad`` (one view;
        a rotation with the quarter-channel offset samples twice as finely)."""
        return self.source_iso_mm * self.channel_angle_rad

    @property
    def fan_angle_rad(self) -> float:
        """Full fan angle, rad: ``n_channels * channel_angle_rad``."""
        return self.n_channels * self.channel_angle_rad

    @property
    def field_of_measurement_mm(self) -> float:
        """Diameter of the circle about the isocentre that every view covers, mm."""
        return 2.0 * self.source_iso_mm * math.sin(float(np.min(np.abs(self.gamma[[0, -1]]))))


# -- argument checks shared by the functions ---------------------------------------------------

def _geometry(geom: object) -> FanBeamGeometry:
    if not isinstance(geom, FanBeamGeometry):
        raise BadArgumentError(f"geom must be a FanBeamGeometry, got {type(geom).__name__}; "
                               f"pass FanBeamGeometry() for the default scanner")
    return geom


def _stack(array: object, name: str, what: str) -> tuple[np.ndarray, bool]:
    """``array`` as a float64 (C, A, B) stack and whether it was a single (A, B) array."""
    try:
        a = np.array(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadArgumentError(f"{name} must be a numeric array ({what}), got {type(array).__name__}") from None
    if a.ndim not in (2, 3):
        raise BadArgumentError(f"{name} must be {what} or a stack (C, ...) of them, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise BadArgumentError(f"{name} holds NaN or infinite values; replace them (e.g. np.nan_to_num) first")
    return (a[None] if a.ndim == 2 else a), a.ndim == 2


def _size(size: object) -> int:
    return _count("size", size, 2, "give the image size in pixels (e.g. 512)")


# -- projection --------------------------------------------------------------------------------

def _radon(image: np.ndarray, theta_deg: np.ndarray, workers: int) -> np.ndarray:
    """scikit-image's ``radon`` (``circle=True``), shape (n_bins, n_theta), its angles split over
    ``workers`` threads: the rotations run in C without the GIL, so threads use the cores."""
    if workers == 1:
        return radon(image, theta=theta_deg, circle=True)
    chunks = np.array_split(theta_deg, min(4 * workers, len(theta_deg)))
    with ThreadPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(lambda t: radon(image, theta=t, circle=True), chunks)), axis=1)


def fan_project(image_per_mm: np.ndarray, pixel_mm: float, geom: FanBeamGeometry,
                n_theta: int | None = None, workers: int | None = None) -> np.ndarray:
    """Fan-beam line integrals of an attenuation map (or a stack of them), noise-free.

    The parallel-beam sinogram is computed once (scikit-image ``radon`` at ``n_theta`` angles over
    180 degrees, one-pixel bins) and each fan ray ``(beta, gamma)`` is read from it at
    ``theta = beta + gamma``, ``s = R sin(gamma)`` by cubic-spline interpolation, using
    ``p(theta + pi, -s) = p(theta, s)`` for the second half-turn. The cubic spline keeps the
    resolution of the parallel projector (linear interpolation blurs edges by several HU more), at
    the price of a small undershoot beside steep edges: rays just outside a body's skin get line
    integrals down to a few hundredths below zero. Nothing is clipped, so the projector stays
    linear (difference maps, which are negative, project exactly).

    The image is taken as zero outside the circle inscribed in it (as scikit-image's
    ``circle=True``): what lies in its corners is dropped, and rays that miss the circle are zero.
    An image circle larger than the field of measurement is truncated by the scanner (those parts
    are seen in only some views).

    Parameters
    ----------
    image_per_mm : array, shape (H, W) or (C, H, W), H == W
        Attenuation in 1/mm (or any density per mm), isocentre at pixel ``(H // 2, W // 2)``.
    pixel_mm : float
        Pixel size, mm (square pixels).
    geom : FanBeamGeometry
        The scanner.
    n_theta : int, optional
        Angles of the intermediate parallel-beam sinogram over 180 degrees; default ``geom.n_views``
        (half the angular step of the views) or ``ceil(pi H / 2)`` (the image's own angular
        sampling), whichever is more.
    workers : int, optional
        Threads for the parallel projector; default the machine's core count, or 1 in a child
        process (a process pool already spreads the work over the cores).

    Returns
    -------
    numpy.ndarray, shape (n_views, n_channels) or (C, n_views, n_channels), float64
        Line integrals (dimensionless), row ``j`` the view at ``geom.beta[j]``, column ``k`` the
        channel at ``geom.gamma[k]``.

    Raises
    ------
    BadArgumentError
        The image is not 2-D/3-D, not square, or not finite; ``pixel_mm`` not a positive number;
        ``geom`` not a FanBeamGeometry; ``n_theta`` or ``workers`` not an integer >= 2 or >= 1.

    Examples
    --------
    >>> geom = FanBeamGeometry(n_views=288)
    >>> mu = np.full((64, 64), 0.02)             # water-like, 1/mm
    >>> fan_project(mu, 2.0, geom).shape
    (288, 736)
    """
    geom = _geometry(geom)
    pixel_mm = _positive("pixel_mm", pixel_mm, "give the pixel size in mm (e.g. 0.7)")
    stack, single = _stack(image_per_mm, "image_per_mm", "a square image (H, W)")
    _, h, w = stack.shape
    if h != w:
        raise BadArgumentError(f"image_per_mm must be square, got {h}x{w}; pad or crop it to a square centred "
                               f"on the isocentre")
    if h < 2:
        raise BadArgumentError(f"image_per_mm must be at least 2x2 pixels, got {h}x{w}")
    default = max(geom.n_views, math.ceil(math.pi * h / 2))
    n_theta = default if n_theta is None else _count("n_theta", n_theta, 2, f"use e.g. {default}")
    if workers is None:  # a worker of a process pool leaves the other cores to its siblings
        workers = 1 if multiprocessing.parent_process() is not None else (os.cpu_count() or 1)
    workers = _count("workers", workers, 1, "use 1 or the number of cores")
    c = h // 2
    rows, cols = np.ogrid[:h, :w]
    stack = np.where((rows - c) ** 2 + (cols - c) ** 2 > c * c, 0.0, stack)
    # The parallel projector: scikit-image's radon (a bilinear rotation per angle, in C, threads over the
    # angles) beat a torch grid_sample rotation with the same sampling on the 2-core CPU machines: radon
    # was about 2.5 times faster at 512 px, and batching the angles or the maps through grid_sample did not
    # close the gap. The angular step (half the views' step by default) keeps the interpolation error of
    # a 512 px abdomen slice's FBP near 0.2 HU rms against a twice finer sinogram (0.5 HU at the views' step).
    theta_deg = np.arange(n_theta) * (180.0 / n_theta)
    # Sinogram over the full turn on a symmetric s grid -m..m (pixels) padded with zeros, so that the
    # second half-turn is the first with s reversed and the array is periodic in theta.
    m = c + 3
    sino = np.zeros((len(stack), 2 * n_theta, 2 * m + 1))
    for i, image in enumerate(stack):
        half = _radon(image, theta_deg, workers).T  # (n_theta, h), bin b at s = b - c
        sino[i, :n_theta, m - c:m - c + h] = half
        sino[i, n_theta:] = sino[i, :n_theta, ::-1]
    gamma = geom.gamma[None, :]
    theta = np.mod(geom.beta[:, None] + gamma, 2.0 * math.pi)
    s_px = geom.source_iso_mm * np.sin(gamma) / pixel_mm
    coords = np.stack(np.broadcast_arrays(theta / (math.pi / n_theta), s_px + m))
    inside = np.broadcast_to(np.abs(s_px) <= c, theta.shape)
    out = np.empty((len(stack), geom.n_views, geom.n_channels))
    for i in range(len(stack)):
        coef = ndimage.spline_filter(sino[i], order=3, mode="grid-wrap")
        out[i] = ndimage.map_coordinates(coef, coords, order=3, mode="grid-wrap", prefilter=False)
    out *= pixel_mm * inside
    return out[0] if single else out


# -- rebinning and reconstruction --------------------------------------------------------------

def _radial_weights(s_mm: np.ndarray, bins_mm: np.ndarray) -> np.ndarray:
    """Matrix (n_bins, len(s_mm)) of linear interpolation from samples at ``s_mm`` (any order,
    coincident samples averaged) to ``bins_mm``; zero for bins outside the sampled range."""
    order = np.argsort(s_mm, kind="stable")
    s_sorted = s_mm[order]
    tol = 1e-9 * max(float(np.ptp(s_mm)), 1.0)
    group = np.concatenate([[0], np.cumsum(np.diff(s_sorted) > tol)])
    n_groups = int(group[-1]) + 1
    average = np.zeros((n_groups, len(s_mm)))  # unique positions <- samples
    average[group, order] = 1.0
    average /= average.sum(axis=1, keepdims=True)
    nodes = average @ s_mm
    j = np.clip(np.searchsorted(nodes, bins_mm, side="right") - 1, 0, max(n_groups - 2, 0))
    inside = (bins_mm >= nodes[0]) & (bins_mm <= nodes[-1])
    interp = np.zeros((len(bins_mm), n_groups))
    if n_groups == 1:
        interp[inside, 0] = 1.0
    else:
        t = (bins_mm - nodes[j]) / (nodes[j + 1] - nodes[j])
        rows = np.flatnonzero(inside)
        interp[rows, j[rows]] = 1.0 - t[rows]
        interp[rows, j[rows] + 1] = t[rows]
    return interp @ average


def rebin_to_parallel(fan_sino: np.ndarray, geom: FanBeamGeometry, pixel_mm: float, size: int,
                      n_angles: int | None = None) -> np.ndarray:
    """Rebin fan-beam data to parallel-beam data over 180 degrees, as clinical scanners do before
    reconstruction.

    For each parallel angle ``theta`` every channel gives two samples: the direct ray from view
    ``beta = theta - gamma`` (at ``s = R sin(gamma)``) and the opposite ray from view
    ``beta = theta + pi - gamma`` (at ``s = -R sin(gamma)``), both by cubic-spline interpolation
    between views (periodic over the rotation). With the quarter-channel offset the two sets
    interleave at half the channel spacing; they are then interpolated linearly onto detector bins
    at the pixel spacing (coincident samples, as without an offset, are averaged). Bins beyond the
    field of measurement are zero. Linear in ``fan_sino``.

    Parameters
    ----------
    fan_sino : array, shape (n_views, n_channels) or (C, n_views, n_channels)
        Fan-beam line integrals (dimensionless, or any unit), laid out as :func:`fan_project` returns.
    geom : FanBeamGeometry
        The scanner that measured ``fan_sino``.
    pixel_mm : float
        Pixel size of the image to reconstruct, mm; the bin spacing.
    size : int
        Image size in pixels; the number of bins (bin ``i`` at ``s = (i - size // 2) * pixel_mm``).
    n_angles : int, optional
        Parallel angles over 180 degrees, ``theta_j = j * pi / n_angles``; default
        ``geom.n_views // 2`` (the angular step of the views).

    Returns
    -------
    numpy.ndarray, shape (size, n_angles) or (C, size, n_angles), float64
        Parallel-beam sinogram in scikit-image's layout (as ``skimage.transform.radon`` times
        ``pixel_mm``), same unit as ``fan_sino``.

    Raises
    ------
    BadArgumentError
        ``fan_sino`` not 2-D/3-D, not finite, or not ``(n_views, n_channels)`` of ``geom``;
        ``geom``, ``pixel_mm``, ``size`` or ``n_angles`` invalid.

    Examples
    --------
    >>> geom = FanBeamGeometry(n_views=288)
    >>> fan = fan_project(np.full((64, 64), 0.02), 2.0, geom)
    >>> rebin_to_parallel(fan, geom, 2.0, 64).shape
    (64, 144)
    """
    geom = _geometry(geom)
    pixel_mm = _positive("pixel_mm", pixel_mm, "give the pixel size in mm of the image to reconstruct")
    size = _size(size)
    default = max(geom.n_views // 2, 2)
    n_angles = default if n_angles is None else _count("n_angles", n_angles, 2, f"use e.g. {default}")
    stack, single = _stack(fan_sino, "fan_sino", "a fan-beam sinogram (n_views, n_channels)")
    if stack.shape[1:] != (geom.n_views, geom.n_channels):
        raise BadArgumentError(f"fan_sino has views x channels {stack.shape[1:]}, but geom measures "
                               f"({geom.n_views}, {geom.n_channels}); pass the geometry that made the data")
    gamma = geom.gamma
    theta = np.arange(n_angles) * (math.pi / n_angles)
    step = 2.0 * math.pi / geom.n_views
    k = np.broadcast_to(np.arange(geom.n_channels, dtype=np.float64), (n_angles, geom.n_channels))
    direct = np.stack([np.mod(theta[:, None] - gamma, 2 * math.pi) / step, k])
    opposite = np.stack([np.mod(theta[:, None] + math.pi - gamma, 2 * math.pi) / step, k])
    s_mm = geom.source_iso_mm * np.sin(gamma)
    weights = _radial_weights(np.concatenate([s_mm, -s_mm]), (np.arange(size) - size // 2) * pixel_mm)
    out = np.empty((len(stack), size, n_angles))
    for i, fan in enumerate(stack):
        coef = ndimage.spline_filter(fan, order=3, mode="grid-wrap")
        both = np.concatenate([ndimage.map_coordinates(coef, direct, order=3, mode="grid-wrap", prefilter=False),
                               ndimage.map_coordinates(coef, opposite, order=3, mode="grid-wrap", prefilter=False)],
                              axis=1)  # (n_angles, 2 n_channels)
        out[i] = weights @ both.T
    return out[0] if single else out


def fbp(parallel_sino: np.ndarray, pixel_mm: float, size: int, filter_name: str | None = "hann") -> np.ndarray:
    """Filtered back-projection of parallel-beam line integrals over 180 degrees.

    scikit-image's ``iradon`` with ``circle=True``: the image is zero outside its inscribed circle.
    Linear in ``parallel_sino``.

    Parameters
    ----------
    parallel_sino : array, shape (size, n_angles) or (C, size, n_angles)
        Line integrals (dimensionless) in scikit-image's layout, angles ``j * 180 / n_angles``
        degrees, bin ``i`` at ``s = (i - size // 2) * pixel_mm`` (as :func:`rebin_to_parallel`
        returns).
    pixel_mm : float
        Pixel size, mm.
    size : int
        Image size in pixels; must equal the number of bins.
    filter_name : str or None
        The ramp filter's window: ``"hann"`` (default, the smoother texture of a soft-tissue
        kernel), ``"ramp"``, ``"shepp-logan"``, ``"cosine"``, ``"hamming"``, or None (no filter).

    Returns
    -------
    numpy.ndarray, shape (size, size) or (C, size, size), float64
        The image in 1/mm (the unit of the line integrals per mm).

    Raises
    ------
    BadArgumentError
        A sinogram not 2-D/3-D, not finite, or with a bin count other than ``size``; an unknown
        filter; ``pixel_mm`` or ``size`` invalid.

    Examples
    --------
    >>> geom = FanBeamGeometry(n_views=288)
    >>> sino = rebin_to_parallel(fan_project(np.full((64, 64), 0.02), 2.0, geom), geom, 2.0, 64)
    >>> fbp(sino, 2.0, 64).shape
    (64, 64)
    """
    pixel_mm = _positive("pixel_mm", pixel_mm, "give the pixel size in mm")
    size = _size(size)
    if filter_name not in FILTERS:
        raise BadArgumentError(f"unknown filter_name {filter_name!r}; choose one of {FILTERS}")
    stack, single = _stack(parallel_sino, "parallel_sino", "a parallel-beam sinogram (n_bins, n_angles)")
    if stack.shape[1] != size:
        raise BadArgumentError(f"parallel_sino has {stack.shape[1]} detector bins but size is {size}; rebin with "
                               f"rebin_to_parallel(..., size={size}) or pass size={stack.shape[1]}")
    n_angles = stack.shape[2]
    theta_deg = np.arange(n_angles) * (180.0 / n_angles)
    out = np.stack([iradon(sino / pixel_mm, theta=theta_deg, output_size=size, filter_name=filter_name,
                           circle=True) for sino in stack])
    return out[0] if single else out


def fbp_fan(fan_sino: np.ndarray, geom: FanBeamGeometry, pixel_mm: float, size: int,
            filter_name: str | None = "hann") -> np.ndarray:
    """Reconstruct fan-beam data: :func:`rebin_to_parallel` then :func:`fbp`. Linear in ``fan_sino``,
    so ``fbp_fan(a) + fbp_fan(b) == fbp_fan(a + b)`` to float precision (lesion insertion relies on it).

    Parameters
    ----------
    fan_sino : array, shape (n_views, n_channels) or (C, n_views, n_channels)
        Fan-beam line integrals (dimensionless), as :func:`fan_project` returns.
    geom : FanBeamGeometry
        The scanner that measured ``fan_sino``.
    pixel_mm : float
        Pixel size of the image, mm.
    size : int
        Image size in pixels.
    filter_name : str or None
        The FBP filter (see :func:`fbp`), default ``"hann"``.

    Returns
    -------
    numpy.ndarray, shape (size, size) or (C, size, size), float64
        The image in 1/mm, isocentre at pixel ``(size // 2, size // 2)``.

    Raises
    ------
    BadArgumentError
        As :func:`rebin_to_parallel` and :func:`fbp`.

    Examples
    --------
    >>> geom = FanBeamGeometry(n_views=288)
    >>> mu = np.full((64, 64), 0.02)
    >>> fbp_fan(fan_project(mu, 2.0, geom), geom, 2.0, 64).shape
    (64, 64)
    """
    if filter_name not in FILTERS:
        raise BadArgumentError(f"unknown filter_name {filter_name!r}; choose one of {FILTERS}")
    return fbp(rebin_to_parallel(fan_sino, geom, pixel_mm, size), pixel_mm, size, filter_name)
