"""DICOM in and out, in the layouts of the Mayo low-dose CT data.

Reading: discover patients under a root in the TCIA v3 layout of "LDCT-and-Projection-data"
``<root>/LDCT-and-Projection-data/<ID>/<study>/<n>-Full Dose Images-<uid>/1-<idx>.dcm`` (and its
``Low Dose Images`` twin) or the AAPM 2016 Grand Challenge layout ``<root>/<ID>/full_1mm/`` and
``<root>/<ID>/quarter_1mm/``; pair low/full slices by table position; apply RescaleSlope /
RescaleIntercept to get HU. Writing: the simulator writes the TCIA layout, so one loader serves both.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ..errors import DataRootError, DicomFileError, DicomPairingError, DicomSeriesError
from .regions import DOSE_FRACTION, REGION_OF_PREFIX

TCIA_FOLDER = "LDCT-and-Projection-data"
PATIENT_ID = re.compile(r"^[CLN]\d{3}$")
FULL_TCIA, LOW_TCIA = "Full Dose Images", "Low Dose Images"
AAPM_PAIRS = (("full_1mm", "quarter_1mm"), ("full_3mm", "quarter_3mm"))
BAD_FILE_POLICIES = ("raise", "skip")
LAYOUT_HINT = (f"expected the TCIA layout <root>/{TCIA_FOLDER}/<ID>/<study>/<n>-{FULL_TCIA}-<uid>/ "
               "or the AAPM 2016 layout <root>/<ID>/full_1mm/ (see README: Data)")


@dataclass
class PatientSeries:
    """The paired slices of one patient. Files are sorted by table position ``z_mm``."""

    patient_id: str
    region: str
    dose_fraction: float
    low_files: list[Path]
    full_files: list[Path]
    z_mm: np.ndarray
    pixel_mm: float
    layout: str = "tcia"
    skipped: list[str] = field(default_factory=list)

    @property
    def n_slices(self) -> int:
        return len(self.full_files)


# ---------------------------------------------------------------------------------------------
# reading
def _read(path: Path, pixels: bool) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for corrupt files
        raise DicomFileError(f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc}); "
                             "re-download it, or pass on_bad_file='skip' to leave it out") from exc
    modality = getattr(ds, "Modality", None)
    if modality != "CT":
        raise DicomFileError(f"{path}: DICOM modality is {modality!r}, not 'CT'; remove the file from "
                             "the series, or pass on_bad_file='skip' to leave it out")
    if pixels and "PixelData" not in ds:
        raise DicomFileError(f"{path}: CT DICOM without pixel data; re-download it, or pass "
                             "on_bad_file='skip'")
    return ds


def _z_of(ds: pydicom.Dataset, path: Path) -> float:
    if "ImagePositionPatient" in ds:
        return float(ds.ImagePositionPatient[2])
    if "SliceLocation" in ds:
        return float(ds.SliceLocation)
    raise DicomFileError(f"{path}: neither ImagePositionPatient nor SliceLocation is set, so the slice "
                         "cannot be paired by position; re-export the series with positions")


def read_slice_hu(path: str | Path) -> np.ndarray:
    """One CT slice in HU, (H, W) float32: stored values * RescaleSlope + RescaleIntercept."""
    path = Path(path)
    ds = _read(path, pixels=True)
    try:
        stored = ds.pixel_array
    except Exception as exc:  # noqa: BLE001
        raise DicomFileError(f"{path}: pixel data cannot be decoded ({exc}); re-download the file") from exc
    slope = float(getattr(ds, "RescaleSlope", 1.0))
    intercept = float(getattr(ds, "RescaleIntercept", 0.0))
    return (stored.astype(np.float32) * slope + intercept).astype(np.float32)


def _series_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _headers(files: list[Path], on_bad_file: str, skipped: list[str]):
    out = []
    for f in files:
        try:
            ds = _read(f, pixels=False)
            out.append((_z_of(ds, f), f, ds))
        except DicomFileError as exc:
            if on_bad_file == "raise":
                raise
            warnings.warn(f"skipping {exc}", stacklevel=3)
            skipped.append(str(f))
    return out


def pair_series(patient_id: str, low_files: list[Path], full_files: list[Path],
                on_bad_file: str = "raise"):
    """Pair low/full slices by table position. Returns (low_files, full_files, z_mm, pixel_mm,
    skipped); all sorted by z. With ``on_bad_file='raise'`` an unpaired slice is an error; with
    ``'skip'`` it is dropped with a warning."""
    skipped: list[str] = []
    low = _headers(low_files, on_bad_file, skipped)
    full = _headers(full_files, on_bad_file, skipped)
    if not low or not full:
        raise DicomSeriesError(f"patient {patient_id}: no readable slices in the "
                               f"{'low' if not low else 'full'}-dose series; check the download")
    key = lambda z: round(z * 100)  # noqa: E731 - positions match to 0.01 mm
    full_by_z = {key(z): (z, f, ds) for z, f, ds in full}
    low_by_z = {key(z): (z, f, ds) for z, f, ds in low}
    common = sorted(set(full_by_z) & set(low_by_z))
    unpaired = len(low_by_z) + len(full_by_z) - 2 * len(common)
    if unpaired:
        msg = (f"patient {patient_id}: {len(low)} low-dose and {len(full)} full-dose slices, "
               f"{unpaired} without a twin at the same table position")
        if on_bad_file == "raise" or not common:
            raise DicomPairingError(msg + "; re-download the patient, or pass on_bad_file='skip' to "
                                    "keep only the paired slices")
        warnings.warn(msg + "; keeping the paired slices only", stacklevel=2)
    ds0 = full_by_z[common[0]][2]
    pixel_mm = float(ds0.PixelSpacing[0]) if "PixelSpacing" in ds0 else float("nan")
    return ([low_by_z[k][1] for k in common], [full_by_z[k][1] for k in common],
            np.array([full_by_z[k][0] for k in common]), pixel_mm, skipped)


def _find_tcia_series(patient_dir: Path) -> tuple[Path | None, Path | None]:
    low = full = None
    for series in sorted(patient_dir.glob("*/*")):
        if series.is_dir() and FULL_TCIA in series.name:
            full = series
        elif series.is_dir() and LOW_TCIA in series.name:
            low = series
    return low, full


def discover_patients(root: str | Path, on_bad_file: str = "raise") -> list[PatientSeries]:
    """All patients under ``root`` (TCIA v3 or AAPM 2016 layout), paired and sorted by ID."""
    if on_bad_file not in BAD_FILE_POLICIES:
        raise ValueError(f"on_bad_file must be one of {BAD_FILE_POLICIES}, not {on_bad_file!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataRootError(f"data root {root} does not exist; pass --data PATH (or set CTINV_DATA) "
                            "to the downloaded data, or leave both unset to use the simulated data")
    base = root / TCIA_FOLDER if (root / TCIA_FOLDER).is_dir() else root
    patient_dirs = sorted(d for d in base.iterdir() if d.is_dir() and PATIENT_ID.match(d.name))
    if not patient_dirs:
        raise DataRootError(f"data root {root} holds no patient folders (C###, L###, N###); {LAYOUT_HINT}")
    patients = []
    for d in patient_dirs:
        low, full = _find_tcia_series(d)
        layout = "tcia"
        if low is None and full is None:
            for f_name, q_name in AAPM_PAIRS:
                if (d / f_name).is_dir() or (d / q_name).is_dir():
                    full = d / f_name if (d / f_name).is_dir() else None
                    low = d / q_name if (d / q_name).is_dir() else None
                    layout = "aapm"
                    break
        if low is None or full is None:
            missing = "low-dose" if low is None else "full-dose"
            have = full or low
            if have is None:
                raise DicomSeriesError(f"patient {d.name}: no low- or full-dose series under {d}; {LAYOUT_HINT}")
            raise DicomSeriesError(f"patient {d.name}: has {have.name} but no {missing} series; "
                                   "download both series of the patient, or remove the patient folder")
        low_files, full_files, z, pixel_mm, skipped = pair_series(
            d.name, _series_files(low), _series_files(full), on_bad_file)
        region = REGION_OF_PREFIX[d.name[0]]
        patients.append(PatientSeries(d.name, region, DOSE_FRACTION[region], low_files, full_files,
                                      z, pixel_mm, layout, skipped))
    return patients


# ---------------------------------------------------------------------------------------------
# writing
def write_ct_slice(path: str | Path, image_hu: np.ndarray, *, patient_id: str, z_mm: float,
                   pixel_mm: float, instance: int, series_description: str, study_uid: str,
                   series_uid: str, slice_thickness_mm: float = 1.0) -> Path:
    """Write one CT slice (HU) as int16 with RescaleIntercept -1024, like the Mayo data."""
    path = Path(path)
    stored = np.clip(np.round(np.asarray(image_hu, dtype=np.float64) + 1024.0), -32768, 32767).astype(np.int16)
    sop_uid = generate_uid(entropy_srcs=[series_uid, str(instance)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.Modality = "CT"
    ds.PatientID = ds.PatientName = patient_id
    ds.SeriesDescription = series_description
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [-(image_hu.shape[1] - 1) / 2 * pixel_mm, -(image_hu.shape[0] - 1) / 2 * pixel_mm, float(z_mm)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = float(z_mm)
    ds.SliceThickness = slice_thickness_mm
    ds.PixelSpacing = [pixel_mm, pixel_mm]
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
    ds.PixelData = stored.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _uid5(text: str) -> str:
    """Five stable digits (TCIA folder names end in such a number)."""
    return f"{int(hashlib.sha256(text.encode()).hexdigest(), 16) % 100000:05d}"


def write_patient(root: str | Path, patient_id: str, low_hu: np.ndarray, full_hu: np.ndarray,
                  z_mm, pixel_mm: float, layout: str = "tcia") -> tuple[Path, Path]:
    """Write a patient's paired stacks ``(S, H, W)`` in HU in the TCIA v3 or AAPM 2016 layout.
    Returns the (low, full) series folders."""
    root = Path(root)
    study_uid = generate_uid(entropy_srcs=[patient_id, "study"])
    if layout == "tcia":
        study = root / TCIA_FOLDER / patient_id / "01-01-2000-NA-NA-00000"
        folders = {"low": study / f"1.000000-{LOW_TCIA}-{_uid5(patient_id + 'low')}",
                   "full": study / f"1.000000-{FULL_TCIA}-{_uid5(patient_id + 'full')}"}
        names = lambda i: f"1-{i + 1:03d}.dcm"  # noqa: E731
    elif layout == "aapm":
        folders = {"low": root / patient_id / "quarter_1mm", "full": root / patient_id / "full_1mm"}
        names = lambda i: f"{patient_id}_{i + 1:04d}.IMA"  # noqa: E731
    else:
        raise ValueError(f"unknown layout {layout!r}; use 'tcia' or 'aapm'")
    for kind, stack in (("low", low_hu), ("full", full_hu)):
        series_uid = generate_uid(entropy_srcs=[patient_id, kind])
        desc = LOW_TCIA if kind == "low" else FULL_TCIA
        for i, (img, z) in enumerate(zip(stack, z_mm)):
            write_ct_slice(folders[kind] / names(i), img, patient_id=patient_id, z_mm=float(z),
                           pixel_mm=pixel_mm, instance=i + 1, series_description=desc,
                           study_uid=study_uid, series_uid=series_uid)
    return folders["low"], folders["full"]
