"""Round low-contrast lesions inserted into phantom slices before the simulated acquisition, each
with a lesion-free twin that carries the same noise realisation; a seeded, cached lesion data set.

A lesion of diameter ``D`` (mm) and contrast ``c`` (HU) is a disc painted into homogeneous tissue
with partial volume (16 x 16 sub-samples per pixel), then acquired like every slice
(:mod:`.acquisition`: Poisson counts at full dose, binomial thinning, log, FBP), so its noise is
physical. The twin is the FBP of the noisy line integrals minus the lesion's own (:func:`twin`): by
linearity ``x_lesion - x_free = s``, the lesion's noise-free reconstruction, exactly. ``s`` is the
disc blurred by the reconstruction's point-spread function: below 1 % of ``|c|`` beyond 3 px from
the lesion's edge (tested).

:func:`lesion_set` simulates, per (diameter, contrast) and realisation, the low- and full-dose slices
with the lesion, their twins, ``s``, the mask and centre, and independent lesion-free scans of each
realisation's slice; seeded per sample (the same for any number of workers) and cached.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from .. import atomic, settings
from ..errors import CTInvError
from ..paths import cache_dir
from ..progress import progress_bar
from ..provenance import config_hash, provenance, sha256_file
from .scanner.acquire import SCANNERS, Scanner, make_scanner
from .phantoms import FLAT_TISSUE, LABELS, Phantom
from .regions import DOSE_FRACTION, FOV_MM, REGIONS

ARRAYS_FILE = "lesions.npz"
DONE_MARKER = "lesions.json"
#: Sub-samples per pixel side for the lesion's partial-volume map.
SUPERSAMPLE = 16
#: Phantom slices tried per realisation before giving up on finding room for the ROI.
MAX_PLACEMENT_ATTEMPTS = 50


class LesionError(CTInvError):
    """Bad lesion settings, no room for a lesion, or a damaged lesion cache."""


@dataclass(frozen=True)
class LesionSetConfig:
    """Everything that determines a lesion data set (its hash keys the cache).

    The acquisition fields default to the quick preset's simulation; build from a preset with
    :meth:`from_simulation`. The default grid reaches 80 HU because at the quick preset's 25 % dose a
    5 mm lesion needs ~90 HU for d' = 2 (NPW), a 10 mm one ~33 HU; 3 mm lesions stay below d' = 2 on
    any low-contrast grid there. Simulation costs are on the documentation's performance notes."""

    diameters_mm: tuple = (3.0, 5.0, 7.0, 10.0)
    contrasts_hu: tuple = (-80.0, -40.0, -20.0, -10.0, 10.0, 20.0, 40.0, 80.0)
    realisations: int = 8            # phantom slices (with one lesion position each) per cell
    absent_per_realisation: int = 4  # independent lesion-free scans of each realisation's slice
    region: str = "abdomen"          # the lesion sits in FLAT_TISSUE[region] (liver, heart, white matter)
    roi_mm: float = 32.0             # side of the square observer ROI centred on the lesion
    margin_mm: float = 3.0           # tissue clearance around the ROI (edges blur a few px into it)
    image_size: int = 512
    n_views: int = 1152
    photons_full_dose: float = 2e5
    head_photon_factor: float = 4.0
    filter_name: str = "hann"
    scanner: str = "clinical"        # the scanner model of :mod:`.scanner.acquire`
    seed: int = 0
    version: int = 2                 # bump when the code changes its output

    def __post_init__(self):
        object.__setattr__(self, "diameters_mm", tuple(float(d) for d in self.diameters_mm))
        object.__setattr__(self, "contrasts_hu", tuple(float(c) for c in self.contrasts_hu))
        if self.region not in REGIONS:
            raise LesionError(f"unknown region {self.region!r}; choose one of {REGIONS}")
        if not self.diameters_mm or not self.contrasts_hu:
            raise LesionError("diameters_mm and contrasts_hu must each list at least one value")
        if min(self.diameters_mm) <= 0 or max(self.diameters_mm) > self.roi_mm / 2:
            raise LesionError(f"lesion diameters {self.diameters_mm} mm must be > 0 and at most half the "
                              f"ROI ({self.roi_mm} mm) so the annulus around them fits; raise roi_mm")
        if 0.0 in self.contrasts_hu or max(abs(c) for c in self.contrasts_hu) > 500:
            raise LesionError(f"contrasts_hu {self.contrasts_hu} must be non-zero low contrasts (|c| <= 500 HU)")
        if len(set(self.diameters_mm)) != len(self.diameters_mm) or len(set(self.contrasts_hu)) != len(self.contrasts_hu):
            raise LesionError("diameters_mm and contrasts_hu must not repeat a value")
        if self.realisations < 1 or self.absent_per_realisation < 0:
            raise LesionError("need realisations >= 1 and absent_per_realisation >= 0")
        if self.scanner not in SCANNERS:
            raise LesionError(f"unknown scanner {self.scanner!r}; choose one of {SCANNERS}")
        if self.image_size < 64 or self.n_views < 16 or self.photons_full_dose <= 0:
            raise LesionError(f"implausible acquisition in {self}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "LesionSetConfig":
        return settings.from_dict(cls, d, "lesion settings")

    @classmethod
    def from_simulation(cls, simulation, **overrides) -> "LesionSetConfig":
        """The acquisition of a :class:`~.simulated.SimulationConfig` (or its dict), lesion settings
        from ``overrides``."""
        sim = simulation.to_dict() if hasattr(simulation, "to_dict") else dict(simulation)
        keys = ("image_size", "n_views", "photons_full_dose", "head_photon_factor", "filter_name", "scanner")
        return cls.from_dict({**{k: sim[k] for k in keys if k in sim}, **overrides})

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @property
    def hash(self) -> str:
        return config_hash(self.to_dict())

    @property
    def pixel_mm(self) -> float:
        return FOV_MM[self.region] / self.image_size

    @property
    def roi_px(self) -> int:
        """Odd ROI side in pixels (the lesion centre is the ROI's centre pixel)."""
        return 2 * int(round(self.roi_mm / self.pixel_mm / 2)) + 1

    @property
    def photons(self) -> float:
        return self.photons_full_dose * (self.head_photon_factor if self.region == "head" else 1.0)

    def make_scanner(self) -> Scanner:
        """The scanner model of these settings."""
        return make_scanner(self.scanner, n_views=self.n_views, filter_name=self.filter_name)


# -- geometry --------------------------------------------------------------------------------------

def disc_coverage(shape: tuple[int, int], center_px, radius_px: float, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """Fraction of each pixel covered by a disc, (H, W) float64 in [0, 1].

    ``center_px`` = (row, col) in pixel coordinates (pixel centres at integers). Computed with
    ``supersample`` x ``supersample`` points per pixel inside the disc's bounding box."""
    cov = np.zeros(shape, dtype=np.float64)
    r0, c0 = float(center_px[0]), float(center_px[1])
    lo_r, hi_r = max(int(np.floor(r0 - radius_px)) - 1, 0), min(int(np.ceil(r0 + radius_px)) + 2, shape[0])
    lo_c, hi_c = max(int(np.floor(c0 - radius_px)) - 1, 0), min(int(np.ceil(c0 + radius_px)) + 2, shape[1])
    off = (np.arange(supersample) + 0.5) / supersample - 0.5
    rr = (np.arange(lo_r, hi_r)[:, None] + off[None, :]).ravel()
    cc = (np.arange(lo_c, hi_c)[:, None] + off[None, :]).ravel()
    inside = (rr[:, None] - r0) ** 2 + (cc[None, :] - c0) ** 2 <= radius_px ** 2
    cov[lo_r:hi_r, lo_c:hi_c] = inside.reshape(hi_r - lo_r, supersample, hi_c - lo_c, supersample).mean(axis=(1, 3))
    return cov


def lesion_mask(shape, center_px, radius_px: float) -> np.ndarray:
    """The lesion's pixels: those at least half covered by the disc, (H, W) bool."""
    return disc_coverage(shape, center_px, radius_px) >= 0.5


def insert_lesion(image_hu: np.ndarray, center_px, diameter_mm: float, contrast_hu: float,
                  pixel_mm: float) -> np.ndarray:
    """The slice with a lesion painted in (partial volume): ``image + contrast * coverage``, float32."""
    cov = disc_coverage(image_hu.shape, center_px, diameter_mm / 2 / pixel_mm)
    return (np.asarray(image_hu, dtype=np.float64) + contrast_hu * cov).astype(np.float32)


def px_to_mm(center_px, size: int, pixel_mm: float) -> np.ndarray:
    """(row, col) pixel coordinates -> (x, y) in mm from the image centre, x right, y down (the
    phantoms' convention)."""
    c = np.asarray(center_px, dtype=np.float64)
    return np.stack([c[..., 1], c[..., 0]], axis=-1) * pixel_mm - (size - 1) / 2 * pixel_mm


def place_in_tissue(labels: np.ndarray, tissue: str, half_px: int, margin_px: int,
                    rng: np.random.Generator) -> tuple[int, int] | None:
    """A pixel whose (2 half_px + 1)^2 square plus ``margin_px`` lies wholly in ``tissue`` on the
    label map (chessboard distance to any other label > half_px + margin_px), drawn uniformly among
    all such pixels; None when there is none."""
    inside = labels == LABELS[tissue]
    dist = ndimage.distance_transform_cdt(np.pad(inside, 1), metric="chessboard")[1:-1, 1:-1]
    rows, cols = np.nonzero(dist >= half_px + margin_px + 1)
    if len(rows) == 0:
        return None
    k = int(rng.integers(len(rows)))
    return int(rows[k]), int(cols[k])


def crop(images: np.ndarray, center_px, size: int) -> np.ndarray:
    """Square ``size`` x ``size`` crop(s) centred on the pixel ``center_px`` = (row, col) of the last
    two axes. Raises when the crop leaves the image."""
    half = size // 2
    r, c = int(center_px[0]), int(center_px[1])
    h, w = images.shape[-2:]
    if r - half < 0 or c - half < 0 or r + half >= h or c + half >= w:
        raise LesionError(f"a {size} px ROI around ({r}, {c}) leaves the {h}x{w} image; use a smaller ROI")
    return images[..., r - half:r + half + 1, c - half:c + half + 1]


# -- simulation ----------------------------------------------------------------------------------

def simulate_lesion_pair(scanner: Scanner, clean_line_integrals: np.ndarray, lesion_line_integrals: np.ndarray,
                         pixel_mm: float, size: int, photons: float, dose_fraction: float,
                         rng: np.random.Generator, signal_hu: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One acquisition of a lesion-present slice and its lesion-free twin (same noise realisation).

    ``clean_line_integrals``: noise-free line integrals of the lesion-free slice
    (``scanner.line_integrals``); ``lesion_line_integrals``: the lesion's own
    (``scanner.delta_line_integrals`` of contrast x coverage), in the scanner's layout.
    ``signal_hu``: the lesion's noise-free reconstruction if already computed.
    Returns ``low_lesion, full_lesion, low_free, full_free, signal``, each (size, size) float32 HU,
    with ``*_lesion - *_free == signal`` up to float32 rounding."""
    full_q, low_q = scanner.measure(clean_line_integrals + lesion_line_integrals, photons, dose_fraction, rng)
    if signal_hu is None:
        signal_hu = scanner.reconstruct_delta(lesion_line_integrals, pixel_mm, size)
    signal = np.asarray(signal_hu).astype(np.float32)
    low = scanner.reconstruct(low_q, pixel_mm, size)
    full = scanner.reconstruct(full_q, pixel_mm, size)
    return dict(low_lesion=low, full_lesion=full, low_free=twin(low, signal), full_free=twin(full, signal),
                signal=signal)


def twin(lesion_hu: np.ndarray, signal_hu: np.ndarray) -> np.ndarray:
    """The lesion-free twin ``FBP(q - dp) = FBP(q) - FBP(dp)``, float32 (computed in float64).

    ``q``: the noisy log-converted line integrals of the lesion scan; ``dp``: the lesion's own line
    integrals. The twin is the lesion-free scan with the *same* noise realisation in the log domain.
    Chosen over "the same uniform random numbers through both counts", because integer counts drawn
    from two slightly different means differ by 0 or 1 photon at random on the lesion's rays, which
    back-projects into streaks far from the lesion. What it approximates: on the rays through the
    lesion its noise variance is ``exp(dp)`` times the lesion-free scan's (at most 1.0098 for 10 mm at
    50 HU: 0.5 % in noise std, on those rays only)."""
    return (np.asarray(lesion_hu, dtype=np.float64) - np.asarray(signal_hu, dtype=np.float64)).astype(np.float32)


def _choose_slice(cfg: LesionSetConfig, r: int):
    """Realisation ``r``'s phantom (a new patient), slice position and lesion centre."""
    rng = np.random.default_rng([cfg.seed, r, 0])
    half, margin = cfg.roi_px // 2, int(np.ceil(cfg.margin_mm / cfg.pixel_mm))
    tissue = FLAT_TISSUE[cfg.region]
    for _ in range(MAX_PLACEMENT_ATTEMPTS):
        patient_seed, z = int(rng.integers(2**31)), float(rng.uniform(0.2, 0.8))
        hu, labels, pixel_mm = Phantom(cfg.region, patient_seed).slice(z, cfg.image_size)
        centre = place_in_tissue(labels, tissue, half, margin, rng)
        if centre is not None:
            return patient_seed, z, hu, labels, pixel_mm, centre
    raise LesionError(f"no room for a {cfg.roi_mm} mm ROI plus {cfg.margin_mm} mm margin in the {tissue} of "
                      f"{MAX_PLACEMENT_ATTEMPTS} {cfg.region} phantom slices; lower roi_mm or margin_mm")


def _simulate_realisation(args) -> dict:
    cfg, r = args
    patient_seed, z, hu, labels, pixel_mm, centre = _choose_slice(cfg, r)
    size, dose, scanner = cfg.image_size, DOSE_FRACTION[cfg.region], cfg.make_scanner()
    clean = scanner.line_integrals(hu, labels, pixel_mm)
    cells = {}
    for i_d, diameter in enumerate(cfg.diameters_mm):
        unit = scanner.delta_line_integrals(disc_coverage(hu.shape, centre, diameter / 2 / pixel_mm), pixel_mm)
        unit_signal = scanner.reconstruct_delta(unit, pixel_mm, size)  # per HU of contrast
        for i_c, contrast in enumerate(cfg.contrasts_hu):
            rng = np.random.default_rng([cfg.seed, r, 1, i_d, i_c])
            pair = simulate_lesion_pair(scanner, clean, contrast * unit, pixel_mm, size, cfg.photons, dose, rng,
                                        signal_hu=contrast * unit_signal)
            cells[i_d, i_c] = (pair["low_lesion"], pair["full_lesion"], pair["signal"])
    absent_low, absent_full = [], []
    for a in range(cfg.absent_per_realisation):
        full_q, low_q = scanner.measure(clean, cfg.photons, dose, np.random.default_rng([cfg.seed, r, 2, a]))
        absent_low.append(scanner.reconstruct(low_q, pixel_mm, size))
        absent_full.append(scanner.reconstruct(full_q, pixel_mm, size))
    empty = np.zeros((0, size, size), np.float32)
    return dict(r=r, patient_seed=patient_seed, z=z, hu=hu, labels=labels, pixel_mm=pixel_mm, centre=centre,
                cells=cells, absent_low=np.stack(absent_low) if absent_low else empty,
                absent_full=np.stack(absent_full) if absent_full else empty)


def build_arrays(cfg: LesionSetConfig, workers: int | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Simulate the whole set (see the module docstring) -> the arrays stored in the cache.

    Samples are ordered by (diameter, contrast, realisation). Same result for any ``workers``."""
    jobs = [(cfg, r) for r in range(cfg.realisations)]
    workers = max(1, min(len(jobs), workers or os.cpu_count() or 1))
    bar = dict(total=len(jobs), desc="simulating lesion realisations", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(progress_bar(pool.map(_simulate_realisation, jobs), **bar))
    else:
        results = [_simulate_realisation(j) for j in progress_bar(jobs, **bar)]
    d, c, rr = np.meshgrid(np.arange(len(cfg.diameters_mm)), np.arange(len(cfg.contrasts_hu)),
                           np.arange(cfg.realisations), indexing="ij")
    d, c, rr = d.ravel(), c.ravel(), rr.ravel()
    low, full, signal = (np.stack([results[r]["cells"][i, j][k] for i, j, r in zip(d, c, rr)]) for k in range(3))
    return dict(
        diameter_mm=np.asarray(cfg.diameters_mm)[d], contrast_hu=np.asarray(cfg.contrasts_hu)[c],
        realisation=rr.astype(np.int64), center_px=np.asarray([results[r]["centre"] for r in rr], dtype=np.int64),
        low_lesion=low, full_lesion=full, signal=signal,
        low_absent=np.stack([res["absent_low"] for res in results]),
        full_absent=np.stack([res["absent_full"] for res in results]),
        phantom_hu=np.stack([res["hu"] for res in results]), labels=np.stack([res["labels"] for res in results]),
        patient_seed=np.asarray([res["patient_seed"] for res in results], dtype=np.int64),
        z=np.asarray([res["z"] for res in results]), pixel_mm=np.float64(results[0]["pixel_mm"]),
    )


# -- the data set --------------------------------------------------------------------------------

class LesionSet:
    """A lesion data set in HU. N samples ordered by (diameter, contrast, realisation); R realisations.

    Per sample: ``diameter_mm, contrast_hu, realisation`` (N,), ``center_px`` (N, 2) int (row, col),
    ``center_mm`` (N, 2) (x right, y down from the image centre), ``low_lesion, full_lesion,
    low_free, full_free, signal`` (N, H, W) float32 (``*_lesion - *_free == signal``, the lesion's
    noise-free FBP), ``masks`` (N, H, W) bool. Per realisation: ``low_absent, full_absent``
    (R, A, H, W) independent lesion-free scans, ``phantom_hu`` (R, H, W) (lesion-free),
    ``labels`` (R, H, W), ``patient_seed, z`` (R,)."""

    def __init__(self, arrays: dict, config: LesionSetConfig):
        self.config = config
        self.pixel_mm = float(arrays["pixel_mm"])
        for k in ("diameter_mm", "contrast_hu", "realisation", "center_px", "low_lesion", "full_lesion", "signal",
                  "low_absent", "full_absent", "phantom_hu", "labels", "patient_seed", "z"):
            setattr(self, k, np.asarray(arrays[k]))
        self.low_free = twin(self.low_lesion, self.signal)
        self.full_free = twin(self.full_lesion, self.signal)
        self._masks = None

    def __len__(self) -> int:
        return len(self.diameter_mm)

    def __repr__(self) -> str:
        return (f"LesionSet({len(self)} samples: diameters {list(self.config.diameters_mm)} mm x contrasts "
                f"{list(self.config.contrasts_hu)} HU x {self.config.realisations} realisations, "
                f"{self.config.absent_per_realisation} lesion-free scans per realisation, "
                f"{self.image_size} px at {self.pixel_mm:.3f} mm, ROI {self.roi_px} px)")

    @property
    def image_size(self) -> int:
        return int(self.low_lesion.shape[-1])

    @property
    def diameters_mm(self) -> np.ndarray:
        return np.asarray(self.config.diameters_mm)

    @property
    def contrasts_hu(self) -> np.ndarray:
        return np.asarray(self.config.contrasts_hu)

    @property
    def roi_px(self) -> int:
        return self.config.roi_px

    @property
    def radius_px(self) -> np.ndarray:
        return self.diameter_mm / 2 / self.pixel_mm

    @property
    def center_mm(self) -> np.ndarray:
        return px_to_mm(self.center_px, self.image_size, self.pixel_mm)

    @property
    def masks(self) -> np.ndarray:
        """Lesion masks (pixels at least half covered), (N, H, W) bool."""
        if self._masks is None:
            shape = self.low_lesion.shape[-2:]
            self._masks = np.stack([lesion_mask(shape, c, r) for c, r in zip(self.center_px, self.radius_px)])
        return self._masks

    def cell(self, diameter_mm: float, contrast_hu: float) -> np.ndarray:
        """Indices of the samples of one (diameter, contrast) cell, ordered by realisation."""
        idx = np.nonzero(np.isclose(self.diameter_mm, diameter_mm) & np.isclose(self.contrast_hu, contrast_hu))[0]
        if len(idx) == 0:
            raise LesionError(f"no cell ({diameter_mm} mm, {contrast_hu} HU); diameters {list(self.config.diameters_mm)}, "
                              f"contrasts {list(self.config.contrasts_hu)}")
        return idx

    def rois(self, images: np.ndarray, size: int | None = None) -> np.ndarray:
        """ROIs centred on each sample's lesion: ``images`` (N, H, W) (e.g. ``low_lesion`` or a
        denoiser's output on it) -> (N, size, size), default ``roi_px``."""
        images = np.asarray(images)
        if images.shape[0] != len(self):
            raise LesionError(f"expected one image per sample ({len(self)}), got {images.shape[0]}")
        return np.stack([crop(im, c, size or self.roi_px) for im, c in zip(images, self.center_px)])

    def absent_rois(self, images: np.ndarray, size: int | None = None) -> np.ndarray:
        """ROIs of the lesion-free scans at their realisation's lesion position: ``images``
        (R, A, H, W) (e.g. ``low_absent``) -> (R, A, size, size)."""
        images = np.asarray(images)
        centres = self.realisation_center_px
        if images.shape[0] != len(centres):
            raise LesionError(f"expected images of {len(centres)} realisations, got {images.shape[0]}")
        return np.stack([crop(im, c, size or self.roi_px) for im, c in zip(images, centres)])

    @property
    def realisation_center_px(self) -> np.ndarray:
        """Lesion centre of each realisation, (R, 2) (row, col)."""
        out = np.zeros((len(self.patient_seed), 2), dtype=np.int64)
        out[self.realisation] = self.center_px
        return out

    def roi_masks(self, size: int | None = None) -> np.ndarray:
        """Lesion masks cropped like :meth:`rois`, (N, size, size) bool."""
        return self.rois(self.masks, size)

    def roi_annuli(self, inner_mm: float = 3.0, outer_mm: float = 9.0, size: int | None = None) -> np.ndarray:
        """Background annuli around each lesion: pixels more than ``inner_mm`` and at most
        ``outer_mm`` from the lesion mask's edge, cropped like :meth:`rois`, (N, size, size) bool."""
        return annuli(self.roi_masks(size), inner_mm / self.pixel_mm, outer_mm / self.pixel_mm)

    def summary(self) -> list[dict]:
        """One row per sample: index, diameter, contrast, realisation, centre in px and mm, patient, z."""
        mm = self.center_mm
        return [dict(index=i, diameter_mm=float(self.diameter_mm[i]), contrast_hu=float(self.contrast_hu[i]),
                     realisation=int(self.realisation[i]), center_px=[int(v) for v in self.center_px[i]],
                     center_mm=[round(float(v), 2) for v in mm[i]],
                     patient_seed=int(self.patient_seed[self.realisation[i]]), z=float(self.z[self.realisation[i]]))
                for i in range(len(self))]


def annuli(masks: np.ndarray, inner_px: float, outer_px: float) -> np.ndarray:
    """Pixels more than ``inner_px`` and at most ``outer_px`` (Euclidean) from each mask, same shape, bool."""
    masks = np.asarray(masks, dtype=bool)
    flat = masks.reshape(-1, *masks.shape[-2:])
    out = np.stack([(d > inner_px) & (d <= outer_px) for d in (ndimage.distance_transform_edt(~m) for m in flat)])
    return out.reshape(masks.shape)


def lesion_set_dir(cfg: LesionSetConfig) -> Path:
    return cache_dir() / "lesions" / cfg.hash


def lesion_set(cfg: LesionSetConfig | dict | None = None, workers: int | None = None,
               progress: bool = True) -> LesionSet:
    """The lesion data set for ``cfg``, from the cache or simulated on first use (see the module
    docstring). The folder is built under a temporary name and renamed when complete; its JSON
    marker records the arrays' SHA-256, checked on every load."""
    if not isinstance(cfg, LesionSetConfig):
        cfg = LesionSetConfig.from_dict(cfg)
    final = lesion_set_dir(cfg)
    if not (final / DONE_MARKER).is_file():
        with atomic.atomic_directory(final) as tmp:
            t0 = time.perf_counter()
            arrays = build_arrays(cfg, workers, progress)
            seconds = time.perf_counter() - t0
            np.savez(tmp / ARRAYS_FILE, **arrays)
            atomic.write_json(tmp / DONE_MARKER, provenance(
                seed=cfg.seed, config=cfg.to_dict(), sha256=sha256_file(tmp / ARRAYS_FILE),
                seconds=round(seconds, 2), n_samples=int(len(arrays["diameter_mm"])),
                realisations=[dict(patient_seed=int(s), z=float(z), center_px=[int(v) for v in c],
                                   center_mm=[round(float(v), 2) for v in px_to_mm(c, cfg.image_size, cfg.pixel_mm)])
                              for s, z, c in zip(arrays["patient_seed"], arrays["z"],
                                                 _realisation_centres(arrays))]))
    return load_lesion_set(final, cfg)


def _realisation_centres(arrays) -> np.ndarray:
    out = np.zeros((len(arrays["patient_seed"]), 2), dtype=np.int64)
    out[arrays["realisation"]] = arrays["center_px"]
    return out


def load_lesion_set(folder: str | Path, cfg: LesionSetConfig | None = None) -> LesionSet:
    """Load a cached lesion set, checking the arrays against the SHA-256 in its marker."""
    folder = Path(folder)
    try:
        record = json.loads((folder / DONE_MARKER).read_text())
    except (OSError, ValueError) as e:
        raise LesionError(f"{folder} is not a complete lesion set ({e}); delete the folder and call lesion_set() "
                          "again") from None
    if sha256_file(folder / ARRAYS_FILE) != record.get("sha256"):
        raise LesionError(f"{folder / ARRAYS_FILE} does not match the SHA-256 in {DONE_MARKER} (damaged cache); "
                          "delete the folder and call lesion_set() again")
    cfg = cfg or LesionSetConfig.from_dict(record["config"])
    with np.load(folder / ARRAYS_FILE) as f:
        return LesionSet({k: f[k] for k in f.files}, cfg)
