"""One acquisition of a painted phantom slice by a scanner model: noise-free line integrals,
a full-dose and a low-dose reading (the low dose a binomial thinning of the full dose's photons),
reconstruction to HU.

Two scanners share one interface (:class:`Scanner`), so the data set, the lesion study and the
validation against gecatsim call the same five operations:

* :class:`ClinicalScanner` (the default): the fan beam of a Siemens Definition Flash class scanner
  (:mod:`.geometry`), a 120 kVp spectrum through a bowtie, energy-dependent attenuation of the body's
  materials written as water plus cortical bone, an energy-integrating detector with electronic noise,
  the water beam-hardening correction (:mod:`.xray`), rebinning to parallel beam and FBP with a
  Hann-windowed ramp (a soft-tissue kernel).
* :class:`ParallelScanner`: parallel beam, one energy, no electronic noise (:mod:`..acquisition`); the
  simple model, kept for comparison and for tests that need exact linearity.

Differences (a lesion added to a slice) go through the same scanner linearly: ``delta_line_integrals``
of an HU difference in soft tissue and ``reconstruct_delta`` of line-integral differences, so a lesion's
own noise-free image and a lesion-free twin with the same noise realisation are exact by linearity of
the reconstruction (:mod:`..lesions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import BadArgumentError
from .. import acquisition
from . import geometry, xray

#: The scanner models a data set can be simulated with.
SCANNERS = ("clinical", "parallel")


@dataclass(frozen=True)
class ParallelScanner:
    """Parallel beam over 180 degrees, mono-energetic (~70 keV), Poisson counts without electronic noise.

    Parameters
    ----------
    n_views : int
        Views over 180 degrees.
    filter_name : str
        FBP filter of :func:`skimage.transform.iradon`.
    """

    n_views: int = 360
    filter_name: str = "hann"
    name: str = field(default="parallel", init=False)

    def line_integrals(self, image_hu: np.ndarray, labels: np.ndarray | None, pixel_mm: float) -> np.ndarray:
        """Noise-free line integrals, (n_detectors, n_views), dimensionless (``labels`` unused)."""
        return acquisition.project(image_hu, pixel_mm, self.n_views)

    def delta_line_integrals(self, delta_hu: np.ndarray, pixel_mm: float) -> np.ndarray:
        """Line integrals of an HU difference (linear, no clipping at air)."""
        return acquisition.project_delta(delta_hu, pixel_mm, self.n_views)

    def measure(self, line_integrals: np.ndarray, photons: float, dose_fraction: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(full, low) log-converted noisy line integrals, each like ``line_integrals``."""
        return acquisition.noisy_line_integrals(line_integrals, photons, dose_fraction, rng)

    def reconstruct(self, q: np.ndarray, pixel_mm: float, size: int) -> np.ndarray:
        """FBP of (noisy) line integrals -> (size, size) float32 HU."""
        return acquisition.fbp_hu(q, pixel_mm, size, self.filter_name)

    def reconstruct_delta(self, dq: np.ndarray, pixel_mm: float, size: int) -> np.ndarray:
        """FBP of a line-integral difference -> HU difference, (size, size) float64, no offset."""
        return acquisition.fbp_delta_hu(dq, pixel_mm, size, self.filter_name)


@dataclass(frozen=True)
class ClinicalScanner:
    """Fan beam, 120 kVp polychromatic, bowtie, energy-integrating detector, water correction.

    Line integrals are the mm of water and of cortical bone along each ray, shape
    (2, n_views, n_channels); after :meth:`measure` (water beam-hardening correction included) a reading
    is in units of ``mu_water(70 keV) x mm``, which :meth:`reconstruct` turns into HU.

    Parameters
    ----------
    geometry : FanBeamGeometry
        The scanner's fan beam (default: Siemens Definition Flash class, 1152 views per rotation).
    filter_name : str
        FBP filter after rebinning to parallel beam; ``"hann"`` is a soft-tissue kernel.
    water_correction : bool
        Apply the water beam-hardening correction (scanners do). Without it a water cylinder cups.
    electronic_noise_photons : float
        Electronic noise std in photon-equivalents of the mean detected energy (see :func:`.xray.measure`).
    """

    geometry: geometry.FanBeamGeometry = field(default_factory=geometry.FanBeamGeometry)
    filter_name: str = "hann"
    water_correction: bool = True
    electronic_noise_photons: float = xray.ELECTRONIC_NOISE_PHOTONS
    name: str = field(default="clinical", init=False)

    def line_integrals(self, image_hu: np.ndarray, labels: np.ndarray, pixel_mm: float) -> np.ndarray:
        """Noise-free water and bone path lengths in mm, (2, n_views, n_channels) float64.

        ``labels`` are the phantom's tissue labels (:data:`..phantoms.LABELS`), which say the material
        of each pixel."""
        if labels is None:
            raise BadArgumentError("the clinical scanner needs the phantom's tissue labels (the material of each "
                                   "pixel); pass the labels Phantom.slice returns, or use the parallel scanner")
        from ..phantoms import LABELS  # the phantom's labels name the materials

        water_eq, bone_eq = xray.basis_maps(image_hu, labels, xray.label_materials(LABELS))
        return geometry.fan_project(np.stack([water_eq, bone_eq]), pixel_mm, self.geometry, n_theta=self._n_theta(image_hu))

    def _n_theta(self, image: np.ndarray) -> int:
        # the intermediate parallel sinogram at the views' own angular step (half the projector's default):
        # 0.5 HU RMS from a twice finer one, 30 times below the full-dose noise, at half the cost
        return max(self.geometry.n_views // 2, int(np.ceil(np.pi * np.asarray(image).shape[-1] / 2)))

    def delta_line_integrals(self, delta_hu: np.ndarray, pixel_mm: float) -> np.ndarray:
        """Water path lengths (mm) of an HU difference in soft tissue, taken as water-like (linear):
        (2, n_views, n_channels), the bone channel zero."""
        water = geometry.fan_project(np.asarray(delta_hu, dtype=np.float64) / 1000.0, pixel_mm, self.geometry,
                                     n_theta=self._n_theta(delta_hu))
        return np.stack([water, np.zeros_like(water)])

    def measure(self, line_integrals: np.ndarray, photons: float, dose_fraction: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(full, low) readings after the log and the water correction, each (n_views, n_channels), in
        units of mu_water(70 keV) x mm."""
        water_mm, bone_mm = line_integrals
        full, low = xray.measure(water_mm, bone_mm, self.geometry.gamma[None, :], photons, dose_fraction, rng,
                                 electronic_noise_photons=self.electronic_noise_photons,
                                 correct=self.water_correction)
        return full, low

    def reconstruct(self, q: np.ndarray, pixel_mm: float, size: int) -> np.ndarray:
        """Rebin to parallel beam, FBP -> (size, size) float32 HU."""
        mu = geometry.fbp_fan(q, self.geometry, pixel_mm, size, self.filter_name)
        return xray.hu_from_mu(mu).astype(np.float32)

    def reconstruct_delta(self, dq: np.ndarray, pixel_mm: float, size: int) -> np.ndarray:
        """HU difference of a reading difference (linear, no offset), (size, size) float64.

        ``dq`` is either a reading difference (n_views, n_channels) in mu_ref x mm, or water/bone
        path-length differences (2, n_views, n_channels) from :meth:`delta_line_integrals`, of which the
        water part is converted at the reference energy (what the water correction makes of water)."""
        dq = np.asarray(dq, dtype=np.float64)
        if dq.ndim == 3:
            dq = dq[0] * xray.MU_WATER_REF_PER_MM
        mu = geometry.fbp_fan(dq, self.geometry, pixel_mm, size, self.filter_name)
        return mu / xray.MU_WATER_REF_PER_MM * 1000.0


Scanner = ClinicalScanner | ParallelScanner


def make_scanner(name: str = "clinical", *, n_views: int | None = None, filter_name: str = "hann",
                 water_correction: bool = True) -> Scanner:
    """The scanner model called ``name`` (one of :data:`SCANNERS`).

    ``n_views``: views per rotation (clinical, default 1152) or over 180 degrees (parallel, default 360)."""
    if name == "clinical":
        geom = geometry.FanBeamGeometry() if n_views is None else geometry.FanBeamGeometry(n_views=n_views)
        return ClinicalScanner(geometry=geom, filter_name=filter_name, water_correction=water_correction)
    if name == "parallel":
        return ParallelScanner(n_views=360 if n_views is None else n_views, filter_name=filter_name)
    raise BadArgumentError(f"unknown scanner {name!r}; choose one of {SCANNERS}")


def scan_slice(image_hu: np.ndarray, labels: np.ndarray, pixel_mm: float, *, photons_full_dose: float,
               dose_fraction: float, rng: np.random.Generator, scanner: Scanner | None = None,
               water_correction: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One slice -> ``(low_hu, full_hu)``, both (size, size) float32, reconstructed on the slice's grid.

    Parameters
    ----------
    image_hu : ndarray, shape (size, size)
        The painted phantom in HU (as it reads at 70 keV), isocentre at the centre pixel.
    labels : ndarray, shape (size, size)
        The phantom's tissue labels (the material of each pixel).
    pixel_mm : float
        Pixel size, mm.
    photons_full_dose : float
        Photons per channel and view in air at full dose (central channel, before the bowtie).
    dose_fraction : float
        Low dose over full dose.
    rng : numpy.random.Generator
        Source of the noise.
    scanner : ClinicalScanner or ParallelScanner, optional
        Default: the clinical scanner.
    water_correction : bool
        For the default scanner: apply the water beam-hardening correction.

    Returns
    -------
    (ndarray, ndarray)
        Low-dose and full-dose images in HU, float32.

    Examples
    --------
    >>> from ctinv_utils.data.phantoms import Phantom
    >>> hu, labels, px = Phantom("abdomen", 1).slice(0.5, 512)
    >>> low, full = scan_slice(hu, labels, px, photons_full_dose=2e5, dose_fraction=0.25,
    ...                        rng=np.random.default_rng(0))  # doctest: +SKIP
    """
    scanner = scanner or make_scanner("clinical", water_correction=water_correction)
    size = np.asarray(image_hu).shape[-1]
    clean = scanner.line_integrals(image_hu, labels, pixel_mm)
    full, low = scanner.measure(clean, photons_full_dose, dose_fraction, rng)
    return scanner.reconstruct(low, pixel_mm, size), scanner.reconstruct(full, pixel_mm, size)
