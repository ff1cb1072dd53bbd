"""Paired low/full-dose slices in HU, from real DICOM or the embedded simulated data."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .dicom_io import PatientSeries, discover_patients, read_slice_hu
from ..paths import DATA_ENV
from .simulated import simulated_data_root


class PairedCTData:
    """Paired slices of several patients. ``slice_hu(p, s)`` -> (low_hu, full_hu), each (H, W)
    float32 in HU. Slices are read lazily; the most recently used pairs stay in memory up to
    ``cache_bytes`` (the real data set is ~30 GB as float32, far more than fits)."""

    def __init__(self, patients: list[PatientSeries], source: str, root: Path | None = None,
                 cache_bytes: int = 2 * 1024**3):
        if not patients:
            raise ValueError("PairedCTData needs at least one patient")
        self.patients = list(patients)
        self.source = source
        self.root = root
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.patients)

    @property
    def n_slices(self) -> np.ndarray:
        return np.array([p.n_slices for p in self.patients])

    @property
    def patient_ids(self) -> list[str]:
        return [p.patient_id for p in self.patients]

    def index_of(self, patient_id: str) -> int:
        return self.patient_ids.index(patient_id)

    def slice_hu(self, patient: int, slice_index: int) -> tuple[np.ndarray, np.ndarray]:
        key = (patient, slice_index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        p = self.patients[patient]
        pair = (read_slice_hu(p.low_files[slice_index]), read_slice_hu(p.full_files[slice_index]))
        size = pair[0].nbytes + pair[1].nbytes
        if size <= self.cache_bytes:
            self._cache[key] = pair
            self._cached_bytes += size
            while self._cached_bytes > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached_bytes -= old[0].nbytes + old[1].nbytes
        return pair

    def subset(self, patient_ids) -> "PairedCTData":
        wanted = set(patient_ids)
        return PairedCTData([p for p in self.patients if p.patient_id in wanted], self.source, self.root,
                            self.cache_bytes)

    def summary(self) -> list[dict]:
        """One row per region: patients, slices, dose fraction."""
        rows = []
        for region in sorted({p.region for p in self.patients}):
            ps = [p for p in self.patients if p.region == region]
            rows.append(dict(region=region, patients=len(ps), slices=sum(p.n_slices for p in ps),
                             dose_fraction=ps[0].dose_fraction))
        return rows


def load_data(data_path: str | Path | None = None, simulation: dict | None = None,
              on_bad_file: str = "raise", progress: bool = True) -> PairedCTData:
    """Real data from ``data_path`` (or ``$CTINV_DATA``); else the simulated data set described by
    ``simulation`` (a :class:`SimulationConfig` dict), generated and cached on first use."""
    data_path = data_path or os.environ.get(DATA_ENV) or None
    if data_path:
        root = Path(data_path).expanduser()
        return PairedCTData(discover_patients(root, on_bad_file), source=f"TCIA/AAPM DICOM at {root}", root=root)
    root = simulated_data_root(simulation, progress=progress)
    return PairedCTData(discover_patients(root), source="simulated (embedded default)", root=root)
