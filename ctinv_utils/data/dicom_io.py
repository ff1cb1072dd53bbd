"""DICOM in and out, in the layouts of the Mayo low-dose CT data.

Reading: :func:`discover_patients` finds the patients under a root in the TCIA v3 layout of
"LDCT-and-Projection-data" (``<root>/LDCT-and-Projection-data/<ID>/<study>/<n>-Full Dose
Images-<uid>/1-<idx>.dcm`` and its ``Low Dose Images`` twin) or the AAPM 2016 Grand Challenge layout
(``<root>/<ID>/full_1mm/``, ``<root>/<ID>/quarter_1mm/``) and pairs low/full slices by table
position; :func:`read_slice_hu` applies RescaleSlope / RescaleIntercept to get HU. Writing
(:func:`write_ct_slice`): the simulator writes the TCIA layout, so one loader serves both.

Nothing is guessed: a header that lacks or garbles what turns stored values into HU, unpairable
series or an implausible pixel value is an error naming the file and the fix; a harmless default
(a missing RescaleSlope or PixelSpacing) is a warning. Every error is a
:class:`ctinv_utils.errors.CTInvError`: DataRootError, DicomSeriesError, DicomPairingError,
DicomFileError and its subclasses DicomHeaderError and DicomValueError.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ..errors import (BadArgumentError, DataRootError, DicomFileError, DicomHeaderError, DicomPairingError, DicomSeriesError,
                      DicomValueError)
from .regions import DOSE_FRACTION, REGION_OF_PREFIX

TCIA_FOLDER = "LDCT-and-Projection-data"
PATIENT_ID = re.compile(r"^[CLN]\d{3}$")
FULL_TCIA, LOW_TCIA = "Full Dose Images", "Low Dose Images"
AAPM_PAIRS = (("full_1mm", "quarter_1mm"), ("full_3mm", "quarter_3mm"))
BAD_FILE_POLICIES = ("raise", "skip")
LAYOUT_HINT = (f"expected the TCIA layout <root>/{TCIA_FOLDER}/<ID>/<study>/<n>-{FULL_TCIA}-<uid>/ "
               "or the AAPM 2016 layout <root>/<ID>/full_1mm/ (see README: Data)")
SKIP_HINT = "or pass on_bad_file='skip' to leave it out"

#: Plausible HU of a CT slice. Nothing is below air (-1000 HU) but noise, and scanners clip at -1024
#: or pad outside the field of view with -3024 (GE: stored -2000, intercept -1024); the 12-bit
#: ceiling is 3071 HU (dense bone, contrast, metal saturate there). A value outside means a wrong
#: rescale or PixelRepresentation. Extended-scale (metal) images need a wider ``hu_range``.
HU_RANGE = (-3100.0, 4000.0)
#: The tag of the pixel data element, the last element of a CT image file.
PIXEL_DATA_TAG = pydicom.tag.Tag(0x7FE0, 0x0010)
#: CT scanners write RescaleSlope 1; anything outside this range is a damaged header.
SLOPE_RANGE = (0.01, 100.0)
#: |RescaleIntercept| beyond the 16-bit range cannot be meant (CT uses 0, -1000, -1024, -8192).
INTERCEPT_LIMIT = 32768.0
NOTE_SLOPE = "RescaleSlope missing: 1 assumed (what CT scanners write)"
NOTE_SPACING = ("PixelSpacing missing: pixel size unknown (pixel_mm = nan); ctinv works in pixels, so no "
                "result changes, only physical sizes cannot be stated")


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
    notes: list[str] = field(default_factory=list)  # header defaults applied (see read_slice_hu)

    @property
    def n_slices(self) -> int:
        return len(self.full_files)


@dataclass(frozen=True)
class SliceHeader:
    """What pairing needs from one slice's header (read without its pixels)."""

    path: Path
    z_mm: float
    shape: tuple[int, int]     # (Rows, Columns)
    pixel_mm: float            # PixelSpacing (row); nan when missing
    sop_uid: str
    series_uid: str
    patient: str
    notes: tuple[str, ...]     # defaults applied (NOTE_SLOPE, NOTE_SPACING)


# ---------------------------------------------------------------------------------------------
# reading one file
def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:limit] if text else ''}"


def _read(path: Path, pixels: bool) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
    except OSError as exc:
        raise DicomFileError(f"{path}: cannot be read ({exc.strerror or _one_line(exc)}); check that it exists "
                             f"and is readable, {SKIP_HINT}") from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for corrupt files
        if isinstance(exc, pydicom.errors.InvalidDicomError) and path.is_file() and path.stat().st_size < 132:
            raise DicomFileError(f"{path}: only {_size(path)} bytes, shorter than a DICOM file's 132-byte "
                                 f"preamble: truncated or not DICOM; re-download it, {SKIP_HINT}") from exc
        if isinstance(exc, (EOFError, struct.error)) or "unpack requires a buffer" in str(exc):
            raise DicomFileError(f"{path}: truncated: it ends after {_size(path)} bytes, inside an element "
                                 f"(an interrupted download or copy); re-download it, {SKIP_HINT}") from exc
        raise DicomFileError(f"{path}: not a readable DICOM file ({_one_line(exc)}); "
                             f"re-download it, {SKIP_HINT}") from exc
    if ds.get("Modality", None) != "CT" or (pixels and "PixelData" not in ds):
        _raise_if_truncated(path, ds)  # a truncated file reads as one without Modality, rescale or pixels
    modality = getattr(ds, "Modality", None)
    if modality != "CT":
        raise DicomFileError(f"{path}: DICOM modality is {modality!r}, not 'CT'; remove the file from "
                             f"the series, {SKIP_HINT}")
    if pixels and "PixelData" not in ds:
        raise DicomFileError(f"{path}: CT DICOM without pixel data; re-download it, {SKIP_HINT}")
    return ds


def _size(path: Path) -> str:
    try:
        return str(path.stat().st_size)
    except OSError:
        return "?"


def _raise_if_truncated(path: Path, ds: pydicom.Dataset) -> None:
    cut = truncation(path, ds)
    if cut:
        raise DicomFileError(f"{path}: truncated: {cut} (an interrupted download or copy); re-download it, "
                             f"{SKIP_HINT}")


def truncation(path: Path, ds: pydicom.Dataset, reread: bool = True) -> str | None:
    """How ``path`` (read into ``ds``, with or without its pixels) is cut short, or None when its last
    element is complete and something follows it (pixel data) or it is the pixel data itself. pydicom
    stops silently where a file ends, so a truncated CT file reads as a dataset missing its Modality,
    its rescale or its pixels. (Called where something is missing: it may read the header again.)"""
    try:
        size = path.stat().st_size
    except OSError:
        return None
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and "deflate" in str(getattr(syntax, "name", "")).lower():
        return None  # element offsets are in the inflated stream, not the file
    tags = list(ds.keys())
    if not tags:
        return f"it ends after {size} bytes, inside its header, before any data element"
    last = ds.get_item(tags[-1])
    tell, length = getattr(last, "value_tell", None), getattr(last, "length", None)
    if tell is None and reread:  # decoded already (its offsets are gone): read the raw elements again
        try:
            again = pydicom.dcmread(path, stop_before_pixels=PIXEL_DATA_TAG not in ds)
        except Exception:  # noqa: BLE001 - it was readable a moment ago; nothing more to say
            return None
        return truncation(path, again, reread=False)
    if tell is None or length is None or length == 0xFFFFFFFF:
        return None  # no offsets, or of undefined length: nothing to judge by
    value = getattr(last, "value", None)
    if value is not None and isinstance(value, (bytes, bytearray)) and len(value) < length:
        return f"it ends after {size} bytes, inside element {tags[-1]} ({len(value)} of its {length} bytes)"
    # what follows the last element is too short for the next element's header (12 bytes for the
    # pixel data in explicit VR): the file stops before (or inside the header of) its pixel data
    if tags[-1] != PIXEL_DATA_TAG and size - (tell + length) < 12:
        return f"it ends after {size} bytes, after element {tags[-1]} and before its pixel data"
    return None


def _number(ds: pydicom.Dataset, keyword: str, path: Path) -> float | None:
    """A numeric header value as float; None when absent or empty; DicomHeaderError when garbled."""
    if keyword not in ds:
        return None
    raw = None
    try:
        raw = ds[keyword].value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        return float(raw)
    except Exception as exc:  # noqa: BLE001 - pydicom's value conversion raises several types
        _raise_if_truncated(path, ds)
        raise DicomHeaderError(f"{path}: {keyword} is {raw!r}, not a number; the header is damaged: "
                               f"re-download the file, {SKIP_HINT}") from exc


def _rescale(ds: pydicom.Dataset, path: Path) -> tuple[float, float, tuple[str, ...]]:
    """(slope, intercept, notes): stored value * slope + intercept = HU."""
    intercept = _number(ds, "RescaleIntercept", path)
    if intercept is None:
        _raise_if_truncated(path, ds)
        raise DicomHeaderError(f"{path}: RescaleIntercept is missing, so stored values cannot be turned into HU "
                               "(0 and -1024 are both common; a guess would shift every pixel by 1024 HU); "
                               f"re-export the series with its rescale tags, {SKIP_HINT}")
    if not math.isfinite(intercept) or abs(intercept) > INTERCEPT_LIMIT:
        raise DicomHeaderError(f"{path}: RescaleIntercept is {intercept}, not a finite value within "
                               f"+-{INTERCEPT_LIMIT:.0f} (CT uses 0, -1000 or -1024); the header is damaged: "
                               f"re-download the file, {SKIP_HINT}")
    slope = _number(ds, "RescaleSlope", path)
    notes: tuple[str, ...] = ()
    if slope is None:
        slope, notes = 1.0, (NOTE_SLOPE,)
    elif not (math.isfinite(slope) and SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1]):
        raise DicomHeaderError(f"{path}: RescaleSlope is {slope}, not a finite value in "
                               f"[{SLOPE_RANGE[0]}, {SLOPE_RANGE[1]:.0f}] (CT scanners write 1); the header is "
                               f"damaged: re-download the file, {SKIP_HINT}")
    return slope, intercept, notes


def _pixel_spacing(ds: pydicom.Dataset, path: Path) -> tuple[float, tuple[str, ...]]:
    """(row spacing in mm, notes); nan with a note when PixelSpacing is missing."""
    value = ds.get("PixelSpacing") if "PixelSpacing" in ds else None
    if value is None or value == "" or (hasattr(value, "__len__") and len(value) == 0):
        return float("nan"), (NOTE_SPACING,)
    try:
        mm = [float(v) for v in value]
    except Exception:  # noqa: BLE001 - a scalar or garbled value
        mm = []
    if len(mm) != 2 or not all(math.isfinite(v) and v > 0 for v in mm):
        raise DicomHeaderError(f"{path}: PixelSpacing is {value!r}, not two positive numbers in mm; the header "
                               f"is damaged: re-download the file, {SKIP_HINT}")
    return mm[0], ()


def _z_of(ds: pydicom.Dataset, path: Path) -> float:
    try:
        if ds.get("ImagePositionPatient") is not None and len(ds.ImagePositionPatient) == 3:
            z = float(ds.ImagePositionPatient[2])
        elif "SliceLocation" in ds and ds.SliceLocation not in (None, ""):
            z = float(ds.SliceLocation)
        else:
            z = None
    except Exception as exc:  # noqa: BLE001
        raise DicomHeaderError(f"{path}: the table position (ImagePositionPatient / SliceLocation) is not a "
                               f"number ({_one_line(exc)}); re-download the file, {SKIP_HINT}") from exc
    if z is None:
        raise DicomHeaderError(f"{path}: neither ImagePositionPatient nor SliceLocation is set, so the slice "
                               f"cannot be paired by position; re-export the series with positions, {SKIP_HINT}")
    if not math.isfinite(z):
        raise DicomHeaderError(f"{path}: the table position is {z}; re-download the file, {SKIP_HINT}")
    return z


def _shape(ds: pydicom.Dataset, path: Path) -> tuple[int, int]:
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except Exception as exc:  # noqa: BLE001 - missing or garbled
        raise DicomHeaderError(f"{path}: Rows/Columns missing or not integers ({_one_line(exc)}); the header "
                               f"is damaged: re-download the file, {SKIP_HINT}") from exc
    if rows < 1 or cols < 1:
        raise DicomHeaderError(f"{path}: matrix size {rows}x{cols}; re-download the file, {SKIP_HINT}")
    return rows, cols


def read_slice_header(path: str | Path) -> SliceHeader:
    """Check one slice's header without reading its pixels (raises a DicomFileError subclass)."""
    path = Path(path)
    ds = _read(path, pixels=False)
    _, _, rescale_notes = _rescale(ds, path)
    pixel_mm, spacing_notes = _pixel_spacing(ds, path)
    return SliceHeader(path, _z_of(ds, path), _shape(ds, path), pixel_mm,
                       str(ds.get("SOPInstanceUID", "") or ""), str(ds.get("SeriesInstanceUID", "") or ""),
                       str(ds.get("PatientID", "") or ""), rescale_notes + spacing_notes)


def check_hu_range(hu_range, name: str = "hu_range") -> tuple[float, float]:
    """``(low, high)`` in HU, two finite numbers with low < high; a BadArgumentError naming the
    argument otherwise (not a header problem of some file read later)."""
    try:
        lo, hi = (float(v) for v in hu_range)
    except (TypeError, ValueError):
        raise BadArgumentError(f"{name} must be (low, high) in HU, e.g. {HU_RANGE}; got {hu_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise BadArgumentError(f"{name} must be finite (low, high) in HU, e.g. {HU_RANGE}; got {hu_range!r}")
    if lo >= hi:
        fix = f"swap them: {name}=({hi:g}, {lo:g})" if lo > hi else f"widen it, e.g. {HU_RANGE}"
        raise BadArgumentError(f"{name} {hu_range!r} must be (low, high) in HU with low < high; {fix}")
    return lo, hi


def check_hu(image_hu: np.ndarray, path, hu_range: tuple[float, float] = HU_RANGE, how: str = "") -> None:
    """Raise DicomValueError unless every pixel of ``image_hu`` is finite and inside ``hu_range``."""
    bad = ~np.isfinite(image_hu)
    if bad.any():
        raise DicomValueError(f"{path}: {int(bad.sum())} of {image_hu.size} pixels are NaN or infinite in HU{how}; "
                              "the file is damaged: re-download it, or remove it and its low/full-dose twin")
    lo, hi = float(image_hu.min()), float(image_hu.max())
    if lo < hu_range[0] or hi > hu_range[1]:
        raise DicomValueError(
            f"{path}: values span {lo:.0f} to {hi:.0f} HU{how}, outside the plausible CT range "
            f"{hu_range[0]:.0f} to {hu_range[1]:.0f} HU (air -1000, padding down to -3024, 12-bit ceiling 3071); "
            "the rescale or PixelRepresentation of the header is probably wrong: fix it or re-download the file "
            "(for extended-scale metal images pass a wider hu_range)")


def _decode_message(path: Path, ds: pydicom.Dataset, exc: BaseException) -> str:
    cut = truncation(path, ds)
    if cut:
        return (f"{path}: pixel data cannot be decoded: the file is truncated: {cut} (an interrupted download or "
                f"copy); re-download it, {SKIP_HINT}")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and getattr(syntax, "is_compressed", False):
        fix = (f"it is compressed ({syntax.name}) and no decoder handled it: pip install pylibjpeg pylibjpeg-libjpeg "
               "pylibjpeg-openjpeg (or python-gdcm), or decompress the files (gdcmconv --raw)")
    else:
        fix = "the pixel data is truncated or damaged: re-download the file"
    return f"{path}: pixel data cannot be decoded ({_one_line(exc)}); {fix}"


def read_slice_hu(path: str | Path, hu_range: tuple[float, float] = HU_RANGE, warn: bool = True) -> np.ndarray:
    """One CT slice in HU, (H, W) float32: stored values * RescaleSlope + RescaleIntercept.

    Raises a DicomFileError subclass for a bad header and DicomValueError when a value is not finite
    or outside ``hu_range`` (default -3100..4000 HU). ``warn=False`` silences the warnings about
    header defaults (the loader has warned once per patient already). The header checks:

    * RescaleIntercept missing, empty, not a number, not finite or beyond +-32768: error (0 and
      -1024 are both common; a guess would shift every pixel by 1024 HU).
    * RescaleSlope missing: warning, slope 1 (what every CT scanner writes). NaN, infinite, <= 0 or
      outside [0.01, 100]: error.
    * PixelSpacing missing: warning, ``pixel_mm`` = NaN (ctinv works in pixels; only physical sizes
      are unknown). Present but malformed or <= 0: error."""
    path = Path(path)
    hu_range = check_hu_range(hu_range)
    ds = _read(path, pixels=True)
    slope, intercept, notes = _rescale(ds, path)
    if warn:
        for note in notes:
            warnings.warn(f"{path}: {note}", stacklevel=2)
    try:
        stored = ds.pixel_array
    except Exception as exc:  # noqa: BLE001
        raise DicomFileError(_decode_message(path, ds, exc)) from exc
    if stored.ndim != 2:
        raise DicomFileError(f"{path}: pixel data of shape {stored.shape}, not one grey-value slice; ctinv reads "
                             "single-frame monochrome CT: export the series as one file per slice")
    hu = (stored.astype(np.float32) * slope + intercept).astype(np.float32)
    check_hu(hu, path, hu_range, f" (RescaleSlope {slope:g}, RescaleIntercept {intercept:g})")
    return hu


# ---------------------------------------------------------------------------------------------
# series and pairing
def _series_files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise DicomSeriesError(f"{folder}: cannot list the series folder ({exc.strerror or _one_line(exc)}); "
                               "check its permissions") from exc


def _z_key(z: float) -> int:
    return round(z * 100)  # positions match to 0.01 mm


def _series_headers(patient_id: str, kind: str, files: list[Path], on_bad_file: str,
                    skipped: list[str]) -> dict[int, SliceHeader]:
    """Headers of one series by table position (key: z in 0.01 mm). Bad files raise or are skipped;
    two different slices at one position are an error; identical copies are kept once."""
    headers = []
    for f in files:
        try:
            headers.append(read_slice_header(f))
        except DicomFileError as exc:
            if on_bad_file == "raise":
                raise
            warnings.warn(f"skipping {exc}", stacklevel=4)
            skipped.append(str(f))
    series = sorted({h.series_uid for h in headers if h.series_uid})
    if len(series) > 1:
        folder = files[0].parent
        raise DicomSeriesError(f"patient {patient_id}: the {kind} folder {folder} mixes {len(series)} series "
                               "(different SeriesInstanceUIDs), so its slices cannot be told apart; keep one "
                               "series per folder")
    by_z: dict[int, list[SliceHeader]] = {}
    for h in headers:
        by_z.setdefault(_z_key(h.z_mm), []).append(h)
    out = {}
    for key, group in by_z.items():
        if len(group) == 1:
            out[key] = group[0]
            continue
        if all(h.sop_uid and h.sop_uid == group[0].sop_uid for h in group):
            warnings.warn(f"patient {patient_id}: {', '.join(h.path.name for h in group)} in {group[0].path.parent} "
                          "are copies of one image (same SOPInstanceUID); keeping the first, delete the others",
                          stacklevel=4)
            out[key] = group[0]
            continue
        msg = (f"patient {patient_id}: {kind} slices {' and '.join(str(h.path) for h in group)} lie at the same "
               f"table position z = {group[0].z_mm:.2f} mm but are different images; the folder holds a duplicate "
               "or a second scan: remove the wrong file")
        if on_bad_file == "raise":
            raise DicomPairingError(msg + ", or pass on_bad_file='skip' to leave both out")
        warnings.warn(msg + "; leaving both out", stacklevel=4)
        skipped.extend(str(h.path) for h in group)
    return out


def _summarize_notes(patient_id: str, headers: list[SliceHeader]) -> list[str]:
    counts = Counter(n for h in headers for n in h.notes)
    example = {n: h.path for h in reversed(headers) for n in h.notes}
    return [f"{note} ({k} of {len(headers)} files, e.g. {example[note]})" for note, k in sorted(counts.items())]


def _pair(patient_id: str, low_files: list[Path], full_files: list[Path], on_bad_file: str):
    """(low_files, full_files, z_mm, pixel_mm, skipped, notes), all sorted by z; see pair_series."""
    skipped: list[str] = []
    low = _series_headers(patient_id, "low-dose", low_files, on_bad_file, skipped)
    full = _series_headers(patient_id, "full-dose", full_files, on_bad_file, skipped)
    if not low or not full:
        raise DicomSeriesError(f"patient {patient_id}: no readable slices in the "
                               f"{'low' if not low else 'full'}-dose series; check the download")
    ids = sorted({h.patient for h in [*low.values(), *full.values()] if h.patient})
    if len(ids) > 1:
        raise DicomSeriesError(f"patient {patient_id}: its slices carry {len(ids)} PatientIDs ({', '.join(ids)}); a "
                               "series of another patient is in its folder: put each series under its own patient")
    common = sorted(set(full) & set(low))
    unpaired = len(low) + len(full) - 2 * len(common)
    if unpaired:
        msg = (f"patient {patient_id}: {len(low)} low-dose and {len(full)} full-dose slices, "
               f"{unpaired} without a twin at the same table position")
        if on_bad_file == "raise" or not common:
            raise DicomPairingError(msg + "; re-download the patient, or pass on_bad_file='skip' to "
                                    "keep only the paired slices")
        warnings.warn(msg + "; keeping the paired slices only", stacklevel=3)
    pairs = []
    for k in common:
        lo, fu = low[k], full[k]
        problem = None
        if lo.shape != fu.shape:
            problem = f"is {lo.shape[0]}x{lo.shape[1]} but its full-dose twin {fu.path} is {fu.shape[0]}x{fu.shape[1]}"
        elif (math.isfinite(lo.pixel_mm) and math.isfinite(fu.pixel_mm)
              and abs(lo.pixel_mm - fu.pixel_mm) > 1e-3 * max(lo.pixel_mm, fu.pixel_mm)):
            problem = (f"has {lo.pixel_mm:g} mm pixels but its full-dose twin {fu.path} has {fu.pixel_mm:g} mm "
                       "(a different field of view)")
        if problem is None:
            pairs.append((lo, fu))
            continue
        msg = (f"patient {patient_id}: the low-dose slice {lo.path} at z = {fu.z_mm:.2f} mm {problem}; a pair "
               "must come from the same reconstruction: re-download the patient's series")
        if on_bad_file == "raise":
            raise DicomPairingError(msg + ", or pass on_bad_file='skip' to leave the pair out")
        warnings.warn(msg + "; leaving the pair out", stacklevel=3)
        skipped.extend([str(lo.path), str(fu.path)])
    if not pairs:
        raise DicomPairingError(f"patient {patient_id}: no low/full-dose pair is left; re-download the patient")
    notes = _summarize_notes(patient_id, [h for pair in pairs for h in pair])
    return ([lo.path for lo, _ in pairs], [fu.path for _, fu in pairs], np.array([fu.z_mm for _, fu in pairs]),
            pairs[0][1].pixel_mm, skipped, notes)


def pair_series(patient_id: str, low_files: list[Path], full_files: list[Path],
                on_bad_file: str = "raise"):
    """Pair low/full slices by table position. Returns (low_files, full_files, z_mm, pixel_mm,
    skipped); all sorted by z. With ``on_bad_file='raise'`` an unpaired slice or a bad header is an
    error; with ``'skip'`` it is dropped with a warning. Header defaults are warned about."""
    *out, notes = _pair(patient_id, low_files, full_files, on_bad_file)
    for note in notes:
        warnings.warn(f"patient {patient_id}: {note}", stacklevel=2)
    return tuple(out)


def _locate_series(d: Path) -> tuple[Path, Path, str, list[Path], list[Path]]:
    """(low folder, full folder, layout, low files, full files) of one patient folder, from directory
    listings only (fast). Raises DicomSeriesError for a missing, doubled or empty series."""
    try:
        folders = sorted(s for s in d.glob("*/*") if s.is_dir())
    except OSError as exc:
        raise DicomSeriesError(f"patient {d.name}: cannot list {d} ({exc.strerror or _one_line(exc)}); check its "
                               "permissions") from exc
    found = {}
    for kind, name in (("full-dose", FULL_TCIA), ("low-dose", LOW_TCIA)):
        hits = [s for s in folders if name in s.name]
        if len(hits) > 1:
            raise DicomSeriesError(f"patient {d.name}: {len(hits)} '{name}' series "
                                   f"({', '.join(str(h.relative_to(d)) for h in hits)}); ctinv cannot tell which one "
                                   f"pairs with the other dose: move all but one out of {d}")
        found[kind] = hits[0] if hits else None
    full, low, layout = found["full-dose"], found["low-dose"], "tcia"
    if low is None and full is None:
        for f_name, q_name in AAPM_PAIRS:  # 1 mm before 3 mm
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
    low_files, full_files = _series_files(low), _series_files(full)
    for kind, folder, files in (("low-dose", low, low_files), ("full-dose", full, full_files)):
        if not files:
            raise DicomSeriesError(f"patient {d.name}: the {kind} series folder {folder} is empty; download the "
                                   "series again, or remove the patient folder")
    return low, full, layout, low_files, full_files


def _brief(errors: list[Exception], n: int = 3) -> str:
    text = "; ".join(str(e) for e in errors[:n])
    return text + (f"; and {len(errors) - n} more" if len(errors) > n else "")


def locate_patients(root: str | Path) -> tuple[list[tuple], list[Exception]]:
    """The patient folders under ``root`` with a pairable low- and full-dose series, from directory
    listings only (milliseconds; no header is read): ``(located, problems)``, ``located`` a list of
    ``(folder, low folder, full folder, layout, low files, full files)``. Raises :class:`DataRootError`
    when the root is missing, a file, or holds no pairable patient (the runner's preflight calls it)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataRootError(f"data root {root} does not exist; pass --data PATH (or set CTINV_DATA) "
                            "to the downloaded data, or leave both unset to use the simulated data")
    if not root.is_dir():
        raise DataRootError(f"data root {root} is a file, not a folder; pass --data PATH (or set CTINV_DATA) to "
                            f"the folder that holds {TCIA_FOLDER}/ (TCIA) or the AAPM patient folders")
    base = root / TCIA_FOLDER if (root / TCIA_FOLDER).is_dir() else root
    try:
        patient_dirs = sorted(d for d in base.iterdir() if d.is_dir() and PATIENT_ID.match(d.name))
    except OSError as exc:
        raise DataRootError(f"data root {base} cannot be listed ({exc.strerror or _one_line(exc)}); check its "
                            "permissions") from exc
    if not patient_dirs:
        hint = (f"{root} looks like one patient's folder: pass the folder above it; " if PATIENT_ID.match(root.name)
                else "")
        raise DataRootError(f"data root {root} holds no patient folders (C###, L###, N###); {hint}{LAYOUT_HINT}")
    located, problems = [], []
    for d in patient_dirs:
        try:
            located.append((d, *_locate_series(d)))
        except DicomSeriesError as exc:
            problems.append(exc)
    if not located and len(problems) == 1:
        raise problems[0]  # the root's only patient: its own message is the most precise
    if not located:
        raise DataRootError(f"data root {root}: none of its {len(patient_dirs)} patient folders holds a pairable "
                            f"low- and full-dose series ({_brief(problems)}); {LAYOUT_HINT}")
    return located, problems


def discover_patients(root: str | Path, on_bad_file: str = "raise") -> list[PatientSeries]:
    """All patients under ``root`` (TCIA v3 or AAPM 2016 layout), paired and sorted by ID.

    First every patient folder is checked from directory listings alone (milliseconds), so a root
    without any pairable patient fails before a header is read; then each slice header is read and
    checked (:func:`read_slice_hu`). ``on_bad_file='skip'`` leaves out bad files, unpairable slices
    and unusable patients with a warning; a root left without any pairable patient is still an error.

    Errors of a series: two slices at one table position (the same image twice, same SOPInstanceUID,
    is a harmless copy: warning, one kept); two Full Dose (or Low Dose) series for one patient, or a
    folder holding several series; low and full slice of a pair with different matrix size or pixel
    spacing, or low and full series of different PatientIDs."""
    if on_bad_file not in BAD_FILE_POLICIES:
        raise BadArgumentError(f"on_bad_file must be one of {BAD_FILE_POLICIES}, not {on_bad_file!r}")
    root = Path(root).expanduser()
    located, problems = locate_patients(root)
    for exc in problems:
        if on_bad_file == "raise":
            raise exc
        warnings.warn(f"leaving out {exc}", stacklevel=2)
    patients = []
    for d, _low, _full, layout, low_files, full_files in located:
        try:
            low_f, full_f, z, pixel_mm, skipped, notes = _pair(d.name, low_files, full_files, on_bad_file)
        except (DicomSeriesError, DicomPairingError) as exc:
            if on_bad_file == "raise":
                raise
            warnings.warn(f"leaving out {exc}", stacklevel=2)
            problems.append(exc)
            continue
        for note in notes:
            warnings.warn(f"patient {d.name}: {note}", stacklevel=2)
        region = REGION_OF_PREFIX[d.name[0]]
        patients.append(PatientSeries(d.name, region, DOSE_FRACTION[region], low_f, full_f, z, pixel_mm, layout,
                                      skipped, notes))
    if not patients:
        raise DataRootError(f"data root {root}: no pairable patient is left after leaving out the bad ones "
                            f"({_brief(problems)}); fix or re-download them")
    return patients


# ---------------------------------------------------------------------------------------------
# writing
#: Header elements :func:`write_ct_slice` derives itself; ``extra_tags`` may not override them.
WRITER_OWNED_TAGS = frozenset({
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "InstanceNumber",
    "ImagePositionPatient", "ImageOrientationPatient", "SliceLocation", "SliceThickness", "PixelSpacing", "Rows",
    "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "RescaleSlope", "RescaleIntercept", "RescaleType", "PixelData"})


def write_ct_slice(path: str | Path, image_hu: np.ndarray, *, patient_id: str, z_mm: float,
                   pixel_mm: float, instance: int, series_description: str, study_uid: str,
                   series_uid: str, slice_thickness_mm: float = 1.0, extra_tags: dict | None = None) -> Path:
    """Write one CT slice (HU) as int16 with RescaleIntercept -1024, like the Mayo data.

    ``extra_tags``: further header elements by DICOM keyword (e.g. ``{"WindowCenter": [-600, 50]}``),
    set after the ones above; they may not touch the pixel encoding, the UIDs or the geometry
    (:data:`WRITER_OWNED_TAGS`). Without them the file holds only the elements above, so the same
    slice always gives the same bytes."""
    path = Path(path)
    owned = sorted(set(extra_tags or ()) & WRITER_OWNED_TAGS)
    if owned:
        raise BadArgumentError(f"extra_tags may not set {owned}: write_ct_slice derives them from its arguments")
    unknown = sorted(k for k in extra_tags or () if pydicom.datadict.tag_for_keyword(k) is None)
    if unknown:
        raise BadArgumentError(f"extra_tags {unknown} are not DICOM keywords (see pydicom.datadict)")
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
    for keyword, value in (extra_tags or {}).items():
        setattr(ds, keyword, value)
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
        raise BadArgumentError(f"unknown layout {layout!r}; use 'tcia' or 'aapm'")
    for kind, stack in (("low", low_hu), ("full", full_hu)):
        series_uid = generate_uid(entropy_srcs=[patient_id, kind])
        desc = LOW_TCIA if kind == "low" else FULL_TCIA
        for i, (img, z) in enumerate(zip(stack, z_mm)):
            write_ct_slice(folders[kind] / names(i), img, patient_id=patient_id, z_mm=float(z),
                           pixel_mm=pixel_mm, instance=i + 1, series_description=desc,
                           study_uid=study_uid, series_uid=series_uid)
    return folders["low"], folders["full"]
