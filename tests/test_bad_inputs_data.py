"""Bad data input and faults in the data stage (issue 14): every DICOM header that would make HU
wrong, every loaded slice outside the plausible HU range, data roots that cannot work, and a
simulated-data cache that must check itself and survive SIGKILL without leftovers or orphans.

Each DICOM case writes a tiny patient with ``write_patient`` and damages it with pydicom; each
asserts the error type and that the message names the offending file or patient and the fix."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGLosslessSV1

from ctinv_utils.provenance import sha256_file
from ctinv_utils.data import dicom_io, simulated
from ctinv_utils.data.dataset import load_data
from ctinv_utils.data.dicom_io import HU_RANGE, check_hu, discover_patients, read_slice_hu, write_patient
from ctinv_utils.data.simulated import SimulationConfig, check_cache, simulated_data_root
from ctinv_utils.errors import (CTInvError, DataRootError, DicomFileError, DicomHeaderError, DicomPairingError,
                                DicomSeriesError, DicomValueError)

REPO = Path(__file__).resolve().parent.parent
TINY = SimulationConfig(image_size=64, n_views=32, patients_per_region=1, min_slices=1, max_slices=2, seed=3)


# ---------------------------------------------------------------------------------------------
# helpers
def _patient(root: Path, pid: str = "L001", n: int = 3, size: int = 16, seed: int = 0, layout: str = "tcia",
             full_size: int | None = None):
    """Write one patient (HU in -1000..1000) and return its (low, full) series folders."""
    rng = np.random.default_rng(seed)
    full = rng.uniform(-1000, 1000, size=(n, size, size)).astype(np.float32)
    low = full + rng.normal(0, 30, size=full.shape).astype(np.float32)
    lo_dir, full_dir = write_patient(root, pid, low, full, np.arange(n, dtype=float), 0.7, layout=layout)
    if full_size is not None:  # rewrite the full-dose series at another matrix size
        shutil.rmtree(full_dir)
        big = rng.uniform(-1000, 1000, size=(n, full_size, full_size)).astype(np.float32)
        _, full_dir = write_patient(root / "_other", pid, big, big, np.arange(n, dtype=float), 0.7, layout=layout)
        shutil.move(str(full_dir), str(lo_dir.parent / full_dir.name))
        shutil.rmtree(root / "_other")
        full_dir = lo_dir.parent / full_dir.name
    return lo_dir, full_dir


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def _edit(path: Path, change) -> Path:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)
    return path


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg, f"message spans lines: {msg!r}"
    return msg


# ---------------------------------------------------------------------------------------------
# rescale: intercept, slope
def test_missing_rescale_intercept_is_an_error(tmp_path):
    lo_dir, _ = _patient(tmp_path)
    bad = _edit(_files(lo_dir)[1], lambda ds: ds.__delattr__("RescaleIntercept"))
    for call in (lambda: discover_patients(tmp_path), lambda: read_slice_hu(bad)):
        with pytest.raises(DicomHeaderError) as e:
            call()
        msg = _one_line(e)
        assert str(bad) in msg and "RescaleIntercept is missing" in msg and "re-export" in msg
    with pytest.warns(UserWarning, match="skipping"):  # the documented way out: leave the file out
        (p,) = discover_patients(tmp_path, on_bad_file="skip")
    assert p.n_slices == 2 and p.skipped == [str(bad)]


def test_missing_rescale_slope_warns_and_assumes_one(tmp_path):
    lo_dir, full_dir = _patient(tmp_path)
    for f in _files(lo_dir):
        _edit(f, lambda ds: ds.__delattr__("RescaleSlope"))
    with pytest.warns(UserWarning, match=r"patient L001: RescaleSlope missing: 1 assumed .*3 of 6 files"):
        (p,) = discover_patients(tmp_path)
    assert p.notes and "RescaleSlope" in p.notes[0]
    ds = pydicom.dcmread(p.low_files[0])
    with pytest.warns(UserWarning, match="RescaleSlope missing"):
        hu = read_slice_hu(p.low_files[0])
    assert np.array_equal(hu, ds.pixel_array.astype(np.float32) - 1024)  # slope 1, intercept kept


@pytest.mark.parametrize("slope", ["NaN", "inf", "0", "-1", "1000", "0.0001", "abc"])
def test_nan_or_absurd_slope_is_an_error(tmp_path, slope):
    lo_dir, _ = _patient(tmp_path)
    bad = _files(lo_dir)[0]
    ds = pydicom.dcmread(bad)
    ds.RescaleSlope = "1"  # then patch the bytes, as a broken exporter would have written them
    ds.save_as(bad)
    raw = bad.read_bytes()
    tag = b"\x28\x00\x53\x10DS"  # (0028,1053) RescaleSlope, explicit VR little endian
    i = raw.index(tag)
    value = slope.encode() + (b" " if len(slope) % 2 else b"")
    raw = raw[:i + 6] + len(value).to_bytes(2, "little") + value + raw[i + 8 + 2:]
    bad.write_bytes(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own "invalid DS" warning
        with pytest.raises(DicomHeaderError) as e:
            discover_patients(tmp_path)
    msg = _one_line(e)
    assert str(bad) in msg and "RescaleSlope is" in msg and "re-download" in msg


def test_intercept_far_out_of_range_is_an_error(tmp_path):
    lo_dir, _ = _patient(tmp_path)
    bad = _edit(_files(lo_dir)[0], lambda ds: setattr(ds, "RescaleIntercept", "1e6"))
    with pytest.raises(DicomHeaderError, match=r"RescaleIntercept is 1000000\.0") as e:
        discover_patients(tmp_path)
    assert str(bad) in _one_line(e)


# ---------------------------------------------------------------------------------------------
# pixel spacing, matrix size, positions
def test_missing_pixel_spacing_warns_and_is_nan(tmp_path):
    lo_dir, full_dir = _patient(tmp_path)
    for f in _files(lo_dir) + _files(full_dir):
        _edit(f, lambda ds: ds.__delattr__("PixelSpacing"))
    with pytest.warns(UserWarning, match=r"patient L001: PixelSpacing missing: pixel size unknown"):
        (p,) = discover_patients(tmp_path)
    assert np.isnan(p.pixel_mm) and p.n_slices == 3


def test_malformed_pixel_spacing_is_an_error(tmp_path):
    lo_dir, _ = _patient(tmp_path)
    bad = _edit(_files(lo_dir)[2], lambda ds: setattr(ds, "PixelSpacing", [-0.7, 0.7]))
    with pytest.raises(DicomHeaderError, match="PixelSpacing is .* not two positive numbers") as e:
        discover_patients(tmp_path)
    assert str(bad) in _one_line(e)


def test_low_and_full_of_different_pixel_spacing(tmp_path):
    lo_dir, full_dir = _patient(tmp_path)
    bad = _edit(_files(lo_dir)[1], lambda ds: setattr(ds, "PixelSpacing", [0.9, 0.9]))
    with pytest.raises(DicomPairingError, match="0.9 mm pixels but its full-dose twin") as e:
        discover_patients(tmp_path)
    assert str(bad) in _one_line(e) and str(_files(full_dir)[1]) in str(e.value)


def test_low_and_full_of_different_matrix_size(tmp_path):
    lo_dir, full_dir = _patient(tmp_path, size=16, full_size=24)
    with pytest.raises(DicomPairingError) as e:
        discover_patients(tmp_path)
    msg = _one_line(e)
    assert "is 16x16 but its full-dose twin" in msg and "24x24" in msg
    assert str(_files(lo_dir)[0]) in msg and str(_files(full_dir)[0]) in msg and "re-download" in msg
    with pytest.warns(UserWarning, match="leaving the pair out"):
        with pytest.raises(DataRootError, match="no pairable patient is left.*L001"):
            discover_patients(tmp_path, on_bad_file="skip")


def test_two_slices_at_one_table_position(tmp_path):
    lo_dir, _ = _patient(tmp_path)
    a, b = _files(lo_dir)[:2]
    _edit(b, lambda ds: (setattr(ds, "ImagePositionPatient", [0, 0, 0.0]), setattr(ds, "SliceLocation", 0.0)))
    with pytest.raises(DicomPairingError, match="same table position z = 0.00 mm") as e:
        discover_patients(tmp_path)
    msg = _one_line(e)
    assert str(a) in msg and str(b) in msg and "remove the wrong file" in msg
    with pytest.warns(UserWarning, match="leaving both out"):
        (p,) = discover_patients(tmp_path, on_bad_file="skip")
    assert p.n_slices == 1 and {str(a), str(b)} <= set(p.skipped)


def test_the_same_image_twice_is_kept_once(tmp_path):
    lo_dir, _ = _patient(tmp_path)
    a = _files(lo_dir)[0]
    shutil.copy(a, lo_dir / "1-001 (copy).dcm")
    with pytest.warns(UserWarning, match=r"copies of one image .*keeping the first"):
        (p,) = discover_patients(tmp_path)
    assert p.n_slices == 3


def test_garbled_table_position_is_one_line(tmp_path):
    lo_dir, _ = _patient(tmp_path)
    bad = _edit(_files(lo_dir)[0], lambda ds: (ds.__delattr__("ImagePositionPatient"),
                                               ds.__delattr__("SliceLocation")))
    with pytest.raises(DicomHeaderError, match="neither ImagePositionPatient nor SliceLocation") as e:
        discover_patients(tmp_path)
    assert str(bad) in _one_line(e)


# ---------------------------------------------------------------------------------------------
# series
@pytest.mark.parametrize("which", ["Full Dose Images", "Low Dose Images"])
def test_two_series_of_one_dose(tmp_path, which):
    lo_dir, full_dir = _patient(tmp_path)
    first = full_dir if which.startswith("Full") else lo_dir
    second = first.parent.parent / "02-01-2000-NA-NA-00001" / first.name.replace("1.000000", "2.000000")
    shutil.copytree(first, second)
    with pytest.raises(DicomSeriesError) as e:
        discover_patients(tmp_path)
    msg = _one_line(e)
    assert f"patient L001: 2 '{which}' series" in msg and first.name in msg and second.name in msg
    assert "move all but one out" in msg


def test_one_folder_mixing_two_series(tmp_path):
    lo_dir, _ = _patient(tmp_path)
    _edit(_files(lo_dir)[2], lambda ds: setattr(ds, "SeriesInstanceUID", "1.2.3.4"))
    with pytest.raises(DicomSeriesError, match=r"patient L001: the low-dose folder .* mixes 2 series") as e:
        discover_patients(tmp_path)
    assert str(lo_dir) in _one_line(e) and "keep one series per folder" in str(e.value)


def test_series_of_another_patient(tmp_path):
    lo_dir, _ = _patient(tmp_path)
    for f in _files(lo_dir):
        _edit(f, lambda ds: setattr(ds, "PatientID", "L999"))
    with pytest.raises(DicomSeriesError, match=r"patient L001: its slices carry 2 PatientIDs \(L001, L999\)") as e:
        discover_patients(tmp_path)
    assert "put each series under its own patient" in _one_line(e)


def test_empty_series_folder(tmp_path):
    lo_dir, _ = _patient(tmp_path)
    for f in _files(lo_dir):
        f.unlink()
    _patient(tmp_path, "L002")  # a good patient: the empty one is still named in 'raise'
    with pytest.raises(DicomSeriesError, match="patient L001: the low-dose series folder .* is empty") as e:
        discover_patients(tmp_path)
    assert str(lo_dir) in _one_line(e)
    with pytest.warns(UserWarning, match="leaving out patient L001"):
        (p,) = discover_patients(tmp_path, on_bad_file="skip")
    assert p.patient_id == "L002"


# ---------------------------------------------------------------------------------------------
# pixel values
def test_signedness_flip_is_out_of_the_hu_range(tmp_path):
    """PixelRepresentation 0 (unsigned) on signed data: -1100 HU (stored -76) reads as 64 436 HU."""
    lo_dir, _ = _patient(tmp_path)
    bad = _files(lo_dir)[0]
    ds = pydicom.dcmread(bad)
    stored = ds.pixel_array.copy()
    stored[0, 0] = -76
    ds.PixelData = stored.tobytes()
    ds.PixelRepresentation = 0
    ds.save_as(bad)
    with pytest.raises(DicomValueError) as e:
        read_slice_hu(bad)
    msg = _one_line(e)
    assert str(bad) in msg and "outside the plausible CT range -3100 to 4000 HU" in msg and "64436" in msg
    assert "PixelRepresentation" in msg and "re-download" in msg
    data = load_data(tmp_path, progress=False)
    with pytest.raises(DicomValueError, match=str(bad)):
        data.slice_hu(0, 0)
    wide = load_data(tmp_path, progress=False, hu_range=(-3100, 70000))  # the documented way out
    assert wide.slice_hu(0, 0)[0].max() == 64436


def test_shifted_intercept_is_out_of_the_hu_range(tmp_path):
    lo_dir, _ = _patient(tmp_path)
    bad = _edit(_files(lo_dir)[0], lambda ds: setattr(ds, "RescaleIntercept", -9000))
    with pytest.raises(DicomValueError, match="values span .* outside the plausible CT range") as e:
        read_slice_hu(bad)
    assert str(bad) in _one_line(e)


def test_non_finite_hu_is_an_error(tmp_path):
    image = np.zeros((4, 4), np.float32)
    image[1, 2] = np.nan
    with pytest.raises(DicomValueError, match=r"slice\.dcm: 1 of 16 pixels are NaN or infinite.*re-download"):
        check_hu(image, tmp_path / "slice.dcm")
    check_hu(np.array([[HU_RANGE[0], HU_RANGE[1]]], np.float32), "ok.dcm")  # the bounds themselves pass


def test_truncated_pixel_data_is_one_line(tmp_path):
    lo_dir, _ = _patient(tmp_path)
    bad = _files(lo_dir)[0]
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(DicomFileError, match="pixel data cannot be decoded") as e:
        read_slice_hu(bad)
    assert str(bad) in _one_line(e) and "re-download" in str(e.value)


def test_compressed_without_decoder_names_the_package(tmp_path):
    lo_dir, _ = _patient(tmp_path)
    bad = _files(lo_dir)[0]
    ds = pydicom.dcmread(bad)
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1  # claims JPEG; the bytes are not
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8 not really a jpeg \xff\xd9"])
    ds.save_as(bad, enforce_file_format=True)
    with pytest.raises(DicomFileError) as e:
        read_slice_hu(bad)
    msg = _one_line(e)
    assert str(bad) in msg and "pip install pylibjpeg" in msg


# ---------------------------------------------------------------------------------------------
# data roots
def test_data_root_that_is_a_file(tmp_path):
    f = tmp_path / "data.zip"
    f.write_bytes(b"PK")
    for call in (lambda: discover_patients(f), lambda: load_data(f, progress=False)):
        with pytest.raises(DataRootError) as e:
            call()
        msg = _one_line(e)
        assert str(f) in msg and "is a file, not a folder" in msg and "--data" in msg


def test_patient_folder_given_as_root(tmp_path):
    lo_dir, _ = _patient(tmp_path)
    patient = lo_dir.parent.parent
    with pytest.raises(DataRootError, match="looks like one patient's folder: pass the folder above it") as e:
        discover_patients(patient)
    assert str(patient) in _one_line(e)


def test_root_without_pairable_patient_fails_before_reading_headers(tmp_path, monkeypatch):
    for pid in ("L001", "C002", "N003"):
        lo_dir, full_dir = _patient(tmp_path, pid)
        shutil.rmtree(lo_dir if pid != "C002" else full_dir)

    def no_headers(path):
        raise AssertionError("read a header before the layout was checked")

    monkeypatch.setattr(dicom_io, "read_slice_header", no_headers)  # what "before" means: no header read
    with pytest.raises(DataRootError) as e:
        load_data(tmp_path, progress=False)
    msg = _one_line(e)
    assert "none of its 3 patient folders holds a pairable low- and full-dose series" in msg
    assert "patient C002: has" in msg and "patient L001" in msg and "expected the TCIA layout" in msg
    assert isinstance(e.value, CTInvError)


def test_root_whose_patients_all_have_bad_headers(tmp_path):
    for pid in ("L001", "L002"):
        lo_dir, _ = _patient(tmp_path, pid)
        for f in _files(lo_dir):
            _edit(f, lambda ds: ds.__delattr__("RescaleIntercept"))
    with pytest.warns(UserWarning):
        with pytest.raises(DataRootError) as e:
            discover_patients(tmp_path, on_bad_file="skip")
    msg = _one_line(e)
    assert "no pairable patient is left" in msg and "L001" in msg and "L002" in msg


# ---------------------------------------------------------------------------------------------
# the simulated-data cache checks itself
@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory):
    """A correctly generated tiny data set (its own cache) and its {file: sha256}."""
    cache = tmp_path_factory.mktemp("reference-cache")
    old = os.environ.get("CTINV_CACHE")
    os.environ["CTINV_CACHE"] = str(cache)
    try:
        root = simulated_data_root(TINY, progress=False)
    finally:
        os.environ["CTINV_CACHE"] = old
    return root, _checksums(root)


def _checksums(root: Path) -> dict[str, str]:
    return {rel: sha256_file(p) for rel, p in simulated._data_files(root).items()}


@pytest.fixture
def cached(tmp_path, monkeypatch, tiny_reference):
    """A private cache holding a copy of the reference data (times preserved); returns its folder."""
    monkeypatch.setenv("CTINV_CACHE", str(tmp_path / "cache"))
    final = tmp_path / "cache" / "simulated" / TINY.hash
    shutil.copytree(tiny_reference[0], final)  # copy2: modification times kept
    assert simulated_data_root(TINY, progress=False) == final  # valid as copied: no regeneration
    return final


def _regenerates(final: Path, reference: dict, reason: str):
    with pytest.warns(UserWarning, match=f"simulated data cache {final} .*{reason}.*; regenerating it"):
        assert simulated_data_root(TINY, progress=False) == final
    assert _checksums(final) == reference
    assert check_cache(final, TINY, "full") is None
    assert not [p for p in final.parent.iterdir() if p.name.endswith(".tmp")]


def test_cache_without_completion_marker_is_regenerated(cached, tiny_reference):
    (cached / simulated.DONE_MARKER).unlink()
    _regenerates(cached, tiny_reference[1], "has no completion marker simulation.json")


def test_cache_with_a_missing_file_is_regenerated(cached, tiny_reference):
    victim = sorted(cached.rglob("*.dcm"))[0]
    victim.unlink()
    _regenerates(cached, tiny_reference[1], r"lacks 1 of its \d+ files")


def test_cache_with_an_added_file_is_regenerated(cached, tiny_reference):
    stray = sorted(cached.rglob("*.dcm"))[0].with_name("9-999.dcm")
    shutil.copy(sorted(cached.rglob("*.dcm"))[0], stray)
    _regenerates(cached, tiny_reference[1], "holds 1 files its generator did not write")


def test_cache_with_a_changed_file_is_regenerated(cached, tiny_reference):
    victim = sorted(cached.rglob("*.dcm"))[-1]
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF  # same size, one pixel changed; the write changes the modification time
    victim.write_bytes(bytes(raw))
    _regenerates(cached, tiny_reference[1], "changed since it was written")


def test_changed_file_with_its_old_time_needs_the_full_check(cached, tiny_reference):
    victim = cached / "phantom_labels.npz"
    st = victim.stat()
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    victim.write_bytes(bytes(raw))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # hide the change from the quick check
    assert check_cache(cached, TINY, "quick") is None  # documented limit of the quick check
    assert "phantom_labels.npz changed" in check_cache(cached, TINY, "full")
    with pytest.warns(UserWarning, match="phantom_labels.npz changed"):
        load_data(None, TINY.to_dict(), progress=False, verify="full")
    assert _checksums(cached) == tiny_reference[1]


def test_copied_cache_is_rehashed_once(cached, tiny_reference):
    for p in cached.rglob("*"):
        os.utime(p, ns=(1, 10**18))  # as after a copy without -p: new times, same content
    assert check_cache(cached, TINY) is None  # hashed, found equal, times recorded
    table = json.loads((cached / simulated.DONE_MARKER).read_text())["files"]
    assert all(e["mtime_ns"] == 10**18 for e in table.values())


def test_cache_with_an_edited_marker_is_regenerated(cached, tiny_reference):
    marker = cached / simulated.DONE_MARKER
    rec = json.loads(marker.read_text())
    victim = sorted(rec["files"])[0]
    rec["files"][victim]["sha256"] = "0" * 64
    marker.write_text(json.dumps(rec))
    _regenerates(cached, tiny_reference[1], "checksum table was changed")
    rec = json.loads(marker.read_text())
    del rec["files"]  # a marker written before checksums existed
    marker.write_text(json.dumps(rec))
    _regenerates(cached, tiny_reference[1], "without a readable checksum table")


def test_bad_verify_mode(cached, monkeypatch):
    with pytest.raises(CTInvError, match="verify .* must be one of .* not 'fast'"):
        simulated_data_root(TINY, verify="fast")
    monkeypatch.setenv(simulated.VERIFY_ENV, "fast")
    with pytest.raises(CTInvError, match=r"verify \(or \$CTINV_VERIFY_DATA\) must be one of"):
        simulated_data_root(TINY)
    assert simulated_data_root(TINY, verify="full") == cached  # an explicit argument beats the variable


def test_stale_temp_folders_go_and_live_ones_stay(tmp_path, monkeypatch, tiny_reference):
    monkeypatch.setenv("CTINV_CACHE", str(tmp_path))
    parent = tmp_path / "simulated"
    mine = parent / f".{TINY.hash}.99999.dead.tmp"
    other = parent / ".0123456789ab.4242.live.tmp"
    for d in (mine, other):
        (d / "LDCT-and-Projection-data").mkdir(parents=True)
    unrelated = parent / "notes.tmp"
    unrelated.write_text("not ours")
    with simulated.writer_lock(parent, "0123456789ab"):  # a live writer of another configuration
        simulated_data_root(TINY, progress=False)
        assert not mine.exists() and other.is_dir()
        assert simulated.remove_stale_temps(parent) == []
    assert simulated.remove_stale_temps(parent) == [other] and not other.exists()
    assert unrelated.is_file()
    assert _checksums(parent / TINY.hash) == tiny_reference[1]


def test_valid_cache_start_removes_leftovers(cached, monkeypatch):
    """A writer killed after installing the data but before deleting the old copy, and a marker
    rewrite killed halfway: the next start finds the cache valid and still removes both."""
    old = cached.parent / f".{TINY.hash}.99999.dead.old.tmp"
    (old / "LDCT-and-Projection-data").mkdir(parents=True)
    half = cached / f".{simulated.DONE_MARKER}.x1y2.tmp"
    half.write_text("{")
    monkeypatch.setattr(simulated, "generate", lambda *a, **k: pytest.fail("regenerated a valid cache"))
    assert simulated_data_root(TINY, progress=False) == cached
    assert not old.exists() and not half.exists()


# ---------------------------------------------------------------------------------------------
# faults: SIGKILL during generation, two writers at once
_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from ctinv_utils.data import simulated
    real = simulated._simulate_patient
    def slow(args):  # runs in a worker: leave a trace, then take long enough to be killed
        signal_dir = os.environ["SIGNAL_DIR"]
        open(os.path.join(signal_dir, f"sim-{args[1]['patient_id']}-{os.getpid()}"), "w").close()
        time.sleep(float(os.environ["SLOW_S"]))
        return real(args)
    simulated._simulate_patient = slow
    cfg = simulated.SimulationConfig(**{cfg})
    print("ROOT", simulated.simulated_data_root(cfg, progress=False), flush=True)
""").replace("{cfg}", repr(TINY.to_dict()))


def _lock_is_free(parent: Path, key: str) -> bool:
    fd = simulated._try_lock(parent, key, wait=False)
    if fd is not None:
        os.close(fd)
    return fd is not None


def _finish(procs, timeout: float, strays=()) -> list[tuple[str, str]]:
    """communicate() with a deadline: a process whose output pipe is kept open by orphaned workers
    fails the test (after the strays and processes are killed) instead of hanging it."""
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout))
    except subprocess.TimeoutExpired:
        for pid in [*strays, *(p.pid for p in procs)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for p in procs:
            p.communicate()
        pytest.fail(f"a process or its workers still ran after {timeout} s (orphans keep its output open)")
    return outs


def _start(cache: Path, signal_dir: Path, slow_s: float) -> subprocess.Popen:
    env = {**os.environ, "CTINV_CACHE": str(cache), "SIGNAL_DIR": str(signal_dir), "SLOW_S": str(slow_s),
           "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", _SCRIPT], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _children(pid: int) -> set[int]:
    """PIDs of all descendants of ``pid`` (from /proc; psutil is not a dependency)."""
    kids, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                new = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(new - kids)
            kids |= new
    return kids


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"  # a zombie is dead, only not yet reaped


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


needs_proc = pytest.mark.skipif(not Path("/proc/self/task").is_dir() or sys.platform != "linux",
                                reason="the orphan check reads /proc (Linux)")


@needs_proc
@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_during_generation_leaves_nothing(tmp_path, monkeypatch, tiny_reference, seed):
    cache, signal_dir = tmp_path / "cache", tmp_path / "signals"
    signal_dir.mkdir()
    proc = _start(cache, signal_dir, slow_s=0.6)
    workers: set[int] = set()
    try:
        assert _wait_for(lambda: any(signal_dir.iterdir()) or proc.poll() is not None, 60), "no worker started"
        assert proc.poll() is None, proc.communicate()
        time.sleep(random.Random(seed).uniform(0.0, 1.2))  # a seeded point during the generation
        workers = _children(proc.pid) | {int(f.name.rsplit("-", 1)[1]) for f in signal_dir.iterdir()}
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        _finish([proc], 20, workers)
    assert workers - {proc.pid}, "killed before any worker existed"
    assert _wait_for(lambda: not any(_alive(p) for p in workers), 10), \
        f"orphaned workers: {[p for p in workers if _alive(p)]}"
    parent = cache / "simulated"
    assert _lock_is_free(parent, TINY.hash), "the writer lock is still held after its holder died"
    assert not (parent / TINY.hash).exists() and [p for p in parent.iterdir() if p.name.endswith(".tmp")]
    # the re-run (the next start of the same writer) cleans up and produces the same data
    monkeypatch.setenv("CTINV_CACHE", str(cache))
    root = simulated_data_root(TINY, progress=False)
    assert _checksums(root) == tiny_reference[1]
    assert not [p for p in root.parent.iterdir() if p.name.endswith(".tmp")]
    assert not [p for p in _children(os.getpid()) if _alive(p)], "the re-run left worker processes"


@needs_proc
def test_two_writers_at_once_generate_once(tmp_path, tiny_reference):
    cache, signal_dir = tmp_path / "cache", tmp_path / "signals"
    signal_dir.mkdir()
    procs = [_start(cache, signal_dir, slow_s=1.5) for _ in range(2)]
    outs = _finish(procs, 120)
    assert [p.returncode for p in procs] == [0, 0], outs
    roots = {line.split(" ", 1)[1] for out, _ in outs for line in out.splitlines() if line.startswith("ROOT")}
    assert roots == {str(cache / "simulated" / TINY.hash)}
    simulated_ids = sorted(f.name.split("-")[1] for f in signal_dir.iterdir())
    assert simulated_ids == ["C001", "L001", "N001"]  # each patient simulated once: one generation
    assert _checksums(Path(roots.pop())) == tiny_reference[1]
    assert not [p for p in (cache / "simulated").iterdir() if p.name.endswith(".tmp")]
