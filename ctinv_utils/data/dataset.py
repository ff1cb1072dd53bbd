"""Paired low/full-dose slices in HU, from real DICOM or the embedded simulated data.

:func:`load_data` finds the patients (real TCIA/AAPM DICOM, or the simulated set generated and
cached on first use); :class:`PairedCTData` reads their slices lazily and checks each one.
"""

from __future__ import annotations

import operator
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .dicom_io import HU_RANGE, PatientSeries, check_hu_range, discover_patients, read_slice_hu
from ..errors import BadArgumentError, DicomPairingError
from ..paths import DATA_ENV
from .simulated import simulated_data_root


class PairedCTData:
    """Paired low/full-dose slices of several patients, read lazily, in HU.

    Usually made by :func:`load_data`. ``slice_hu(p, s)`` returns the pair of slice ``s`` of patient
    number ``p``; the most recently used pairs stay in memory up to ``cache_bytes`` (the real data
    set is about 30 GB as float32, far more than fits). Every slice read is checked.

    Parameters
    ----------
    patients : list of PatientSeries
        The patients (from ``ctinv_utils.data.dicom_io.discover_patients``), in ID order.
    source : str
        Where the data comes from, as shown in tables and provenance records.
    root : pathlib.Path, optional
        The data root the patients were found under.
    cache_bytes : int
        Memory for recently read pairs, in bytes (default 2 GiB).
    hu_range : tuple of float
        ``(low, high)`` in HU a pixel must lie in (default ``(-3100, 4000)``).

    Raises
    ------
    BadArgumentError
        No patients, or a malformed ``hu_range``.

    Examples
    --------
    >>> from ctinv_utils import load_data
    >>> data = load_data()               # the simulated data set, generated once and cached
    >>> low_hu, full_hu = data.slice_hu(0, 0)
    >>> low_hu.shape, data.patient_ids[:2]  # doctest: +SKIP
    ((256, 256), ['C001', 'C002'])
    """

    def __init__(self, patients: list[PatientSeries], source: str, root: Path | None = None,
                 cache_bytes: int = 2 * 1024**3, hu_range: tuple[float, float] = HU_RANGE):
        if not patients:
            raise BadArgumentError("PairedCTData needs at least one patient")
        self.patients = list(patients)
        self.source = source
        self.root = root
        self.cache_bytes = int(cache_bytes)
        self.hu_range = check_hu_range(hu_range)
        self._cache: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.patients)

    @property
    def n_slices(self) -> np.ndarray:
        """Slices per patient, ``(P,)`` int, in the order of ``patients``."""
        return np.array([p.n_slices for p in self.patients])

    @property
    def patient_ids(self) -> list[str]:
        """The patients' IDs, in the order of ``patients``."""
        return [p.patient_id for p in self.patients]

    def index_of(self, patient_id: str) -> int:
        """The patient number of ``patient_id`` (a ``ValueError`` when it is not in the data)."""
        return self.patient_ids.index(patient_id)

    def slice_hu(self, patient: int, slice_index: int) -> tuple[np.ndarray, np.ndarray]:
        """One paired slice: low dose and full dose, in HU.

        Parameters
        ----------
        patient : int
            Patient number (as in Python: 0 is the first, -1 the last); :meth:`index_of` turns an
            ID into one.
        slice_index : int
            Slice of that patient, from 0 to ``n_slices[patient] - 1`` (negative counts from the end).

        Returns
        -------
        low_hu : numpy.ndarray
            The low-dose slice ``(H, W)``, float32 in HU.
        full_hu : numpy.ndarray
            Its full-dose twin ``(H, W)``, float32 in HU.

        Raises
        ------
        BadArgumentError
            A patient or slice index that is not an integer or lies outside the data.
        DicomValueError
            A pixel that is not finite or lies outside ``hu_range`` (names the file).
        DicomPairingError
            Low- and full-dose slice of different shapes (names both files).

        Examples
        --------
        >>> low_hu, full_hu = data.slice_hu(data.index_of(data.patient_ids[0]), -1)
        """
        key = (patient, slice_index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        p = self.patients[self._patient_index(patient)]
        n = p.n_slices
        try:
            s = operator.index(slice_index)
        except TypeError:
            raise BadArgumentError(f"slice_index must be an integer, got {slice_index!r} for patient "
                                   f"{p.patient_id}") from None
        if not -n <= s < n:
            raise BadArgumentError(f"patient {p.patient_id} (number {patient}) has {n} slices: slice_index {s} is "
                                   f"outside 0..{n - 1}; pick one in that range (data.patients[{patient}].n_slices)")
        # the loader warned about header defaults once per patient already
        pair = (read_slice_hu(p.low_files[slice_index], self.hu_range, warn=False),
                read_slice_hu(p.full_files[slice_index], self.hu_range, warn=False))
        if pair[0].shape != pair[1].shape:
            raise DicomPairingError(f"patient {p.patient_id}: {p.low_files[slice_index]} is {pair[0].shape} but its "
                                    f"full-dose twin {p.full_files[slice_index]} is {pair[1].shape}; a pair must come "
                                    "from the same reconstruction: re-download the patient's series")
        size = pair[0].nbytes + pair[1].nbytes
        if size <= self.cache_bytes:
            self._cache[key] = pair
            self._cached_bytes += size
            while self._cached_bytes > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached_bytes -= old[0].nbytes + old[1].nbytes
        return pair

    def _patient_index(self, patient) -> int:
        """``patient`` as an index into ``patients``; a BadArgumentError naming the valid range."""
        n = len(self.patients)
        try:
            i = operator.index(patient)
        except TypeError:
            hint = f"; for an ID use data.index_of({patient!r})" if isinstance(patient, str) else ""
            raise BadArgumentError(f"patient must be an integer index, got {patient!r}{hint}") from None
        if not -n <= i < n:
            raise BadArgumentError(f"patient index {i} is outside 0..{n - 1}: the data holds {n} patients "
                                   f"({', '.join(self.patient_ids[:5])}{', ...' if n > 5 else ''}); use "
                                   "data.index_of(patient_id) for an ID")
        return i

    def subset(self, patient_ids) -> "PairedCTData":
        """The same data restricted to ``patient_ids`` (e.g. one split of :func:`split_patients`)."""
        wanted = set(patient_ids)
        return PairedCTData([p for p in self.patients if p.patient_id in wanted], self.source, self.root,
                            self.cache_bytes, self.hu_range)

    def patients_of(self, region: str, ids=None) -> list[int]:
        """Indices of the patients of ``region`` (among ``ids`` when given), in ID order."""
        wanted = None if ids is None else set(ids)
        return [i for i, p in enumerate(self.patients)
                if p.region == region and (wanted is None or p.patient_id in wanted)]

    def middle_slice(self, patient: int) -> tuple[np.ndarray, np.ndarray]:
        """(low_hu, full_hu) of the patient's middle slice."""
        return self.slice_hu(patient, self.patients[patient].n_slices // 2)

    def summary(self) -> list[dict]:
        """One row per region: patients, slices, dose fraction."""
        rows = []
        for region in sorted({p.region for p in self.patients}):
            ps = [p for p in self.patients if p.region == region]
            rows.append(dict(region=region, patients=len(ps), slices=sum(p.n_slices for p in ps),
                             dose_fraction=ps[0].dose_fraction))
        return rows


#: HU window in which :func:`anatomy_crop_origin` measures structure: lung, fat and soft-tissue edges count
#: fully, a bone edge no more than a fat-to-muscle one (a chest crop then holds lung with its vessels and
#: the chest wall, not the spine)
STRUCTURE_WINDOW_HU = (-1000.0, 100.0)


def anatomy_crop_origin(full_hu: np.ndarray, size: int | None) -> tuple[int, int]:
    """Top-left corner (row, col) of the ``size`` x ``size`` window with the most anatomy in a slice.

    A centre crop of a 512 px clinical slice at 0.74 mm shows one organ (a chest's heart); this picks the
    window, inside the body, whose full-dose image (Gaussian-smoothed, sigma 2 px, clipped to
    :data:`STRUCTURE_WINDOW_HU`) has the largest mean gradient magnitude: organ boundaries, vessels,
    lung. Computed from the full-dose image only, so the same window is chosen whatever the noise.
    A window counts as inside the body when at least 95 % of its smoothed pixels are above -950 HU
    (lung, -865 HU, is inside); without such a window, the centre. Deterministic; (0, 0) for None.

    Parameters
    ----------
    full_hu : ndarray, shape (H, W)
        The full-dose slice in HU.
    size : int or None
        Side of the crop in pixels.

    Returns
    -------
    (int, int)
        Row and column of the window's top-left pixel.
    """
    from scipy import ndimage

    H, W = full_hu.shape
    if not size:
        return 0, 0
    if size > min(H, W):
        raise BadArgumentError(f"crop {size} px is larger than the {H}x{W} slice; use a smaller crop or None")
    smooth = ndimage.gaussian_filter(np.asarray(full_hu, dtype=np.float64), 2.0)
    clipped = np.clip(smooth, *STRUCTURE_WINDOW_HU)
    grad = np.hypot(ndimage.sobel(clipped, 0), ndimage.sobel(clipped, 1))

    def window_means(a):  # mean of every size x size window, (H - size + 1, W - size + 1)
        c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        return (c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]) / size**2

    inside = window_means((smooth > -950.0).astype(np.float64)) >= 0.95
    if not inside.any():
        return (H - size) // 2, (W - size) // 2
    score = np.where(inside, window_means(grad), -np.inf)
    r0, c0 = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(r0), int(c0)


def crop_at(image: np.ndarray, origin: tuple[int, int], size: int | None) -> np.ndarray:
    """The ``size`` x ``size`` window of a 2-D image at ``origin`` (row, col); the image for None."""
    if not size:
        return image
    r0, c0 = origin
    return image[r0:r0 + size, c0:c0 + size]


def pick_slice(data: "PairedCTData", patient_ids, region: str, crop: int | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The middle slice of the first of ``patient_ids`` in ``region``, cropped to its ``crop`` px window
    with the most anatomy (:func:`anatomy_crop_origin`): (low_hu, full_hu, where) with ``where`` =
    {patient, slice, region, crop, crop_origin, pixel_mm} (crop_origin: the window's top-left pixel,
    row and column; pixel_mm: the series' PixelSpacing in mm, None where the headers lack it)."""
    ids = data.patients_of(region, patient_ids)
    if not ids:
        have = sorted({data.patients[data.index_of(p)].region for p in patient_ids})
        raise BadArgumentError(f"no patient of region {region!r} among {list(patient_ids)}; choose one of {have}")
    p = data.patients[ids[0]]
    s = p.n_slices // 2
    low, full = data.slice_hu(ids[0], s)
    mm = float(p.pixel_mm)
    origin = anatomy_crop_origin(full, crop)
    return crop_at(low, origin, crop), crop_at(full, origin, crop), {
        "patient": p.patient_id, "slice": s, "region": region, "crop": crop, "crop_origin": list(origin),
        "pixel_mm": mm if mm == mm else None}


def load_data(data_path: str | Path | None = None, simulation: dict | None = None,
              on_bad_file: str = "raise", progress: bool = True, hu_range: tuple[float, float] = HU_RANGE,
              verify: str | None = None) -> PairedCTData:
    """Load paired low/full-dose CT: real DICOM when a path is given, else the simulated data set.

    Real data (TCIA or AAPM layout): the layout and every slice header are checked here, pixel
    values as slices are read. Simulated data: generated on first use, cached, checked against its
    recorded checksums at every load and regenerated when anything is missing or changed.

    Parameters
    ----------
    data_path : str or pathlib.Path, optional
        Root of the real data; None: ``$CTINV_DATA``, and without it the simulated data.
    simulation : dict, optional
        Fields of ``ctinv_utils.data.simulated.SimulationConfig``; None: the defaults.
    on_bad_file : {"raise", "skip"}
        Real data: ``"skip"`` leaves out bad files and unpairable slices or patients, with a warning.
    progress : bool
        Show a progress bar while generating the simulated data.
    hu_range : tuple of float
        ``(low, high)`` in HU every pixel must lie in (default ``(-3100, 4000)``).
    verify : {"quick", "full"}, optional
        Simulated cache check: file list, sizes and times, or SHA-256 of every file (``"full"``);
        None: ``$CTINV_VERIFY_DATA``, else ``"quick"``.

    Returns
    -------
    PairedCTData

    Raises
    ------
    BadArgumentError, SettingsError
        A malformed ``hu_range``, ``on_bad_file``, ``verify`` or ``simulation``.
    DataRootError
        A root that is missing, empty, or holds no pairable patient.
    DicomFileError, DicomSeriesError, DicomPairingError
        A bad header, a missing series or unpairable slices (with ``on_bad_file="raise"``).

    Examples
    --------
    >>> from ctinv_utils import load_data
    >>> data = load_data(simulation={"image_size": 128, "patients_per_region": 3})
    >>> real = load_data("~/data/mayo", on_bad_file="skip")  # doctest: +SKIP
    """
    hu_range = check_hu_range(hu_range)  # before any data is found or generated
    data_path = data_path or os.environ.get(DATA_ENV) or None
    if data_path:
        root = Path(data_path).expanduser()
        return PairedCTData(discover_patients(root, on_bad_file), source=f"TCIA/AAPM DICOM at {root}", root=root,
                            hu_range=hu_range)
    root = simulated_data_root(simulation, progress=progress, verify=verify)
    return PairedCTData(discover_patients(root), source="simulated (embedded default)", root=root, hu_range=hu_range)
