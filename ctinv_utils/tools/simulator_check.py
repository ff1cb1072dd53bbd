"""The embedded scanner model against gecatsim (XCIST) 1.6.6: the same phantom slices through both
simulators (same fan-beam geometry, spectrum, bowtie, detector, dose and a similar kernel; 512 px
images), compared on noise, noise texture, cupping and CT numbers.

    python -m ctinv_utils simulator-check [--out simulator_check] [--seed 0] [--dose 0.25]
        [--photons 2e5] [--views 1152] [--size 512]

Phantoms (:func:`water_cylinder`, :func:`abdomen_slice`): a 300 mm water cylinder, and an abdomen-like
slice (water in a subcutaneous fat layer, a liver, a fat insert, a vertebral body of cancellous bone,
a cortical-bone insert and two ribs). Each is a label map in the tissue labels of
:mod:`ctinv_utils.data.phantoms` painted with their HU (what ``scan_slice`` takes) and, with the same
elemental compositions and mass densities, a gecatsim voxelized phantom. gecatsim keeps its own
cross-section data, projector, detector model, log, water beam-hardening correction
(``Prep_BHC_Accurate``) and fan-beam FBP; it is given our tube spectrum, bowtie profile, scintillator,
electronic noise and dose. Its low-dose scan is its full-dose scan with photons removed (binomial
thinning of the detected counts in its detection callback), as ours.

Measured side by side (:func:`measure_phantom`): noise std at both doses and their ratio, the noise
power spectrum (peak and power-weighted mean frequency), cupping of the water cylinder (each simulator with
and without its water beam-hardening correction) and the CT numbers of water, fat, liver and bone. The
targets (:class:`Targets`) are reported pass/fail in ``<out>/simulator_check.json`` (written
atomically) with the seed, the versions and the machine; ``simulator_check.png`` / ``.pdf`` show the
slices in one window, the noise power spectra and the cylinder's radial profiles. A run takes minutes:
gecatsim's reconstruction loops in Python.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import json
import math
import os
import platform
import sys
import tempfile
import time
import types
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic import savefig, write_json
from ..data import noise_measurement as nm
from ..data.phantoms import LABELS, TISSUE_HU
from ..data.scanner.geometry import FanBeamGeometry
from ..errors import BadArgumentError
from ..progress import progress_bar
from ..provenance import git_commit, versions

#: The scanner model's default geometry, which the gecatsim setup copies.
_SCANNER = FanBeamGeometry()

#: The gecatsim release this check drives (1.6.9's source archive does not build on Linux).
GECATSIM_VERSION = "1.6.6"
#: Set to 1 to let the test suite run the whole comparison (minutes).
RUN_ENV = "CTINV_RUN_GECATSIM"
#: Signature of our simulator: ``scan(image_hu, labels, pixel_mm, *, photons_full_dose, dose_fraction,
#: rng, water_correction) -> (low_hu, full_hu)``, both (H, W) in HU on the input grid.
ScanFunction = Callable[..., tuple[np.ndarray, np.ndarray]]
#: Photons per channel per view for the "noise-free" scans of our simulator (its quantum noise at this
#: level is below 0.01 HU; it has no switch to turn the noise off).
NOISE_FREE_PHOTONS = 1e13

# -- phantoms ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhantomMaterial:
    """One material of a phantom.

    Attributes
    ----------
    name : str
        What the check calls it (``water``, ``fat``, ``liver``, ``cancellous``, ``bone``).
    tissue : str
        Its tissue label in :data:`ctinv_utils.data.phantoms.LABELS` (the label map's value).
    hu : float
        The CT number it is painted with (HU at the scanner model's reference energy); with the
        composition this fixes its mass density.
    """

    name: str
    tissue: str
    hu: float

    @property
    def label(self) -> int:
        return int(LABELS[self.tissue])


#: The phantoms' materials, painted with the tissue HU of :mod:`ctinv_utils.data.phantoms`.
MATERIALS = {name: PhantomMaterial(name, tissue, float(TISSUE_HU[tissue])) for name, tissue in (
    ("water", "water"), ("fat", "fat"), ("liver", "liver"), ("cancellous", "cancellous"), ("bone", "bone"))}


@dataclass
class Phantom:
    """A phantom slice on the image grid of both simulators.

    Attributes
    ----------
    name : str
    labels : ndarray, (H, W), uint8
        Tissue labels of :data:`ctinv_utils.data.phantoms.LABELS` (``air`` outside).
    pixel_mm : float
        Pixel size in mm (the field of view is ``H * pixel_mm``).
    materials : dict
        ``{name: PhantomMaterial}`` of the labels present.
    regions : dict
        ``{material name: (H, W) bool}``: where its CT number is read (inside, clear of edges).
    noise_centres_px : list of (row, col)
        Centres of the square noise ROIs (``noise_roi_px`` wide), in water clear of the inserts.
    noise_roi_px : int
    radius_mm : float or None
        The cylinder's radius (for cupping), None for other phantoms.
    """

    name: str
    labels: np.ndarray
    pixel_mm: float
    materials: dict[str, PhantomMaterial]
    regions: dict[str, np.ndarray]
    noise_centres_px: list[tuple[float, float]]
    noise_roi_px: int
    radius_mm: float | None = None

    @property
    def image_hu(self) -> np.ndarray:
        """Painted CT numbers (HU, float32): -1000 in air, each material's ``hu``."""
        out = np.full(self.labels.shape, TISSUE_HU["air"], dtype=np.float32)
        for m in self.materials.values():
            out[self.labels == m.label] = m.hu
        return out

    def fractions(self) -> dict[str, np.ndarray]:
        """``{material name: (H, W) float32 volume fraction}`` (0 or 1 per pixel)."""
        return {name: (self.labels == m.label).astype(np.float32) for name, m in self.materials.items()}


def _grid_mm(size: int, pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the pixel centres in mm, origin at the image centre, y growing downwards (rows)."""
    c = (np.arange(size) - (size - 1) / 2) * pixel_mm
    return c[None, :], c[:, None]


def _noise_rois(mask: np.ndarray, size_px: int, what_mm: float) -> list[tuple[float, float]]:
    centres = nm.pack_square_rois(mask, size_px, margin_px=4)
    if len(centres) < 2:
        raise BadArgumentError(f"fewer than two noise ROIs of {size_px} px fit in the {what_mm:g} mm phantom at this "
                               "pixel size; use a smaller noise_roi_px")
    return centres


def water_cylinder(size: int = 512, pixel_mm: float = 380.0 / 512, radius_mm: float = 150.0,
                   noise_roi_px: int = 64) -> Phantom:
    """A water cylinder (default 300 mm across) in air, centred.

    Noise ROIs: squares packed into the water (:func:`~ctinv_utils.data.noise_measurement.pack_square_rois`,
    4 px from its edge). The water CT number is read in the central disc of a fifth of the radius.

    Parameters
    ----------
    size : int
        Image side in pixels.
    pixel_mm : float
        Pixel size in mm (default: the 380 mm abdomen field at 512 px, 0.742 mm).
    radius_mm : float
        Cylinder radius in mm; it must fit in the field (``size * pixel_mm / 2``).
    noise_roi_px : int
        Side of the square noise ROIs in pixels (at least two must fit in the cylinder).

    Returns
    -------
    Phantom

    Raises
    ------
    BadArgumentError
        The cylinder does not fit the field, or fewer than two noise ROIs fit in it.
    """
    if radius_mm >= size * pixel_mm / 2:
        raise BadArgumentError(f"a {2 * radius_mm:g} mm cylinder does not fit a {size * pixel_mm:g} mm field; "
                               "use a larger pixel_mm or size")
    x, y = _grid_mm(size, pixel_mm)
    labels = np.where(np.hypot(x, y) <= radius_mm, LABELS["water"], LABELS["air"]).astype(np.uint8)
    centres = _noise_rois(labels == LABELS["water"], noise_roi_px, radius_mm)
    regions = {"water": np.hypot(x, y) <= 0.2 * radius_mm}
    return Phantom("water_cylinder", labels, pixel_mm, {"water": MATERIALS["water"]}, regions, centres,
                   noise_roi_px, radius_mm)


def abdomen_slice(size: int = 512, pixel_mm: float = 380.0 / 512, noise_roi_px: int = 64) -> Phantom:
    """An abdomen-like slice: an elliptical body (320 x 240 mm) of water in a 15 mm subcutaneous fat
    layer, a liver (110 x 90 mm) on the patient's right (image left), a fat insert (40 mm), a vertebral
    body of cancellous bone (36 mm), a cortical-bone insert behind it (20 mm) and two ribs (12 mm).

    Noise ROIs: squares packed into the soft tissue (water, liver, fat; 4 px from the bone and the body's
    edge), where the noise-only images (noisy minus noise-free) are compared; each material's CT number
    is read in a disc inside it (``bone``: the cortical insert).

    Parameters
    ----------
    size : int
        Image side in pixels (the body needs a field of at least 330 mm).
    pixel_mm : float
        Pixel size in mm (default: the 380 mm abdomen field at 512 px).
    noise_roi_px : int
        Side of the square noise ROIs in pixels.

    Returns
    -------
    Phantom

    Raises
    ------
    BadArgumentError
        The body does not fit the field, or fewer than two noise ROIs fit in it.
    """
    if size * pixel_mm < 330.0:
        raise BadArgumentError(f"the 320 mm body does not fit a {size * pixel_mm:g} mm field; use a larger pixel_mm")
    x, y = _grid_mm(size, pixel_mm)
    labels = np.full((size, size), LABELS["air"], dtype=np.uint8)

    def paint(mask, name):
        labels[mask] = MATERIALS[name].label

    paint(((x / 160) ** 2 + (y / 120) ** 2) <= 1, "fat")
    paint(((x / 145) ** 2 + (y / 105) ** 2) <= 1, "water")
    paint((((x + 85) / 55) ** 2 + ((y + 20) / 45) ** 2) <= 1, "liver")
    paint(np.hypot(x - 70, y + 45) <= 20, "fat")
    paint(np.hypot(x, y - 60) <= 18, "cancellous")
    paint(np.hypot(x, y - 90) <= 10, "bone")
    for sx in (-1, 1):
        paint(np.hypot(x - sx * 128, y - 20) <= 6, "bone")
    regions = {"water": np.hypot(x, y + 10) <= 15, "fat": np.hypot(x - 70, y + 45) <= 12,
               "liver": np.hypot(x + 85, y + 20) <= 25, "cancellous": np.hypot(x, y - 60) <= 10,
               "bone": np.hypot(x, y - 90) <= 5}
    soft = np.isin(labels, [MATERIALS[m].label for m in ("water", "liver", "fat")])
    centres = _noise_rois(soft, noise_roi_px, 160.0)
    return Phantom("abdomen", labels, pixel_mm, dict(MATERIALS), regions, centres, noise_roi_px)


# -- materials: composition and density from the scanner model's tables --------------------------

#: Atomic numbers of the elements of the scanner model's materials.
ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "Na": 11, "Mg": 12, "Al": 13, "P": 15, "S": 16, "Cl": 17, "Ar": 18,
                 "K": 19, "Ca": 20, "Fe": 26, "I": 53, "Gd": 64}


def material_composition(material: PhantomMaterial) -> tuple[dict[str, float], float]:
    """Elemental mass fractions and mass density (g/cm^3) of a phantom material, as our scanner model
    builds it: the composition of its tissue's material in ``xray_tables.json``, at the density that
    gives its painted HU at the reference energy (``rho = rho_nominal * mu_ref(HU) / mu_ref(material)``).

    Returns
    -------
    (dict, float)
        ``({element symbol: mass fraction}, density_g_cm3)``.
    """
    from ..data.scanner import xray

    tables = xray.load_tables()
    name = xray.TISSUE_MATERIAL.get(material.tissue, "soft_tissue")
    i_ref = int(np.flatnonzero(tables.energies_kev == xray.REFERENCE_KEV)[0])
    mu_ref = float(tables.mu_per_mm(name)[i_ref])
    density = tables.density[name] * float(xray.mu_from_hu(material.hu)) / mu_ref
    fractions = tables.meta["materials"][name]["mass_fractions"]
    return dict(fractions), float(density)


def write_gecatsim_material(path: str | os.PathLike, fractions: dict[str, float], density_g_cm3: float,
                            title: str = "") -> Path:
    """Write a gecatsim material file: element count, density (g/cm^3), then ``Z mass_fraction`` lines.

    Parameters
    ----------
    path : path
        The file (gecatsim accepts a path wherever it takes a material name).
    fractions : dict
        ``{element symbol: mass fraction}`` (gecatsim renormalises them to 1).
    density_g_cm3 : float
    title : str
        A comment line naming the material.
    """
    unknown = sorted(set(fractions) - set(ATOMIC_NUMBER))
    if unknown:
        raise BadArgumentError(f"elements {unknown} have no atomic number in ATOMIC_NUMBER; add them")
    lines = [f"# {title}".rstrip(), "# Number of elements:", str(len(fractions)), "# Density:",
             f"{density_g_cm3:.6f}", "# Atomic number(s) and corresponding mass fraction(s):"]
    lines += [f"{ATOMIC_NUMBER[el]} {f:.8f}" for el, f in sorted(fractions.items(), key=lambda kv: ATOMIC_NUMBER[kv[0]])]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def read_gecatsim_material(path: str | os.PathLike) -> tuple[dict[int, float], float]:
    """Read a gecatsim material file as gecatsim does: ``({Z: mass fraction}, density_g_cm3)``."""
    numbers = [ln.split("#")[0].strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    numbers = [ln for ln in numbers if ln[:1].isdigit()]
    count, density = int(numbers[0]), float(numbers[1])
    pairs = [ln.split() for ln in numbers[2:2 + count]]
    return {int(z): float(f) for z, f in pairs}, density


# -- gecatsim: phantom, spectrum, bowtie and the scan ------------------------------------------------

def write_gecatsim_phantom(phantom: Phantom, folder: str | os.PathLike, slice_mm: float = 10.0) -> Path:
    """Export a phantom as a gecatsim voxelized phantom: a ``.json`` description, one float32
    volume-fraction map (``.raw``, x fastest) and one material file per material, all in ``folder``.

    The voxel grid is the image grid (isocentre at its centre ``((W-1)/2, (H-1)/2)``, rows along y);
    each material has our scanner model's composition and the density of its painted HU
    (:func:`material_composition`).

    Parameters
    ----------
    phantom : Phantom
    folder : path
        Created when missing.
    slice_mm : float
        Thickness of the single voxel slice in mm; it must cover the detector row at the isocentre.

    Returns
    -------
    Path
        The ``.json`` file (gecatsim's ``phantom.filename``).
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    h, w = phantom.labels.shape
    fractions = phantom.fractions()
    names = list(fractions)
    files, materials = [], []
    for name in names:
        fname = f"{phantom.name}_{name}_{w}x{h}x1.raw"
        fractions[name].astype("<f4").tofile(folder / fname)
        files.append(fname)
        comp, density = material_composition(phantom.materials[name])
        mat = write_gecatsim_material(folder / f"{phantom.name}_{name}.material", comp, density,
                                      f"{name} ({phantom.materials[name].tissue}, {phantom.materials[name].hu:g} HU)")
        materials.append(str(mat))
    k = len(names)
    vp = {"n_materials": k, "mat_name": materials,
          "volumefractionmap_filename": files, "volumefractionmap_datatype": ["float"] * k,
          "cols": [w] * k, "rows": [h] * k, "slices": [1] * k,
          "x_size": [phantom.pixel_mm] * k, "y_size": [phantom.pixel_mm] * k, "z_size": [slice_mm] * k,
          "x_offset": [(w + 1) / 2] * k, "y_offset": [(h + 1) / 2] * k, "z_offset": [1.0] * k}
    path = folder / f"{phantom.name}.json"
    path.write_text(json.dumps(vp, indent=2) + "\n")
    return path


def read_gecatsim_phantom(json_path: str | os.PathLike) -> dict[str, tuple[np.ndarray, float]]:
    """Read a voxelized phantom back as gecatsim reads it: ``{material file: ((rows, cols) float32 volume
    fraction, density g/cm^3)}`` (fractions times ``density_scale`` where the file has one)."""
    json_path = Path(json_path)
    vp = json.loads(json_path.read_text())
    scale = vp.get("density_scale", [1.0] * vp["n_materials"])
    out = {}
    for i, mat in enumerate(vp["mat_name"]):
        dims = (vp["slices"][i], vp["rows"][i], vp["cols"][i])
        dtype = {"float": "<f4", "single": "<f4", "double": "<f8"}[vp["volumefractionmap_datatype"][i]]
        data = np.fromfile(json_path.parent / vp["volumefractionmap_filename"][i], dtype=dtype).reshape(dims)
        path = Path(mat) if Path(mat).is_file() else json_path.parent / mat
        out[mat] = (data[0] * scale[i], read_gecatsim_material(path)[1])
    return out


def write_gecatsim_spectrum(path: str | os.PathLike, energies_kev: np.ndarray, photons: np.ndarray) -> Path:
    """Write a spectrum in gecatsim's text format: the number of bins, then ``energy, photons`` lines
    (keV; any fluence unit: the check rescales it to the requested photons per detector channel)."""
    energies_kev, photons = np.asarray(energies_kev, float).ravel(), np.asarray(photons, float).ravel()
    if energies_kev.shape != photons.shape or energies_kev.size < 2:
        raise BadArgumentError("energies_kev and photons must be 1-D of the same length (>= 2 bins)")
    lines = [str(energies_kev.size)] + [f"{e:.6f},{p:.9e}" for e, p in zip(energies_kev, photons)]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_gecatsim_bowtie(path: str | os.PathLike, al_mm: Callable[[np.ndarray], np.ndarray],
                          max_angle_rad: float = 0.5, samples: int = 1001) -> Path:
    """Write an aluminium bowtie in gecatsim's format: fan angle (rad) and thicknesses (cm) of Al,
    graphite, Cu and Ti (only Al here), ``samples`` angles over +-``max_angle_rad``."""
    gamma = np.linspace(-max_angle_rad, max_angle_rad, samples)
    t_cm = np.asarray(al_mm(gamma), dtype=np.float64) / 10.0
    rows = ["# angle (rad), materials in cm ('al', 'graphite', 'cu', 'ti')"]
    rows += [f"{g:.6f}\t{t:.6f}\t0.000000\t0.000000\t0.000000" for g, t in zip(gamma, t_cm)]
    path = Path(path)
    path.write_text("\n".join(rows) + "\n")
    return path


@dataclass
class ReferenceSetup:
    """The scan as gecatsim runs it; :func:`reference_setup` fills it from our scanner model.

    Attributes
    ----------
    sid_mm, sdd_mm : float
        Source-isocentre and source-detector distances, mm.
    channels : int
        Detector channels (equiangular, one per module), ``channel_mm`` wide at the detector.
    channel_mm : float
    channel_offset : float
        Detector offset in channels (0.25: quarter offset).
    views : int
        Views per rotation (one rotation).
    row_mm : float
        Width of the single detector row at the detector, mm.
    spectrum : (ndarray, ndarray) or None
        ``(energies keV, relative photons)`` after the flat filtration; None: gecatsim's own
        ``tungsten_tar7.0_120_filt.dat`` with 3 mm Al.
    bowtie_al_mm : callable or None
        Aluminium thickness (mm) of the bowtie as a function of the fan angle (rad); None: gecatsim's
        ``large`` bowtie.
    energy_bins : int
        Energy bins of gecatsim's spectrum.
    detector : (fractions, density) or None
        Scintillator composition ``{element: mass fraction}`` and density (g/cm^3); None: gecatsim's
        Lumex with a 1 mm graphite prefilter.
    detector_mm : float
        Scintillator depth, mm.
    gain_e_per_kev : float
        Electrons per keV deposited (energy-integrating detector).
    electronic_noise_photons : float
        Electronic noise std in photon-equivalents of the mean detected energy of the air scan in the
        central channel (converted to electrons from gecatsim's own air scan).
    photons_full_dose : float
        Photons per channel per view incident on the detector through the bowtie centre in air at full
        dose.
    kernel : str
        gecatsim reconstruction kernel: ``'soft'`` (close to a Hann-windowed ramp), ``'standard'``,
        ``'R-L'``, ``'S-L'``.
    water_correction : bool
        Apply gecatsim's own water beam-hardening correction (``Prep_BHC_Accurate``: per channel, a
        polynomial of degree ``bhc_poly_order`` fitted to simulated water slabs of ``bhc_step_mm`` up to
        ``bhc_max_mm``) mapping water to its attenuation at ``reference_kev``, as ours does.
    reference_kev : float
        The energy whose water attenuation the correction maps to (ours: 70 keV).
    """

    sid_mm: float = _SCANNER.source_iso_mm
    sdd_mm: float = _SCANNER.source_detector_mm
    channels: int = _SCANNER.n_channels
    channel_mm: float = _SCANNER.channel_pitch_mm
    channel_offset: float = _SCANNER.channel_offset
    views: int = _SCANNER.n_views
    row_mm: float = 1.0
    spectrum: tuple[np.ndarray, np.ndarray] | None = None
    bowtie_al_mm: Callable[[np.ndarray], np.ndarray] | None = None
    energy_bins: int = 53
    detector: tuple[dict[str, float], float] | None = None
    detector_mm: float = 1.4
    gain_e_per_kev: float = 17.0
    electronic_noise_photons: float = 3.0
    photons_full_dose: float = 2.0e5
    kernel: str = "soft"
    water_correction: bool = True
    reference_kev: float = 70.0
    bhc_poly_order: int = 5
    bhc_max_mm: float = 400.0
    bhc_step_mm: float = 10.0

    def describe(self) -> dict:
        """The settings as JSON-friendly values."""
        out = {k: v for k, v in asdict(self).items() if k not in ("spectrum", "bowtie_al_mm", "detector")}
        out["spectrum"] = "ours" if self.spectrum is not None else "gecatsim tungsten_tar7.0_120_filt.dat + 3 mm Al"
        out["bowtie"] = "ours (aluminium profile)" if self.bowtie_al_mm is not None else "gecatsim large.txt"
        if self.detector is None:
            out["detector"] = "gecatsim Lumex behind 1 mm graphite"
        else:
            out["detector"] = {"mass_fractions": self.detector[0], "density_g_cm3": self.detector[1]}
        return out


def reference_setup(geometry=None, **overrides) -> ReferenceSetup:
    """gecatsim set up as our scanner model: its geometry (:class:`~ctinv_utils.data.scanner.geometry.FanBeamGeometry`),
    tube spectrum, aluminium bowtie, gadolinium oxysulfide scintillator and electronic noise
    (:mod:`ctinv_utils.data.scanner.xray`).

    Parameters
    ----------
    geometry : FanBeamGeometry, optional
        Default: ``FanBeamGeometry()`` (the Definition Flash class scanner).
    **overrides
        Fields of :class:`ReferenceSetup` to set (e.g. ``views``, ``photons_full_dose``, ``kernel``).

    Returns
    -------
    ReferenceSetup
    """
    from ..data.scanner import xray

    g = _SCANNER if geometry is None else geometry
    tables = xray.load_tables()
    det = tables.meta["materials"][xray.DETECTOR_MATERIAL]
    setup = ReferenceSetup(
        sid_mm=g.source_iso_mm, sdd_mm=g.source_detector_mm, channels=g.n_channels, channel_mm=g.channel_pitch_mm,
        channel_offset=g.channel_offset, views=g.n_views,
        spectrum=(tables.energies_kev, tables.fluence), bowtie_al_mm=xray.bowtie_al_mm,
        detector=(dict(det["mass_fractions"]), float(det["density_g_cm3"])), detector_mm=xray.DETECTOR_MM,
        electronic_noise_photons=xray.ELECTRONIC_NOISE_PHOTONS, reference_kev=xray.REFERENCE_KEV)
    for k, v in overrides.items():
        if not hasattr(setup, k):
            raise BadArgumentError(f"ReferenceSetup has no field {k!r}; fields: {sorted(asdict(setup))}")
        setattr(setup, k, v)
    return setup


class _Detection:
    """gecatsim finds its detection model by module name (``feval``): a stand-in module, put in
    ``sys.modules`` for the duration of a scan, routes it to this object.

    Per reading it does what gecatsim's ``Detection_EI`` does (prefilter and scintillator absorption
    from gecatsim's cross sections, energy integration, gain) with the random numbers drawn from one
    numpy Generator: Poisson counts per energy bin at full dose, their binomial thinning for the low
    dose, and independent Gaussian electronic noise (electrons) on each reading.
    """

    NAME = "ctinv_gecatsim_detection"

    def __init__(self, rng: np.random.Generator | None, dose_fraction: float, noise: bool,
                 electronic_noise_e: float, on_view: Callable[[int, int], None] | None = None):
        self.rng, self.dose, self.noise, self.sigma_e, self.on_view = rng, dose_fraction, noise, electronic_noise_e, on_view
        self.low_views: list[np.ndarray] = []
        self.air_incident: np.ndarray | None = None  # photons per cell (air scan, before the detector)
        self.air_mean_kev: np.ndarray | None = None  # mean detected energy per cell (air scan)

    def __enter__(self):
        mod = types.ModuleType(self.NAME)
        setattr(mod, self.NAME, self)
        sys.modules[self.NAME] = mod
        return self

    def __exit__(self, *exc):
        sys.modules.pop(self.NAME, None)

    def __call__(self, cfg, view_id, sub_view_id):
        evec = np.asarray(cfg.sim.Evec, dtype=np.float64).ravel()
        if view_id == cfg.sim.startViewId and sub_view_id == 0:
            cfg.sim.Wvec = self._efficiency(cfg)
        incident = np.asarray(cfg.thisSubView, dtype=np.float64)
        expected = incident * cfg.sim.Wvec  # detected photons per cell and energy bin
        if cfg.sim.isAirScan:
            self.air_incident = incident.sum(axis=1)
            self.air_mean_kev = (expected @ evec) / np.maximum(expected.sum(axis=1), 1e-300)
        phantom = bool(cfg.sim.isPhantomScan)
        if phantom and self.noise:
            full = self.rng.poisson(expected)
            low = self.rng.binomial(full, self.dose)
        else:
            full, low = expected, expected * self.dose
        full_kev, low_kev = full @ evec, low @ evec
        if sub_view_id == 0:
            cfg.thisView, self._low = full_kev, low_kev
        else:
            cfg.thisView = cfg.thisView + full_kev
            self._low = self._low + low_kev
        if sub_view_id == cfg.sim.subViewCount - 1:
            gain = cfg.scanner.detectionGain
            full_e, low_e = cfg.thisView * gain, self._low * gain
            if phantom and self.noise and self.sigma_e > 0:
                full_e = full_e + self.rng.normal(0.0, self.sigma_e, full_e.shape)
                low_e = low_e + self.rng.normal(0.0, self.sigma_e, low_e.shape)  # its own reading
            cfg.thisView = full_e.astype(np.float32)
            if phantom:
                self.low_views.append(low_e.astype(np.float32))
                if self.on_view is not None:
                    self.on_view(view_id - cfg.sim.startViewId + 1, cfg.sim.viewCount)
        return cfg

    @staticmethod
    def _efficiency(cfg) -> np.ndarray:
        from gecatsim.pyfiles.CommonTools import feval
        from gecatsim.pyfiles.GetMu import GetMu

        w = np.asarray(feval(cfg.physics.prefilterCallback, cfg), dtype=np.float64)
        mu = np.asarray(GetMu(cfg.scanner.detectorMaterial, cfg.sim.Evec), dtype=np.float64).ravel()
        depth = 0.1 * cfg.scanner.detectorDepth / np.cos(np.asarray(cfg.det.betas, dtype=np.float64))
        return w * (1.0 - np.exp(-depth * mu[None, :]))


@contextlib.contextmanager
def _quiet():
    """Silence gecatsim while it runs: its prints, its C library's prints (file descriptor 1) and its own
    per-view bar (ours shows the views)."""
    from gecatsim.pyfiles import OneScan

    old_tqdm = OneScan.tqdm
    OneScan.tqdm = lambda iterable, *a, **k: iterable
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).fflush(None)  # the C library's buffered prints go to /dev/null, not later to us
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
        OneScan.tqdm = old_tqdm


class GecatsimScanner:
    """gecatsim (XCIST) as the reference simulator: scans a :class:`Phantom` with a
    :class:`ReferenceSetup` and reconstructs attenuation images (1/mm) on the phantom's grid.

    Parameters
    ----------
    setup : ReferenceSetup
    workdir : path
        Folder for gecatsim's files (phantoms, materials, raw views, sinograms); created when missing.

    Example
    -------
    >>> gs = GecatsimScanner(reference_setup(views=288), "/tmp/gc")                      # doctest: +SKIP
    >>> low, full = gs.scan(water_cylinder(), dose_fraction=0.25, rng=np.random.default_rng(0))  # doctest: +SKIP
    """

    def __init__(self, setup: ReferenceSetup, workdir: str | os.PathLike):
        try:
            import gecatsim  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"the reference simulator needs gecatsim ({exc}); install it with "
                              f"pip install gecatsim=={GECATSIM_VERSION} (1.6.9 does not build on Linux)") from exc
        self.setup = setup
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.spectrum_file = self.bowtie_file = self.detector_file = None
        if setup.spectrum is not None:
            self.spectrum_file = write_gecatsim_spectrum(self.workdir / "spectrum.dat", *setup.spectrum)
        if setup.bowtie_al_mm is not None:
            self.bowtie_file = write_gecatsim_bowtie(self.workdir / "bowtie.txt", setup.bowtie_al_mm)
        if setup.detector is not None:
            self.detector_file = write_gecatsim_material(self.workdir / "detector.material", *setup.detector,
                                                         title="scintillator")
        self.water_file = write_gecatsim_material(self.workdir / "water.material",
                                                  *material_composition(MATERIALS["water"]), title="water")
        self.bhc_file = self.workdir / "water_bhc.npy"
        self.calibration: dict | None = None

    def _catsim(self, phantom: Phantom, phantom_json: Path, results: Path, scaling: float, electronic_noise_e: float,
                bhc: bool):
        """A gecatsim ``CatSim`` configured for one scan of ``phantom_json`` (files named ``results.*``)."""
        import gecatsim as xc

        st = self.setup
        ct = xc.CatSim()
        ct.resultsName = str(results)
        ct.phantom.filename = str(phantom_json)
        ct.phantom.projectorNumThreads = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                    else (os.cpu_count() or 1), 8))
        s = ct.scanner
        s.sid, s.sdd = st.sid_mm, st.sdd_mm
        s.detectorColsPerMod, s.detectorRowsPerMod = 1, 1
        s.detectorColCount, s.detectorRowCount = st.channels, 1
        s.detectorColSize, s.detectorRowSize = st.channel_mm, st.row_mm
        s.detectorColOffset, s.detectorRowOffset = st.channel_offset, 0.0
        s.detectionCallback = _Detection.NAME
        s.detectionGain = st.gain_e_per_kev
        s.eNoise = electronic_noise_e
        if self.detector_file is not None:
            s.detectorMaterial, s.detectorDepth, s.detectorPrefilter = str(self.detector_file), st.detector_mm, []
        p = ct.protocol
        p.viewsPerRotation = p.viewCount = st.views
        p.startViewId, p.stopViewId = 0, st.views - 1
        p.airViewCount = p.offsetViewCount = 1
        p.spectrumScaling = scaling
        p.maxPrep = -1
        if self.spectrum_file is not None:
            p.spectrumFilename = str(self.spectrum_file)
            p.spectrumUnit_mm, p.spectrumUnit_mA = 1, 1
            p.flatFilter = []  # the spectrum is already filtered
        if self.bowtie_file is not None:
            p.bowtie = str(self.bowtie_file)
        ph = ct.physics
        ph.energyCount = st.energy_bins
        for k in ("colSampleCount", "rowSampleCount", "srcXSampleCount", "srcYSampleCount", "viewSampleCount"):
            setattr(ph, k, 1)  # one sample each: the same noise and noise spectrum, ~8x faster
        size = phantom.labels.shape[0]
        r = ct.recon
        r.fov, r.imageSize, r.sliceCount = size * phantom.pixel_mm, size, 1
        r.sliceThickness = st.row_mm * st.sid_mm / st.sdd_mm
        r.unit, r.kernelType, r.centerOffset = "/mm", st.kernel, [0.0, 0.0, 0.0]
        r.saveImageVolume = False
        if bhc:
            ph.callback_post_log = "Prep_BHC_Accurate"
            self._bhc_settings(ct, self.calibration["mu_water_ref_per_mm"] * 10.0)
        return ct

    def calibrate(self, phantom: Phantom) -> dict:
        """Measured once from gecatsim air scans: the ``spectrumScaling`` that puts ``photons_full_dose``
        photons per view on the central channel, the electronic noise in electrons
        (``electronic_noise_photons`` times the mean detected energy there times the gain), gecatsim's
        water attenuation at ``reference_kev`` and, with ``water_correction``, the coefficients of its
        water beam-hardening correction (saved in the work folder).

        Returns
        -------
        dict
            ``spectrum_scaling``, ``electronic_noise_e``, ``air_mean_kev``, ``mu_water_ref_per_mm``.
        """
        if self.calibration is None:
            from gecatsim.pyfiles.GetMu import GetMu

            phantom_json = write_gecatsim_phantom(phantom, self.workdir / "phantoms")
            with _Detection(None, 1.0, False, 0.0) as det, _quiet():
                ct = self._catsim(phantom, phantom_json, self.workdir / "calibration", 1.0, 0.0, bhc=False)
                ct.air_scan(doPrint=False)
            mid = slice(self.setup.channels // 2 - 1, self.setup.channels // 2 + 1)
            incident = float(det.air_incident[mid].mean())
            mean_kev = float(det.air_mean_kev[mid].mean())
            mu_ref = float(np.asarray(GetMu(str(self.water_file), np.array([self.setup.reference_kev], np.float32)))[0])
            cal = {"spectrum_scaling": self.setup.photons_full_dose / incident, "air_mean_kev": mean_kev,
                   "electronic_noise_e": self.setup.electronic_noise_photons * mean_kev * self.setup.gain_e_per_kev,
                   "mu_water_ref_per_mm": mu_ref / 10.0}
            if self.setup.water_correction:
                from gecatsim.pyfiles.Prep_BHC_Accurate import gen_BHC_vec

                with _Detection(None, 1.0, False, 0.0), _quiet():
                    ct = self._catsim(phantom, phantom_json, self.workdir / "calibration", cal["spectrum_scaling"],
                                      0.0, bhc=False)
                    ct.air_scan(doPrint=False)
                    cfg = ct.get_current_cfg()
                    self._bhc_settings(cfg, mu_ref)
                    np.save(self.bhc_file, gen_BHC_vec(cfg))
            self.calibration = cal
        return self.calibration

    def _bhc_settings(self, cfg, mu_ref_per_cm: float) -> None:
        st = self.setup
        ph = cfg.physics
        ph.BHC_poly_order, ph.BHC_max_length_mm, ph.BHC_length_step_mm = st.bhc_poly_order, st.bhc_max_mm, st.bhc_step_mm
        ph.BHC_material, ph.EffectiveMu = str(self.water_file), mu_ref_per_cm
        ph.BHC_vec_fname = str(self.bhc_file)

    def scan(self, phantom: Phantom, *, dose_fraction: float, rng: np.random.Generator | None = None,
             noise: bool = True, uncorrected: bool = False,
             on_view: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
        """Scan and reconstruct one phantom at full dose and at ``dose_fraction``.

        Parameters
        ----------
        phantom : Phantom
        dose_fraction : float
            Low dose over full dose, in (0, 1].
        rng : numpy.random.Generator
            Draws every random number of the scan (required when ``noise``).
        noise : bool
            False: neither quantum nor electronic noise (the expected signal), and no low-dose image.
        uncorrected : bool
            Also reconstruct the full-dose scan without the water beam-hardening correction.
        on_view : callable, optional
            ``on_view(done, total)`` after each simulated view.

        Returns
        -------
        dict of str to ndarray (H, W) float32
            Reconstructed linear attenuation in 1/mm: ``full``, ``low`` (when ``noise``) and
            ``full_uncorrected`` (when ``uncorrected``); ``full`` and ``low`` water-corrected when the
            setup says so.

        Raises
        ------
        BadArgumentError
            A noisy scan without ``rng``, or ``dose_fraction`` outside (0, 1].
        """
        if noise and not isinstance(rng, np.random.Generator):
            raise BadArgumentError("a noisy scan needs rng, a numpy Generator (np.random.default_rng(seed))")
        if not 0 < dose_fraction <= 1:
            raise BadArgumentError(f"dose_fraction={dose_fraction}; give the low-dose fraction in (0, 1]")
        import gecatsim.reconstruction.pyfiles.recon as gc_recon
        from gecatsim.pyfiles.CommonTools import rawread

        cal = self.calibrate(phantom)
        phantom_json = write_gecatsim_phantom(phantom, self.workdir / "phantoms")
        base = self.workdir / f"{phantom.name}_{'noisy' if noise else 'clean'}"
        out = {}
        with _Detection(rng, dose_fraction, noise, cal["electronic_noise_e"], on_view) as det, _quiet():
            ct = self._catsim(phantom, phantom_json, base, cal["spectrum_scaling"], cal["electronic_noise_e"],
                              bhc=self.setup.water_correction)
            cfg = ct.run_all()
            out["full"] = self._reconstruct(ct, gc_recon, base)
            if noise:
                cells = self.setup.channels
                low = Path(f"{base}_low")
                air = rawread(f"{base}.air", [1, cells], "float")
                offset = rawread(f"{base}.offset", [1, cells], "float")
                (air * dose_fraction).astype(np.float32).tofile(f"{low}.air")  # the air scan at the low dose
                offset.astype(np.float32).tofile(f"{low}.offset")
                np.stack(det.low_views).astype(np.float32).tofile(f"{low}.scan")
                cfg.resultsName = str(low)
                ct.prep_view(cfg)
                out["low"] = self._reconstruct(ct, gc_recon, low)
            if uncorrected:
                cfg.resultsName = str(base)
                cfg.physics.callback_post_log = ""
                ct.prep_view(cfg)
                out["full_uncorrected"] = self._reconstruct(ct, gc_recon, base)
        return out

    @staticmethod
    def _reconstruct(ct, gc_recon, results: Path) -> np.ndarray:
        cfg = ct.get_current_cfg()
        cfg.resultsName = str(results)
        cfg.do_Recon = 1
        return np.asarray(gc_recon.recon_direct(cfg)[:, :, 0], dtype=np.float32)


def mu_to_hu(mu_per_mm: np.ndarray, mu_water_per_mm: float) -> np.ndarray:
    """Attenuation (1/mm) -> HU with a measured water attenuation (gecatsim's own HU unit assumes a fixed
    one; the check calibrates it on the water cylinder)."""
    return (np.asarray(mu_per_mm, dtype=np.float64) / mu_water_per_mm - 1.0) * 1000.0


# -- measurements and targets ------------------------------------------------------------------------

def measure_phantom(phantom: Phantom, low_hu: np.ndarray, full_hu: np.ndarray, clean_hu: np.ndarray,
                    dose_fraction: float) -> dict:
    """Noise, noise power spectrum and CT numbers of one simulator's scans of one phantom.

    The noise is the noisy image minus the noise-free one, in the phantom's square noise ROIs (each
    ROI's mean removed): std (square root of the mean ROI variance) and NPS
    (:func:`~ctinv_utils.data.noise_measurement.nps_summary`) at both doses, with bootstrap standard
    errors over the ROIs (:func:`~ctinv_utils.data.noise_measurement.nps_bootstrap`). CT numbers: the mean of
    the noise-free image in each material's region. A cylinder also gets its cupping
    (:func:`~ctinv_utils.data.noise_measurement.cupping_hu`) and radial profile.

    Parameters
    ----------
    phantom : Phantom
    low_hu, full_hu, clean_hu : ndarray, (H, W)
        Low-dose, full-dose and noise-free images in HU.
    dose_fraction : float

    Returns
    -------
    dict
        ``std_full_hu``, ``std_low_hu``, ``ratio``, ``expected_ratio``, ``nps_full``, ``nps_low``,
        ``hu`` ({material: HU}) and, for a cylinder, ``cupping`` and ``profile``.
    """
    px, size = phantom.pixel_mm, phantom.noise_roi_px
    noise_full = nm.square_rois(np.asarray(full_hu) - clean_hu, phantom.noise_centres_px, size)
    noise_low = nm.square_rois(np.asarray(low_hu) - clean_hu, phantom.noise_centres_px, size)
    nps_full, nps_low = nm.nps_summary(noise_full, px), nm.nps_summary(noise_low, px)
    nps_full.update(nm.nps_bootstrap(noise_full, px))
    nps_low.update(nm.nps_bootstrap(noise_low, px))
    out = {"noise_rois": len(phantom.noise_centres_px), "noise_roi_mm": size * px,
           "std_full_hu": nps_full["std_hu"], "std_low_hu": nps_low["std_hu"],
           "ratio": nps_low["std_hu"] / nps_full["std_hu"], "expected_ratio": 1.0 / math.sqrt(dose_fraction),
           "nps_full": nps_full, "nps_low": nps_low,
           "hu": {name: float(np.mean(np.asarray(clean_hu)[mask])) for name, mask in phantom.regions.items()}}
    if phantom.radius_mm is not None:
        out["cupping"] = nm.cupping_hu(clean_hu, px, phantom.radius_mm)
        r, prof = nm.radial_profile(clean_hu, px, bin_mm=5.0)
        keep = r <= phantom.radius_mm
        out["profile"] = {"r_mm": r[keep].tolist(), "hu": prof[keep].tolist()}
    return out


@dataclass(frozen=True)
class Targets:
    """What the check calls agreement.

    Attributes
    ----------
    noise_ratio_rel : float
        Our low/full noise ratio within this fraction of ``sqrt(1 / dose_fraction)``.
    nps_freq_per_mm : float
        Our NPS peak and power-weighted mean frequency (full dose) within this of gecatsim's, 1/mm.
    cupping_corrected_hu : float
        With the water correction, our cylinder's |centre - edge| at most this, HU.
    cupping_uncorrected_hu, cupping_uncorrected_rel : float
        Without the correction (in both simulators), our centre - edge within
        ``max(hu, rel * |gecatsim's|)`` of gecatsim's, HU (this check's tolerance).
    hu_soft_hu : float
        Water, fat and liver: our CT number within this of gecatsim's, HU (this check's tolerance).
    hu_bone_rel : float
        Cancellous and cortical bone: our CT number within this fraction of gecatsim's (this check's
        tolerance).
    """

    noise_ratio_rel: float = 0.05
    nps_freq_per_mm: float = 0.04
    cupping_corrected_hu: float = 5.0
    cupping_uncorrected_hu: float = 5.0
    cupping_uncorrected_rel: float = 0.25
    hu_soft_hu: float = 20.0
    hu_bone_rel: float = 0.05


def evaluate_targets(measurements: dict, dose_fraction: float, targets: Targets = Targets()) -> list[dict]:
    """The targets, pass or fail, from the measurements of both simulators.

    Parameters
    ----------
    measurements : dict
        ``{phantom name: {"gecatsim": m, "ours": m}}`` with ``m`` as :func:`measure_phantom` returns; the
        water cylinder's also hold ``cupping_uncorrected`` (centre-to-edge without the water
        correction). Phantoms or keys that are missing are skipped.
    dose_fraction : float
    targets : Targets

    Returns
    -------
    list of dict
        One row per target: ``name``, ``what``, ``ours``, ``reference`` (gecatsim's value or the
        expectation), ``tolerance``, ``pass`` (bool).
    """
    rows = []

    def row(name, what, ours, reference, tolerance, ok):
        rows.append({"name": name, "what": what, "ours": float(ours), "reference": float(reference),
                     "tolerance": float(tolerance), "pass": bool(ok)})

    expected = 1.0 / math.sqrt(dose_fraction)
    for ph, sims in measurements.items():
        ours, ref = sims.get("ours"), sims.get("gecatsim")
        if ours is None:
            continue
        tol = targets.noise_ratio_rel * expected
        row(f"{ph}/noise_ratio", f"low/full noise std within {targets.noise_ratio_rel:.0%} of sqrt(1/dose)",
            ours["ratio"], expected, tol, abs(ours["ratio"] - expected) <= tol)
        if ref is None:
            continue
        for key in ("peak_per_mm", "mean_per_mm"):
            o, r = ours["nps_full"][key], ref["nps_full"][key]
            row(f"{ph}/nps_{key.split('_')[0]}", f"full-dose NPS {key.split('_')[0]} frequency (1/mm) within "
                f"{targets.nps_freq_per_mm} of gecatsim's", o, r, targets.nps_freq_per_mm,
                abs(o - r) <= targets.nps_freq_per_mm)
        if "cupping" in ours and "cupping" in ref:
            o = ours["cupping"]["centre_minus_edge_hu"]
            row(f"{ph}/cupping_corrected", "centre - edge (HU) with the water correction within "
                f"+-{targets.cupping_corrected_hu:g}", o, 0.0, targets.cupping_corrected_hu,
                abs(o) <= targets.cupping_corrected_hu)
        if "cupping_uncorrected" in ours and "cupping_uncorrected" in ref:
            o = ours["cupping_uncorrected"]["centre_minus_edge_hu"]
            r = ref["cupping_uncorrected"]["centre_minus_edge_hu"]
            tol = max(targets.cupping_uncorrected_hu, targets.cupping_uncorrected_rel * abs(r))
            row(f"{ph}/cupping_uncorrected", "centre - edge (HU) without the correction like gecatsim's "
                f"(within max({targets.cupping_uncorrected_hu:g} HU, {targets.cupping_uncorrected_rel:.0%}))",
                o, r, tol, abs(o - r) <= tol)
        for mat, r in ref.get("hu", {}).items():
            if mat not in ours.get("hu", {}) or ph == "water_cylinder":
                continue
            o = ours["hu"][mat]
            bone = mat in ("bone", "cancellous")
            tol = targets.hu_bone_rel * abs(r) if bone else targets.hu_soft_hu
            what = (f"CT number within {targets.hu_bone_rel:.0%} of gecatsim's" if bone
                    else f"CT number within {targets.hu_soft_hu:g} HU of gecatsim's")
            row(f"{ph}/hu_{mat}", what, o, r, tol, abs(o - r) <= tol)
    return rows


# -- the run -----------------------------------------------------------------------------------------

def machine() -> dict:
    """Where the check ran: platform, processor, usable cores, Python."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"platform": platform.platform(), "cpu": cpu, "usable_cores": cores, "python": sys.version.split()[0]}


def _versions() -> dict:
    from importlib import metadata

    out = versions()
    for dist in ("gecatsim", "spekpy", "xraydb", "matplotlib", "tqdm"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def run_check(out: str | os.PathLike = "simulator_check", *, seed: int = 0, dose_fraction: float = 0.25,
              photons_full_dose: float = 2.0e5, views: int | None = None, size: int = 512,
              fov_mm: float = 380.0, kernel: str = "soft", scan: ScanFunction | None = None,
              scan_name: str | None = None, targets: Targets = Targets(), progress: bool = True,
              workdir: str | os.PathLike | None = None) -> dict:
    """Scan both phantoms with both simulators, measure, judge the targets, and write
    ``<out>/simulator_check.json`` and ``simulator_check.png`` / ``.pdf``.

    Parameters
    ----------
    out : path
        Output folder.
    seed : int
        Seeds one numpy Generator per simulator (gecatsim: ``seed``; ours: ``seed + 1``).
    dose_fraction : float
        Low dose over full dose.
    photons_full_dose : float
        Photons per channel per view incident on the central channel in air at full dose (both).
    views : int, optional
        Views per rotation of gecatsim (default: our geometry's, 1152). Ours always uses its own.
    size : int
        Image side in pixels of both simulators.
    fov_mm : float
        Field of view (mm): the pixel is ``fov_mm / size``.
    kernel : str
        gecatsim's kernel (``'soft'`` is closest to our Hann-windowed ramp).
    scan : callable, optional
        Our simulator (:data:`ScanFunction`); default
        :func:`ctinv_utils.data.scanner.acquire.scan_slice` (the clinical scanner).
    scan_name : str, optional
        Its name in the report.
    targets : Targets
    progress : bool
        Show a progress bar (tqdm).
    workdir : path, optional
        gecatsim's scratch folder (default: a temporary folder, removed afterwards).

    Returns
    -------
    dict
        The JSON's content.
    """
    if scan is None:
        from ..data.scanner.acquire import scan_slice

        scan, scan_name = scan_slice, scan_name or "ctinv_utils.data.scanner.acquire.scan_slice (clinical scanner)"
    scan_name = scan_name or getattr(scan, "__qualname__", repr(scan))
    pixel_mm = fov_mm / size
    roi = int(round(47.0 / pixel_mm))
    roi -= roi % 2
    phantoms = {"water_cylinder": water_cylinder(size, pixel_mm, noise_roi_px=roi),
                "abdomen": abdomen_slice(size, pixel_mm, noise_roi_px=roi)}
    setup = reference_setup(photons_full_dose=photons_full_dose, kernel=kernel,
                            **({"views": views} if views is not None else {}))
    rng_ref, rng_ours = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    steps = 1 + 2 * len(phantoms) + 2 * len(phantoms) + 1 + 2  # gecatsim, ours, ours uncorrected, measure, write
    bar = progress_bar(total=steps, desc="simulator check", disable=not progress)
    timings: dict[str, float] = {}
    images: dict[str, dict[str, np.ndarray]] = {"gecatsim": {}, "ours": {}}

    def step(name):
        bar.set_postfix_str(name)
        return time.perf_counter()

    def done(name, t0):
        timings[name] = round(time.perf_counter() - t0, 1)
        bar.update(1)

    def on_view(i, n, label=""):
        if i % 64 == 0 or i == n:
            bar.set_postfix_str(f"{label} view {i}/{n}")

    out = Path(out)
    scratch = contextlib.nullcontext(workdir) if workdir is not None else tempfile.TemporaryDirectory(
        prefix="ctinv-gecatsim-")
    try:
        with scratch as work:
            gs = GecatsimScanner(setup, work)
            t0 = step("gecatsim air scan")
            cal = gs.calibrate(phantoms["water_cylinder"])
            done("gecatsim calibration", t0)
            mu = {}
            for name, ph in phantoms.items():
                t0 = step(f"gecatsim {name} noise-free")
                scans = gs.scan(ph, dose_fraction=dose_fraction, noise=False, uncorrected=ph.radius_mm is not None,
                                on_view=lambda i, n, s=f"gecatsim {name} noise-free": on_view(i, n, s))
                mu[f"{name}_clean"] = scans["full"]
                if "full_uncorrected" in scans:
                    mu[f"{name}_uncorrected"] = scans["full_uncorrected"]
                done(f"gecatsim {name} noise-free", t0)
                t0 = step(f"gecatsim {name}")
                scans = gs.scan(ph, dose_fraction=dose_fraction, rng=rng_ref,
                                on_view=lambda i, n, s=f"gecatsim {name}": on_view(i, n, s))
                mu[f"{name}_low"], mu[f"{name}_full"] = scans["low"], scans["full"]
                done(f"gecatsim {name}", t0)
        # gecatsim's HU: calibrated on its (water-corrected) noise-free scan of the water cylinder
        cyl = phantoms["water_cylinder"]
        inner = nm.disc_mask(cyl.labels.shape, ((size - 1) / 2, (size - 1) / 2), 0.9 * cyl.radius_mm / pixel_mm)
        mu_water = float(mu["water_cylinder_clean"][inner].mean())
        images["gecatsim"] = {k: mu_to_hu(v, mu_water).astype(np.float32) for k, v in mu.items()}

        big = dict(photons_full_dose=NOISE_FREE_PHOTONS, dose_fraction=dose_fraction)
        for name, ph in phantoms.items():
            t0 = step(f"ours {name} noise-free")
            _, images["ours"][f"{name}_clean"] = scan(ph.image_hu, ph.labels, pixel_mm, rng=rng_ours, **big)
            done(f"ours {name} noise-free", t0)
            t0 = step(f"ours {name}")
            images["ours"][f"{name}_low"], images["ours"][f"{name}_full"] = scan(
                ph.image_hu, ph.labels, pixel_mm, photons_full_dose=photons_full_dose, dose_fraction=dose_fraction,
                rng=rng_ours)
            done(f"ours {name}", t0)
        t0 = step("ours water_cylinder without the water correction")
        _, images["ours"]["water_cylinder_uncorrected"] = scan(cyl.image_hu, cyl.labels, pixel_mm, rng=rng_ours,
                                                               water_correction=False, **big)
        done("ours water_cylinder uncorrected", t0)

        t0 = step("measuring")
        measurements = {}
        for name, ph in phantoms.items():
            measurements[name] = {
                sim: measure_phantom(ph, images[sim][f"{name}_low"], images[sim][f"{name}_full"],
                                     images[sim][f"{name}_clean"], dose_fraction) for sim in ("gecatsim", "ours")}
        for sim in ("gecatsim", "ours"):
            unc = images[sim]["water_cylinder_uncorrected"]
            measurements["water_cylinder"][sim]["cupping_uncorrected"] = nm.cupping_hu(unc, pixel_mm, cyl.radius_mm)
            r, prof = nm.radial_profile(unc, pixel_mm, bin_mm=5.0)
            keep = r <= cyl.radius_mm
            measurements["water_cylinder"][sim]["profile_uncorrected"] = {"r_mm": r[keep].tolist(),
                                                                          "hu": prof[keep].tolist()}
        rows = evaluate_targets(measurements, dose_fraction, targets)
        result = {
            "tool": "python -m ctinv_utils simulator-check",
            "seed": seed, "git_commit": git_commit(), "versions": _versions(), "machine": machine(),
            "settings": {"dose_fraction": dose_fraction, "photons_full_dose": photons_full_dose, "size": size,
                         "fov_mm": fov_mm, "pixel_mm": pixel_mm, "noise_roi_px": roi,
                         "noise_free_photons_ours": NOISE_FREE_PHOTONS, "gecatsim": setup.describe(),
                         "gecatsim_calibration": {**cal, "mu_water_per_mm": mu_water},
                         "ours": scan_name, "targets": asdict(targets)},
            "measurements": measurements, "targets": rows, "all_pass": all(r["pass"] for r in rows),
            "timings_s": timings,
        }
        done("measuring", t0)
        t0 = step("writing")
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "simulator_check.json", result)
        fig = plot_check(result, images, phantoms)
        savefig(fig, out / "simulator_check")
        import matplotlib.pyplot as plt

        plt.close(fig)
        done("writing", t0)
    finally:
        bar.close()
    return result


# -- the figure --------------------------------------------------------------------------------------

def plot_check(result: dict, images: dict, phantoms: dict):
    """The side-by-side figure: abdomen slices at both doses (C=50/W=400 HU) and the noise-free water
    cylinder with and without the water correction (C=0/W=100 HU) from both simulators, the noise power
    spectra and the cylinder's radial profiles. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    g, o = images["gecatsim"], images["ours"]
    fig = plt.figure(figsize=(16, 12))
    grid = fig.add_gridspec(3, 4)
    panels = [(g["abdomen_full"], "gecatsim, full dose", (50, 400)), (o["abdomen_full"], "ours, full dose", (50, 400)),
              (g["abdomen_low"], "gecatsim, low dose", (50, 400)), (o["abdomen_low"], "ours, low dose", (50, 400)),
              (g["water_cylinder_uncorrected"], "gecatsim, noise-free, no water correction", (0, 100)),
              (o["water_cylinder_uncorrected"], "ours, noise-free, no water correction", (0, 100)),
              (g["water_cylinder_clean"], "gecatsim, noise-free, water-corrected", (0, 100)),
              (o["water_cylinder_clean"], "ours, noise-free, water-corrected", (0, 100))]
    for i, (img, title, (c, w)) in enumerate(panels):
        ax = fig.add_subplot(grid[i // 4, i % 4])
        im = ax.imshow(img, cmap="gray", vmin=c - w / 2, vmax=c + w / 2, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{title}\nC={c}/W={w} HU", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).set_label("HU", fontsize=8)
    m = result["measurements"]
    for j, ph in enumerate(("abdomen", "water_cylinder")):
        ax = fig.add_subplot(grid[2, j])
        for sim, style in (("gecatsim", "-"), ("ours", "--")):
            for dose, colour in (("full", "C0"), ("low", "C3")):
                n = m[ph][sim][f"nps_{dose}"]
                ax.plot(n["f_per_mm"], n["nps_hu2mm2"], style, color=colour, label=f"{sim}, {dose} dose")
        ax.set_yscale("log")
        ax.set_xlabel("spatial frequency (1/mm)")
        ax.set_ylabel("NPS (HU$^2$ mm$^2$)")
        ax.set_title(f"noise power spectrum, {ph.replace('_', ' ')}", fontsize=9)
        ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[2, 2])
    cyl = m["water_cylinder"]
    for sim, style in (("gecatsim", "-"), ("ours", "--")):
        ax.plot(cyl[sim]["profile_uncorrected"]["r_mm"], cyl[sim]["profile_uncorrected"]["hu"], style, color="C1",
                label=f"{sim}, no water correction")
        ax.plot(cyl[sim]["profile"]["r_mm"], cyl[sim]["profile"]["hu"], style, color="C2",
                label=f"{sim}, water-corrected")
    ax.set_xlabel("radius (mm)")
    ax.set_ylabel("mean CT number (HU)")
    ax.set_title("300 mm water cylinder, noise-free: radial profile", fontsize=9)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[2, 3])
    ax.set_axis_off()
    lines = [f"{'PASS' if r['pass'] else 'FAIL'}  {r['name']}: {r['ours']:.3g} vs {r['reference']:.3g} "
             f"(tol {r['tolerance']:.2g})" for r in result["targets"]]
    ax.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=6.5)
    s = result["settings"]
    fig.suptitle(f"Simulator check: ours ({s['ours']}) vs gecatsim {result['versions'].get('gecatsim')}; "
                 f"{s['photons_full_dose']:.3g} photons/channel/view, dose fraction {s['dose_fraction']}, "
                 f"{s['size']} px over {s['fov_mm']:g} mm, seed {result['seed']}", fontsize=10)
    fig.tight_layout()
    return fig


# -- command line ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """``python -m ctinv_utils simulator-check``: run the check; exit status 0 when every target passes,
    1 when one fails, 2 when gecatsim is not installed."""
    ap = argparse.ArgumentParser(prog="python -m ctinv_utils simulator-check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="simulator_check", help="output folder (default: simulator_check)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dose", type=float, default=0.25, help="low-dose fraction (default 0.25)")
    ap.add_argument("--photons", type=float, default=2.0e5,
                    help="photons per channel per view on the central channel in air at full dose (default 2e5)")
    ap.add_argument("--views", type=int, default=None, help="gecatsim's views per rotation (default: ours, 1152)")
    ap.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    ap.add_argument("--fov", type=float, default=380.0, help="field of view in mm (default 380)")
    ap.add_argument("--kernel", default="soft", choices=("soft", "standard", "R-L", "S-L"),
                    help="gecatsim's reconstruction kernel (default soft, close to our Hann-windowed ramp)")
    ap.add_argument("--workdir", default=None, help="keep gecatsim's files here (default: a temporary folder)")
    a = ap.parse_args(argv)
    try:
        import gecatsim  # noqa: F401
    except ImportError:
        print(f"error: the simulator check needs gecatsim; pip install gecatsim=={GECATSIM_VERSION} "
              "(1.6.9 does not build on Linux)", file=sys.stderr)
        return 2
    res = run_check(a.out, seed=a.seed, dose_fraction=a.dose, photons_full_dose=a.photons, views=a.views,
                    size=a.size, fov_mm=a.fov, kernel=a.kernel, workdir=a.workdir)
    for r in res["targets"]:
        print(f"{'PASS' if r['pass'] else 'FAIL'}  {r['name']}: ours {r['ours']:.4g}, reference {r['reference']:.4g}, "
              f"tolerance {r['tolerance']:.3g}")
    print(f"{Path(a.out) / 'simulator_check.json'}: {'all targets pass' if res['all_pass'] else 'some targets fail'}")
    return 0 if res["all_pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
