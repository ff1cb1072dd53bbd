"""Paired low/full-dose slices in HU, from real DICOM or the embedded simulated data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .dicom_io import PatientSeries, discover_patients, read_slice_hu
from .paths import DATA_ENV
from .simulated_data import simulated_data_root


class PairedCTData:
    """Paired slices of several patients. ``slice_hu(p, s)`` -> (low_hu, full_hu), each (H, W)
    float32 in HU. Slices are read lazily and kept in memory once read (``cache=True``)."""

    def __init__(self, patients: list[PatientSeries], source: str, root: Path | None = None,
                 cache: bool = True):
        if not patients:
            raise ValueError("PairedCTData needs at least one patient")
        self.patients = list(patients)
        self.source = source
        self.root = root
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

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
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        p = self.patients[patient]
        pair = (read_slice_hu(p.low_files[slice_index]), read_slice_hu(p.full_files[slice_index]))
        if self._cache is not None:
            self._cache[key] = pair
        return pair

    def subset(self, patient_ids) -> "PairedCTData":
        keep = [p for p in self.patients if p.patient_id in set(patient_ids)]
        return PairedCTData(keep, self.source, self.root, cache=self._cache is not None)

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
