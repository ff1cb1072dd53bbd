"""DICOM export of ctinv results, for a radiologist's own viewer.

One **study** per case (one slice x one denoiser x one distance, or one natural-invariance case),
one **series** per image kind, each a CT image with the talk's windows as viewer presets
(:func:`invariance_study`, :func:`natural_study`, :func:`write_study`). Pixels are int16 with
RescaleSlope 1 and RescaleIntercept -1024 (1 HU resolution, -33792..31743 HU, so signed differences
fit); a value that is not finite or outside that range is an error, never clipped. UIDs derive from
the case and a SHA-256 of its images (:func:`study_uid`), so a re-export of the same results is
byte-identical and a changed result gets new UIDs. The patient is synthetic: no identifier of the
source data is ever copied. :func:`read_study` reads an export back with ctinv's own loader.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from ..errors import BadArgumentError, DicomValueError
from ..names import display_name
from ..provenance import array_sha256
from ..units import ABDOMEN, DIFFERENCE, LUNG, REGION_WINDOW, Window
from .dicom_io import read_slice_hu, write_ct_slice

#: write_ct_slice stores round(HU) + 1024 as int16 (RescaleIntercept -1024): the HU it can represent.
STORED_OFFSET_HU = 1024.0
REPRESENTABLE_HU = (-32768.0 - STORED_OFFSET_HU, 32767.0 - STORED_OFFSET_HU)
#: A second difference preset: at large alpha x_inv - x reaches hundreds of HU.
DIFFERENCE_WIDE = Window("difference wide", 0, 1000)
#: The pixel-wise std of natural-invariance samples, 0..100 HU.
STD_WINDOW = Window("std", 50, 100)
#: The talk shows every CT panel in these two windows.
TALK_WINDOWS = (LUNG, ABDOMEN)
DEFAULT_DATETIME = datetime(2000, 1, 1)  # the simulated data's study date
#: DICOM's LO (SeriesDescription, StudyDescription, explanations) holds 64 characters.
LO_MAX = 64
DEIDENTIFICATION = "ctinv export: synthetic patient, no source identifiers copied"


@dataclass(frozen=True)
class ExportSeries:
    """One series: ``images_hu`` (N, H, W) in HU, its words and its window presets."""

    key: str                      # folder name (after the series number) and UID seed, unique in a study
    number: int                   # SeriesNumber
    description: str              # SeriesDescription; longer than 64 characters: shortened, whole in ImageComments
    images_hu: np.ndarray         # (N, H, W) HU
    windows: tuple[Window, ...]
    derivation: str = ""          # DerivationDescription: how the images were made
    instance_comments: tuple[str, ...] = ()  # per instance (e.g. "sample 3 of 16"); empty: none

    @property
    def folder(self) -> str:
        return f"{self.number:03d}_{self.key}"


@dataclass(frozen=True)
class ExportStudy:
    """One case as a study: its series share a frame of reference (same slice, same pixel grid)."""

    key: str                      # folder name, e.g. "invariance_cnn10_mse"
    description: str              # StudyDescription
    series: tuple[ExportSeries, ...]
    pixel_mm: float               # PixelSpacing (square pixels)
    region: str | None = None     # chest / abdomen / head: BodyPartExamined and the first window
    z_mm: float = 0.0             # table position of the slice
    note: str = ""                # appended to every ImageComments (preset, data source, commit, ...)


# ---------------------------------------------------------------------------------------------
# what a case holds
def image_windows(region: str | None) -> tuple[Window, ...]:
    """The region's window first (a viewer opens with the first preset), then the talk's lung and
    abdomen windows."""
    first = (REGION_WINDOW[region],) if region in REGION_WINDOW else ()
    return tuple(dict.fromkeys(first + TALK_WINDOWS))


DIFFERENCE_WINDOWS = (DIFFERENCE, DIFFERENCE_WIDE)


def _stack(a, name: str, ndim: int) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != ndim:
        raise BadArgumentError(f"{name} must be {'(H, W)' if ndim == 2 else '(N, H, W)'} in HU, not of shape {a.shape}")
    return a[None] if ndim == 2 else a


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")


def invariance_study(x_hu, f_x_hu, x_inv_hu, f_x_inv_hu, alphas, *, denoiser: str, distance: str,
                     pixel_mm: float, region: str | None = None, full_hu=None, differences: bool = True,
                     z_mm: float = 0.0, note: str = "") -> ExportStudy:
    """The study of one invariance case: ``x_hu``, ``f_x_hu`` (H, W), ``x_inv_hu``, ``f_x_inv_hu``
    (A, H, W) and ``alphas`` (A,), as in the ``invariance_arrays`` artifact; ``full_hu`` (H, W), the
    full-dose reference, is optional. ``denoiser``/``distance`` are ctinv keys (``cnn10``, ``mse``).

    Series: ``x``, the full-dose reference, ``f(x)``, and per alpha ``x_inv``, ``f(x_inv)``,
    ``x_inv - x`` and ``f(x_inv) - f(x)`` (series numbers 10*(i+1)+1..4 for the i-th alpha). One
    single-image series per alpha, not one series holding the grid: viewers label a series by its
    SeriesDescription, lay series side by side with linked windowing, and read several images at one
    table position as a volume with duplicate slices."""
    x, f_x = _stack(x_hu, "x_hu", 2), _stack(f_x_hu, "f_x_hu", 2)
    x_inv, f_inv = _stack(x_inv_hu, "x_inv_hu", 3), _stack(f_x_inv_hu, "f_x_inv_hu", 3)
    alphas = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if not (len(alphas) == len(x_inv) == len(f_inv)):
        raise BadArgumentError(f"{len(alphas)} alphas for {len(x_inv)} x_inv and {len(f_inv)} f(x_inv) images; "
                               "pass one alpha per image")
    den, dist = display_name(denoiser), display_name(distance)
    img_w = image_windows(region)
    what = f"{den}, {dist}"
    series = [ExportSeries("x", 1, "x  low-dose input", x, img_w, "low-dose input x, the slice the invariances are "
                           "computed on")]
    if full_hu is not None:
        series.append(ExportSeries("full_dose", 2, "full-dose reference", _stack(full_hu, "full_hu", 2), img_w,
                                   "full-dose scan of the same slice (reference; not a denoiser input)"))
    series.append(ExportSeries("f_x", 3, f"f(x)  {den}", f_x, img_w, f"denoiser {den} applied to x"))
    for i, a in enumerate(alphas):
        tag, base = f"alpha={a:g}", 10 * (i + 1)
        inv = f"invariance x_inv of {den} ({dist}, {tag}): far from x, f(x_inv) close to f(x)"
        series += [
            ExportSeries(_key(f"x_inv_alpha{a:g}"), base + 1, f"x_inv  {den}  {dist}  {tag}", x_inv[i][None],
                         img_w, inv),
            ExportSeries(_key(f"f_x_inv_alpha{a:g}"), base + 2, f"f(x_inv)  {den}  {dist}  {tag}", f_inv[i][None],
                         img_w, f"denoiser {den} applied to the {inv}")]
        if differences:
            series += [
                ExportSeries(_key(f"x_inv-x_alpha{a:g}"), base + 3, f"x_inv - x  {den}  {dist}  {tag}",
                             (x_inv[i] - x[0])[None], DIFFERENCE_WINDOWS,
                             f"input change x_inv - x in HU ({what}, {tag})"),
                ExportSeries(_key(f"f_x_inv-f_x_alpha{a:g}"), base + 4, f"f(x_inv) - f(x)  {den}  {dist}  {tag}",
                             (f_inv[i] - f_x[0])[None], DIFFERENCE_WINDOWS,
                             f"output change f(x_inv) - f(x) in HU ({what}, {tag})")]
    return ExportStudy(_key(f"invariance_{denoiser}_{distance}"), f"ctinv invariance  {den}  {dist}", tuple(series),
                       pixel_mm, region, z_mm, note)


def natural_study(x_hu, samples_hu, f_x_hu, f_samples_hu, *, denoiser: str, pixel_mm: float,
                  region: str | None = None, full_hu=None, std_hu=None, differences: bool = True,
                  z_mm: float = 0.0, note: str = "") -> ExportStudy:
    """The study of one natural-invariance case, as in the ``natural_arrays`` artifact: ``x_hu``,
    ``f_x_hu`` (H, W), ``samples_hu``, ``f_samples_hu`` (N, H, W); ``full_hu`` and ``std_hu`` (H, W)
    optional. The samples ``g(z|x)`` and ``f(g(z|x))`` are one series of N instances each
    (exchangeable draws of one slice: scroll through them), beside their differences to ``x`` and
    ``f(x)`` and the pixel-wise std."""
    x, f_x = _stack(x_hu, "x_hu", 2), _stack(f_x_hu, "f_x_hu", 2)
    s, f_s = _stack(samples_hu, "samples_hu", 3), _stack(f_samples_hu, "f_samples_hu", 3)
    if len(s) != len(f_s):
        raise BadArgumentError(f"{len(s)} samples but {len(f_s)} f(samples); pass one output per sample")
    den, img_w, n = display_name(denoiser), image_windows(region), len(s)
    per = tuple(f"sample {k + 1} of {n}" for k in range(n))
    gen = f"natural invariance g(z|x) of {den}: a generated input whose output stays close to f(x)"
    series = [ExportSeries("x", 1, "x  low-dose input", x, img_w, "low-dose input x")]
    if full_hu is not None:
        series.append(ExportSeries("full_dose", 2, "full-dose reference", _stack(full_hu, "full_hu", 2), img_w,
                                   "full-dose scan of the same slice (reference; not a denoiser input)"))
    series += [ExportSeries("f_x", 3, f"f(x)  {den}", f_x, img_w, f"denoiser {den} applied to x"),
               ExportSeries("samples", 4, f"g(z|x)  natural invariance samples  {den}", s, img_w, gen, per),
               ExportSeries("f_samples", 5, f"f(g(z|x))  {den}", f_s, img_w, f"denoiser {den} applied to the {gen}",
                            per)]
    if differences:
        series += [ExportSeries("samples-x", 6, f"g(z|x) - x  {den}", s - x, DIFFERENCE_WINDOWS,
                                f"input change g(z|x) - x in HU ({den})", per),
                   ExportSeries("f_samples-f_x", 7, f"f(g(z|x)) - f(x)  {den}", f_s - f_x, DIFFERENCE_WINDOWS,
                                f"output change f(g(z|x)) - f(x) in HU ({den})", per)]
    if std_hu is not None:
        series.append(ExportSeries("std", 8, f"pixel-wise std of g(z|x)  {den}", _stack(std_hu, "std_hu", 2),
                                   (STD_WINDOW,), f"pixel-wise standard deviation over the {n} samples, HU"))
    return ExportStudy(_key(f"natural_{denoiser}"), f"ctinv natural invariances  {den}", tuple(series), pixel_mm,
                       region, z_mm, note)


# ---------------------------------------------------------------------------------------------
# writing
def _ascii(text: str, limit: int | None = None) -> str:
    text = text.encode("ascii", "replace").decode()
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


def _number(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


def _window_tags(windows: tuple[Window, ...]) -> dict:
    return {"WindowCenter": [_number(w.center) for w in windows], "WindowWidth": [_number(w.width) for w in windows],
            "WindowCenterWidthExplanation": [_ascii(w.name.upper(), LO_MAX) for w in windows]}


def _check(study: ExportStudy) -> None:
    if not (np.isfinite(study.pixel_mm) and study.pixel_mm > 0):
        raise BadArgumentError(f"study {study.key}: pixel_mm is {study.pixel_mm}, not a positive size in mm")
    keys, numbers = [s.key for s in study.series], [s.number for s in study.series]
    if len(set(keys)) != len(keys) or len(set(numbers)) != len(numbers):
        raise BadArgumentError(f"study {study.key}: series keys {keys} / numbers {numbers} are not unique")
    shapes = {s.images_hu.shape[1:] for s in study.series}
    if len(shapes) != 1 or any(s.images_hu.ndim != 3 or not len(s.images_hu) for s in study.series):
        raise BadArgumentError(f"study {study.key}: series of image shapes {sorted(shapes)}; one study is one slice, "
                               "so every series needs (N, H, W) images of one (H, W)")
    lo, hi = REPRESENTABLE_HU
    for s in study.series:
        a = s.images_hu
        if not np.isfinite(a).all():
            raise DicomValueError(f"study {study.key}, series {s.key!r}: {int((~np.isfinite(a)).sum())} pixels are NaN "
                                  "or infinite; the result is damaged: recompute it")
        if a.min() < lo or a.max() > hi:
            raise DicomValueError(f"study {study.key}, series {s.key!r}: values span {a.min():.0f} to {a.max():.0f} "
                                  "HU, "
                                  f"outside what int16 with RescaleIntercept -1024 stores ({lo:.0f} to {hi:.0f} HU); "
                                  "the result is not in HU: check its units")


def study_uid(study: ExportStudy, patient_id: str) -> str:
    """The StudyInstanceUID: from the patient, the case key and a SHA-256 of every image (same
    results -> same UID; changed results -> a new one, or a PACS would keep the old images under
    the old UIDs). Series and frame-of-reference UIDs derive from it; all series of a study share
    one FrameOfReferenceUID, so viewers can link them."""
    content = hashlib.sha256()
    for s in study.series:
        content.update(f"{s.key}:{array_sha256(np.round(s.images_hu).astype(np.int32))};".encode())
    return generate_uid(entropy_srcs=["ctinv-export", patient_id, study.key, f"{study.pixel_mm!r}", f"{study.z_mm!r}",
                                      content.hexdigest()])


def _replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished folder ``tmp`` at ``final``; an older ``final`` is removed, not merged."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_study(study: ExportStudy, out_dir: str | Path, *, patient_name: str = "CTINV^EXPORT",
                patient_id: str = "CTINV-EXPORT", study_datetime: datetime | None = None) -> Path:
    """Write ``study`` to ``out_dir/<study.key>/<NNN>_<series>/<instance>.dcm`` and return that folder.

    The study is written into a temporary folder beside it and then renamed, so a viewer never sees
    half a study, and an existing export of the same case is replaced, not merged with stale files.
    ``study_datetime`` (default 2000-01-01) becomes StudyDate/Time, SeriesDate/Time, ContentDate/Time."""
    _check(study)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    when = study_datetime or DEFAULT_DATETIME
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    st_uid = study_uid(study, patient_id)
    frame_uid = generate_uid(entropy_srcs=[st_uid, "frame of reference"])
    common = {
        "PatientName": _ascii(patient_name, LO_MAX), "PatientBirthDate": None, "PatientSex": None,
        "PatientIdentityRemoved": "YES", "DeidentificationMethod": DEIDENTIFICATION,
        "StudyDate": date, "StudyTime": time, "SeriesDate": date, "SeriesTime": time, "ContentDate": date,
        "ContentTime": time, "StudyID": st_uid.rsplit(".", 1)[-1][-16:], "AccessionNumber": None,
        "ReferringPhysicianName": None, "StudyDescription": _ascii(study.description, LO_MAX),
        "Manufacturer": "ctinv", "ImageType": ["DERIVED", "SECONDARY", "AXIAL"], "KVP": None,
        "AcquisitionNumber": None, "FrameOfReferenceUID": frame_uid, "PositionReferenceIndicator": None,
        "BurnedInAnnotation": "NO"}
    if study.region:
        common["BodyPartExamined"] = study.region.upper()
    final = out_dir / study.key
    tmp = Path(tempfile.mkdtemp(prefix=f".{study.key}.", suffix=".tmp", dir=out_dir))
    try:
        for s in study.series:
            se_uid = generate_uid(entropy_srcs=[st_uid, "series", s.key])
            tags = {**common, **_window_tags(s.windows), "SeriesNumber": s.number,
                    "SeriesDescription": _ascii(s.description, LO_MAX)}
            if s.derivation:
                tags["DerivationDescription"] = _ascii(s.derivation, 1024)
            for i, image in enumerate(s.images_hu):
                words = [s.description, s.instance_comments[i] if s.instance_comments else "", s.derivation, study.note]
                write_ct_slice(tmp / s.folder / f"{i + 1:04d}.dcm", image, patient_id=_ascii(patient_id, LO_MAX),
                               z_mm=study.z_mm, pixel_mm=study.pixel_mm, instance=i + 1,
                               series_description=tags["SeriesDescription"], study_uid=st_uid, series_uid=se_uid,
                               extra_tags={**tags, "ImageComments": _ascii(". ".join(w for w in words if w), 10240)})
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------
# reading back
def read_study(folder: str | Path, hu_range: tuple[float, float] = REPRESENTABLE_HU) -> dict[str, np.ndarray]:
    """An exported study read back with ctinv's loader: ``{series folder: (N, H, W) float32 HU}``,
    instances in InstanceNumber order. ``hu_range`` defaults to everything the export can store
    (difference series are not CT slices, so the loader's plausible-CT check would not fit them)."""
    out = {}
    for series in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        files = sorted(series.glob("*.dcm"),
                       key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))
        out[series.name] = np.stack([read_slice_hu(f, hu_range=hu_range) for f in files])
    return out
