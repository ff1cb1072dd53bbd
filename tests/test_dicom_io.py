"""DICOM round trips in both layouts, pydicom's own CT file, and every bad input."""

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ctinv_utils.data.dicom_io import discover_patients, read_slice_hu, write_patient
from ctinv_utils.errors import DataRootError, DicomFileError, DicomPairingError, DicomSeriesError


def _stacks(seed, n=3, size=32):
    rng = np.random.default_rng(seed)
    full = rng.uniform(-1000, 1500, size=(n, size, size)).astype(np.float32)
    low = full + rng.normal(0, 40, size=full.shape).astype(np.float32)
    return low, full


@pytest.mark.parametrize("layout", ["tcia", "aapm"])
def test_round_trip_both_layouts(tmp_path, layout):
    written = {}
    for pid, seed in (("L067", 0), ("C002", 1), ("N005", 2)):
        low, full = _stacks(seed)
        z = np.array([10.0, 11.0, 12.0])[::-1] if pid == "C002" else np.array([10.0, 11.0, 12.0])
        write_patient(tmp_path, pid, low, full, z, pixel_mm=0.7, layout=layout)
        written[pid] = (low, full, z)
    patients = discover_patients(tmp_path)
    assert [p.patient_id for p in patients] == ["C002", "L067", "N005"]
    assert [p.region for p in patients] == ["chest", "abdomen", "head"]
    assert [p.dose_fraction for p in patients] == [0.10, 0.25, 0.25]
    for p in patients:
        low, full, z = written[p.patient_id]
        order = np.argsort(z)
        assert np.allclose(p.z_mm, z[order])
        assert p.pixel_mm == pytest.approx(0.7)
        for i, src in enumerate(order):
            # stored as int16 HU + 1024, so values round to whole HU and nothing else changes
            assert np.array_equal(read_slice_hu(p.full_files[i]), np.round(full[src]))
            assert np.array_equal(read_slice_hu(p.low_files[i]), np.round(low[src]))


def test_pydicom_ct_small_reads_to_plausible_hu():
    path = get_testdata_file("CT_small.dcm")
    hu = read_slice_hu(path)
    ds = pydicom.dcmread(path)
    assert hu.shape == (128, 128)
    assert np.array_equal(hu, ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    assert -1100 < hu.min() < -500 and 500 < hu.max() < 3000


def test_missing_and_empty_roots(tmp_path):
    with pytest.raises(DataRootError, match="does not exist"):
        discover_patients(tmp_path / "nope")
    with pytest.raises(DataRootError, match="no patient folders"):
        discover_patients(tmp_path)


def test_patient_with_one_series_only(tmp_path):
    low, full = _stacks(0)
    lo_dir, _ = write_patient(tmp_path, "L001", low, full, [0, 1, 2], 0.7)
    shutil.rmtree(lo_dir)
    with pytest.raises(DicomSeriesError, match="L001.*no low-dose series"):
        discover_patients(tmp_path)


def test_unpairable_slices(tmp_path):
    low, full = _stacks(0, n=4)
    lo_dir, _ = write_patient(tmp_path, "L001", low, full, [0, 1, 2, 3], 0.7)
    sorted(lo_dir.iterdir())[-1].unlink()
    with pytest.raises(DicomPairingError, match="3 low-dose and 4 full-dose"):
        discover_patients(tmp_path)
    with pytest.warns(UserWarning, match="keeping the paired slices"):
        (p,) = discover_patients(tmp_path, on_bad_file="skip")
    assert p.n_slices == 3


def test_corrupt_and_non_ct_files(tmp_path):
    low, full = _stacks(0)
    lo_dir, full_dir = write_patient(tmp_path, "L001", low, full, [0, 1, 2], 0.7)
    bad = sorted(lo_dir.iterdir())[0]
    bad.write_bytes(b"this is not DICOM at all")
    with pytest.raises(DicomFileError, match=bad.name):
        discover_patients(tmp_path)
    with pytest.warns(UserWarning):
        (p,) = discover_patients(tmp_path, on_bad_file="skip")
    assert p.n_slices == 2 and str(bad) in p.skipped
    mr = sorted(full_dir.iterdir())[1]
    ds = pydicom.dcmread(mr)
    ds.Modality = "MR"
    ds.save_as(mr)
    with pytest.raises(DicomFileError, match="modality is 'MR'"):
        read_slice_hu(mr)


def test_unknown_bad_file_policy(tmp_path):
    with pytest.raises(ValueError, match="on_bad_file"):
        discover_patients(tmp_path, on_bad_file="ignore")
