"""DICOM export for a radiologist's viewer: HU round trip (pydicom and ctinv's loader), window presets,
valid and unique UIDs, one study per case, deterministic and atomic re-export, the CLI on a tiny run."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID

from ctinv_utils.pipeline.artifacts import Artifacts
from ctinv_utils.data.dicom_export import (REPRESENTABLE_HU, invariance_study, natural_study, read_study,
                                           write_study)
from ctinv_utils.data.dicom_io import read_slice_hu, write_ct_slice
from ctinv_utils.errors import BadArgumentError, DicomValueError
from ctinv_utils.tools.export import ExportError, main

REPO = Path(__file__).resolve().parent.parent
H, W = 12, 10


def _case(seed=0):
    """x with air padding (-1024) and dense bone (2000), fractional HU; x_inv reaching 2000 where x is
    air, so x_inv - x is +3024 there and -1500 elsewhere."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1000, 1000, (H, W))
    x[0, :] = -1024.0
    x[1, 0], x[1, 1], x[1, 2] = 2000.0, 40.5, -7.49
    f_x = x * 0.5 + rng.normal(0, 3, (H, W))
    x_inv = np.stack([x + rng.normal(0, 30, (H, W)), x - 1500.0])
    x_inv[1, 0, 0] = 2000.0
    f_x_inv = f_x[None] + rng.normal(0, 5, (2, H, W))
    return dict(x_hu=x, f_x_hu=f_x, x_inv_hu=x_inv, f_x_inv_hu=f_x_inv, alphas=[0.01, 0.1])


def _hu(ds):
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _files(folder):
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


@pytest.fixture
def exported(tmp_path):
    c = _case()
    study = invariance_study(**c, denoiser="cnn10", distance="mse", pixel_mm=0.75, region="chest",
                             full_hu=c["x_hu"] + 3.0, note="test run")
    return c, study, write_study(study, tmp_path / "out", patient_name="CTINV^T", patient_id="CTINV-T")


def test_round_trip_to_the_same_integer_hu(exported):
    """Every file, read with pydicom and with ctinv's loader, gives the input rounded to integer HU
    (stored int16 at 1 HU, RescaleIntercept -1024, numpy's round half to even), negatives included."""
    c, _, folder = exported
    x, f_x, x_inv, f_inv = (np.asarray(c[k], dtype=np.float64) for k in ("x_hu", "f_x_hu", "x_inv_hu", "f_x_inv_hu"))
    expected = {"001_x": x, "002_full_dose": x + 3.0, "003_f_x": f_x}
    for i, a in enumerate(("0.01", "0.1")):
        n = 10 * (i + 1)
        expected.update({f"{n + 1:03d}_x_inv_alpha{a}": x_inv[i], f"{n + 2:03d}_f_x_inv_alpha{a}": f_inv[i],
                         f"{n + 3:03d}_x_inv-x_alpha{a}": x_inv[i] - x,
                         f"{n + 4:03d}_f_x_inv-f_x_alpha{a}": f_inv[i] - f_x})
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)
    assert np.round((x_inv[1] - x).min()) == -1500 and (x_inv[1] - x).max() == 3024  # a difference with both signs
    back = read_study(folder)
    for name, image in expected.items():
        (path,) = (folder / name).glob("*.dcm")
        want = np.round(image)
        assert np.array_equal(_hu(pydicom.dcmread(path)), want), name
        assert np.array_equal(read_slice_hu(path, hu_range=REPRESENTABLE_HU), want), name
        assert np.array_equal(back[name][0], want), name
    assert back["001_x"][0, 1, 1] == 40.0 and back["001_x"][0, 1, 2] == -7.0 and back["001_x"][0, 0, 0] == -1024.0


def test_headers_windows_uids_and_no_source_identifiers(exported):
    _, study, folder = exported
    datasets = {p: pydicom.dcmread(p) for p in _files(folder)}
    assert len(datasets) == len(study.series) == 11  # x, full, f(x); per alpha x_inv, f(x_inv) and 2 differences
    study_uids = {ds.StudyInstanceUID for ds in datasets.values()}
    series_uids = {ds.SeriesInstanceUID for ds in datasets.values()}
    sop_uids = [ds.SOPInstanceUID for ds in datasets.values()]
    assert len(study_uids) == 1 and len(series_uids) == len(datasets) and len(set(sop_uids)) == len(sop_uids)
    assert len({ds.FrameOfReferenceUID for ds in datasets.values()}) == 1  # viewers may link the series
    for uid in study_uids | series_uids | set(sop_uids) | {ds.FrameOfReferenceUID for ds in datasets.values()}:
        assert UID(uid).is_valid and len(uid) <= 64, uid
    numbers = [int(ds.SeriesNumber) for ds in datasets.values()]
    assert len(set(numbers)) == len(numbers)
    for path, ds in datasets.items():
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.Modality == "CT" and list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
        assert str(ds.PatientName) == "CTINV^T" and ds.PatientID == "CTINV-T" and ds.PatientIdentityRemoved == "YES"
        assert ds.StudyDescription == "ctinv invariance  CNN-10  bounded MSE" and ds.BodyPartExamined == "CHEST"
        assert list(map(float, ds.PixelSpacing)) == [0.75, 0.75] and int(ds.InstanceNumber) == 1
        assert ds.StudyDate and ds.StudyTime and "test run" in ds.ImageComments
        centers, widths, words = list(ds.WindowCenter), list(ds.WindowWidth), list(ds.WindowCenterWidthExplanation)
        assert len(centers) == len(widths) == len(words) >= 2
        if " - " in ds.SeriesDescription:
            assert (words[0], float(centers[0]), float(widths[0])) == ("DIFFERENCE", 0.0, 100.0), path
        else:
            assert words[:2] == ["LUNG", "ABDOMEN"] and [float(v) for v in centers[:2]] == [-600.0, 50.0], path
    x_inv = pydicom.dcmread(folder / "021_x_inv_alpha0.1" / "0001.dcm")
    assert x_inv.SeriesDescription == "x_inv  CNN-10  bounded MSE  alpha=0.1"


def test_reexport_is_byte_identical_and_replaces_stale_files(exported, tmp_path):
    c, study, folder = exported
    before = {p.relative_to(folder): p.read_bytes() for p in _files(folder)}
    (folder / "099_stale").mkdir()
    (folder / "099_stale" / "0001.dcm").write_bytes(b"old")
    (folder / "001_x" / "0002.dcm").write_bytes(b"old")
    again = write_study(study, tmp_path / "out", patient_name="CTINV^T", patient_id="CTINV-T")
    assert again == folder
    assert {p.relative_to(folder): p.read_bytes() for p in _files(folder)} == before
    assert [p.name for p in (tmp_path / "out").iterdir()] == [folder.name]  # no temporary folder left
    other = write_study(study, tmp_path / "elsewhere", patient_name="CTINV^T", patient_id="CTINV-T")
    assert {p.relative_to(other): p.read_bytes() for p in _files(other)} == before
    changed = invariance_study(**{**c, "x_hu": c["x_hu"] + 5}, denoiser="cnn10", distance="mse", pixel_mm=0.75)
    new = pydicom.dcmread(next(iter(_files(write_study(changed, tmp_path / "changed")))))
    assert new.StudyInstanceUID != pydicom.dcmread(folder / "001_x" / "0001.dcm").StudyInstanceUID


def test_natural_study_keeps_sample_order_and_distinct_studies(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.uniform(-900, 900, (H, W))
    samples = x + rng.normal(0, 20, (3, H, W))
    study = natural_study(x, samples, x * 0.9, samples * 0.9, denoiser="cnn10", pixel_mm=1.0, region="head",
                          std_hu=samples.std(0))
    folder = write_study(study, tmp_path)
    back = read_study(folder)
    assert np.array_equal(back["004_samples"], np.round(samples))
    assert np.array_equal(back["006_samples-x"], np.round(samples - x))
    dss = [pydicom.dcmread(p) for p in sorted((folder / "004_samples").glob("*.dcm"))]
    assert [int(d.InstanceNumber) for d in dss] == [1, 2, 3] and len({d.SeriesInstanceUID for d in dss}) == 1
    assert "sample 2 of 3" in dss[1].ImageComments and dss[0].WindowCenterWidthExplanation[0] == "HEAD"
    inv = write_study(invariance_study(**_case(), denoiser="cnn10", distance="mse", pixel_mm=1.0), tmp_path)
    assert pydicom.dcmread(dss[0].filename).StudyInstanceUID != \
        pydicom.dcmread(inv / "001_x" / "0001.dcm").StudyInstanceUID


def test_representable_range_is_stored_exactly_and_beyond_it_is_an_error(tmp_path):
    lo, hi = REPRESENTABLE_HU
    assert (lo, hi) == (-33792.0, 31743.0)
    x = np.zeros((H, W))
    x[0, 0], x[0, 1] = lo, hi
    folder = write_study(invariance_study(x, x, x[None], x[None], [1.0], denoiser="cnn10", distance="mse",
                                          pixel_mm=1.0, differences=False), tmp_path)
    assert np.array_equal(read_study(folder)["001_x"][0], x)
    for bad, match in ((hi + 1, "outside what int16"), (np.nan, "NaN")):
        y = x.copy()
        y[2, 2] = bad
        with pytest.raises(DicomValueError, match=match):
            write_study(invariance_study(x, x, y[None], x[None], [1.0], denoiser="cnn10", distance="mse",
                                         pixel_mm=1.0), tmp_path / "bad")
    assert not (tmp_path / "bad" / "invariance_cnn10_mse").exists()
    with pytest.raises(BadArgumentError, match="may not set"):
        write_ct_slice(tmp_path / "s.dcm", x, patient_id="P", z_mm=0, pixel_mm=1, instance=1, series_description="s",
                       study_uid="1.2.3", series_uid="1.2.3.4", extra_tags={"RescaleIntercept": 0})
    with pytest.raises(BadArgumentError, match="not DICOM keywords"):
        write_ct_slice(tmp_path / "s.dcm", x, patient_id="P", z_mm=0, pixel_mm=1, instance=1, series_description="s",
                       study_uid="1.2.3", series_uid="1.2.3.4", extra_tags={"WindowCentre": 0})


# ---------------------------------------------------------------------------------------------
# the CLI
def _tiny_run(root: Path, source="simulated (embedded default)") -> Artifacts:
    art = Artifacts(root, preset="t", provenance=lambda **kw: {"created": "2024-03-01T10:20:30+0000",
                                                               "data_source": source, **kw})
    c = _case()
    art.write_json("data", {"source": source, "root": str(root / "nowhere"), "simulation": {"image_size": 256}})
    art.write_arrays("analysis_slice", {"low": c["x_hu"].astype(np.float32), "full": c["x_hu"] + 2},
                     {"patient": "C001", "region": "chest", "slice": 3, "crop": H})
    art.write_arrays("invariance_arrays", {"x": c["x_hu"], "f_x": c["f_x_hu"], "x_inv": c["x_inv_hu"],
                                           "f_x_inv": c["f_x_inv_hu"], "alphas": np.array(c["alphas"])},
                     meta={"denoiser": "cnn10", "distance": "mse"}, keys=dict(denoiser="cnn10", distance="mse"))
    s = c["x_hu"] + np.arange(2)[:, None, None]
    art.write_arrays("natural_arrays", {"x": c["x_hu"], "full": c["x_hu"] + 2, "samples": s, "f_x": c["f_x_hu"],
                                        "f_samples": s, "std": s.std(0)}, meta={}, keys=dict(denoiser="cnn10"))
    return art


def test_cli_exports_a_run(tmp_path, capsys):
    _tiny_run(tmp_path / "art")
    out = tmp_path / "dicom"
    assert main(["--preset", "t", "--artifacts", str(tmp_path / "art"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["invariance_cnn10_mse", "natural_cnn10"]
    ds = pydicom.dcmread(out / "invariance_cnn10_mse" / "002_full_dose" / "0001.dcm")
    assert float(ds.PixelSpacing[0]) == 380.0 / 256  # simulated chest: field of view / matrix size
    assert (ds.StudyDate, ds.StudyTime, str(ds.PatientName)) == ("20240301", "102030", "CTINV^T")
    assert "data: simulated (embedded default)" in ds.ImageComments
    assert np.array_equal(read_study(out / "invariance_cnn10_mse")["001_x"][0], np.round(_case()["x_hu"]))
    assert len(read_study(out / "natural_cnn10")["005_f_samples"]) == 2
    assert "2 studies" in capsys.readouterr().out
    assert main(["--preset", "t", "--artifacts", str(tmp_path / "art"), "--out", str(out), "--no-natural",
                 "--no-differences", "--denoiser", "cnn10"]) == 0
    assert len(list((out / "invariance_cnn10_mse").iterdir())) == 7  # x, full, f(x), 2 x (x_inv, f(x_inv))


def test_cli_missing_artifact_is_one_line_naming_the_notebook(tmp_path):
    _tiny_run(tmp_path / "art")
    r = subprocess.run([sys.executable, "-m", "ctinv_utils", "export", "--preset", "t", "--artifacts",
                        str(tmp_path / "art"), "--out", str(tmp_path / "d"), "--denoiser", "wganvgg",
                        "--distance", "mse"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "invariances/wganvgg_mse.npz" in lines[0], r.stderr
    assert "notebook 03_image_domain_invariances" in lines[0] and "--only 03" in lines[0]
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_cli_unknown_pixel_size_names_the_option(tmp_path, capsys):
    _tiny_run(tmp_path / "art", source="TCIA LDCT-and-Projection-data")
    assert main(["--preset", "t", "--artifacts", str(tmp_path / "art"), "--out", str(tmp_path / "d")]) == 1
    assert "--pixel-mm" in capsys.readouterr().err
    with pytest.raises(ExportError, match="pixel size"):
        from ctinv_utils.tools.export import pixel_size_mm

        pixel_size_mm(Artifacts(tmp_path / "art", "t"), {"region": "chest", "patient": "C001"})
    assert main(["--preset", "t", "--artifacts", str(tmp_path / "art"), "--out", str(tmp_path / "d"),
                 "--pixel-mm", "0.7"]) == 0
