"""The embedded default data set: simulated paired low/full-dose CT, cached on disk by config.

Phantoms (``phantoms``) go through the simulated acquisition (``acquisition``) and are written as
a DICOM tree in the TCIA layout, so the simulated and the real data share one loader. The phantom
label maps are stored beside it (``phantom_labels.npz``) for checks against ground truth.
"""

from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import atomic, settings
from .acquisition import simulate_pair
from .dicom_io import write_patient
from ..paths import cache_dir
from ..progress import progress_bar
from ..provenance import config_hash, provenance
from .phantoms import Phantom
from .regions import DOSE_FRACTION, PREFIX_OF_REGION, REGIONS

DONE_MARKER = "simulation.json"


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines the simulated data set (its hash keys the cache)."""

    image_size: int = 256            # pixels per side
    n_views: int = 360               # parallel-beam views over 180 degrees
    photons_full_dose: float = 6e4   # incident photons per ray at full dose (body protocols)
    head_photon_factor: float = 4.0  # head protocols run at ~4x the dose of body ones (CTDIvol ~55 vs ~13 mGy)
    patients_per_region: int = 4
    min_slices: int = 3              # slices per patient drawn uniformly in [min, max]:
    max_slices: int = 8              # unequal counts make patient-balanced sampling matter
    slice_spacing_mm: float = 5.0
    filter_name: str = "hann"
    seed: int = 0
    version: int = 1                 # bump when the simulation code changes its output

    def __post_init__(self):
        if self.image_size < 64 or self.n_views < 16 or self.photons_full_dose <= 0 or self.head_photon_factor <= 0:
            raise ValueError(f"implausible simulation config {self}")
        if not 1 <= self.min_slices <= self.max_slices:
            raise ValueError("need 1 <= min_slices <= max_slices")

    @classmethod
    def from_dict(cls, d: dict | None) -> "SimulationConfig":
        return settings.from_dict(cls, d, "simulation settings")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def hash(self) -> str:
        return config_hash(self.to_dict())


def patient_plan(cfg: SimulationConfig) -> list[dict]:
    """IDs, regions, phantom seeds and slice counts of the simulated patients (deterministic)."""
    rng = np.random.default_rng(cfg.seed)
    plan = []
    for region in REGIONS:
        for k in range(cfg.patients_per_region):
            plan.append(dict(patient_id=f"{PREFIX_OF_REGION[region]}{k + 1:03d}", region=region,
                             phantom_seed=int(rng.integers(2**31)),
                             n_slices=int(rng.integers(cfg.min_slices, cfg.max_slices + 1))))
    return plan


def _simulate_patient(args) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, float]:
    cfg, p = args
    phantom = Phantom(p["region"], p["phantom_seed"])
    rng = np.random.default_rng([cfg.seed, p["phantom_seed"]])  # order-independent per patient
    photons = cfg.photons_full_dose * (cfg.head_photon_factor if p["region"] == "head" else 1.0)
    lows, fulls, labels = [], [], []
    n = p["n_slices"]
    for i in range(n):
        z = (i + 0.5) / n
        hu, lab, pixel_mm = phantom.slice(z, cfg.image_size)
        low, full = simulate_pair(hu, pixel_mm, photons, DOSE_FRACTION[p["region"]],
                                  cfg.n_views, rng, cfg.filter_name)
        lows.append(low), fulls.append(full), labels.append(lab)
    return p, np.stack(lows), np.stack(fulls), np.stack(labels), pixel_mm


def generate(cfg: SimulationConfig, out_root: str | Path, workers: int | None = None,
             progress: bool = True) -> Path:
    """Simulate every patient of ``cfg`` and write the DICOM tree under ``out_root``."""
    out_root = Path(out_root)
    plan = patient_plan(cfg)
    workers = workers or min(len(plan), os.cpu_count() or 1)
    labels_out = {}
    t0 = time.perf_counter()
    jobs = [(cfg, p) for p in plan]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = pool.map(_simulate_patient, jobs)
            results = list(progress_bar(results, total=len(jobs), desc="simulating patients", disable=not progress))
    else:
        results = [_simulate_patient(j) for j in progress_bar(jobs, desc="simulating patients", disable=not progress)]
    for p, low, full, lab, pixel_mm in results:
        z = np.arange(p["n_slices"]) * cfg.slice_spacing_mm
        write_patient(out_root, p["patient_id"], low, full, z, pixel_mm, layout="tcia")
        labels_out[p["patient_id"]] = lab
    np.savez_compressed(out_root / "phantom_labels.npz", **labels_out)
    atomic.write_json(out_root / DONE_MARKER, provenance(
        seed=cfg.seed, config=cfg.to_dict(), patients=plan,
        seconds=round(time.perf_counter() - t0, 2)))
    return out_root


def simulated_data_root(cfg: SimulationConfig | dict | None = None, progress: bool = True) -> Path:
    """Path of the cached simulated data set for ``cfg``; generates it on first use.

    The tree is built in a temporary folder and renamed when complete, so an interrupted run
    leaves no half-written cache behind."""
    if not isinstance(cfg, SimulationConfig):
        cfg = SimulationConfig.from_dict(cfg)
    final = cache_dir() / "simulated" / cfg.hash
    if (final / DONE_MARKER).is_file():
        return final
    with atomic.atomic_directory(final) as tmp:
        generate(cfg, tmp, progress=progress)
    return final


def load_phantom_labels(root: str | Path) -> dict[str, np.ndarray]:
    """Phantom label maps ``{patient_id: (S, H, W) uint8}`` of a simulated data set."""
    with np.load(Path(root) / "phantom_labels.npz") as f:
        return {k: f[k] for k in f.files}
