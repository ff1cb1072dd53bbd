"""The simulator check against gecatsim (XCIST): its metrics on inputs with known answers, the gecatsim
phantom files, the pass/fail logic on injected numbers, and (only with ``CTINV_RUN_GECATSIM=1`` and
gecatsim installed: minutes) the whole comparison."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from ctinv_utils.data import noise_measurement as nm
from ctinv_utils.tools import simulator_check as sc


# -- metrics ------------------------------------------------------------------------------------

def test_white_noise_has_a_flat_nps_whose_integral_is_the_variance():
    rng = np.random.default_rng(1)
    sigma, px = 12.0, 0.5
    rois = rng.normal(0.0, sigma, (200, 64, 64))
    nps, fy, fx = nm.nps_2d(rois, px)
    assert nps.shape == (64, 64) and fy[32] == 0 and fx[32] == 0
    f, nps_r = nm.radial_nps(nps, fy, fx)
    assert f.max() <= 1.0 / (2 * px) + 1e-9  # up to Nyquist
    # flat at sigma^2 * pixel area: every annulus within a few % (200 ROIs)
    np.testing.assert_allclose(nps_r[2:], sigma ** 2 * px ** 2, rtol=0.06)
    s = nm.nps_summary(rois, px)
    assert s["std_hu"] == pytest.approx(np.std(rois - rois.mean(axis=(1, 2), keepdims=True)), rel=1e-6)
    # a flat spectrum weights each annulus by its frequency: mean frequency close to 2/3 Nyquist (radial bins)
    assert s["mean_per_mm"] == pytest.approx(np.mean(f), rel=0.05)


def test_difference_of_two_realisations_gives_the_single_image_nps():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 5, (2, 100, 48, 48))
    s = nm.nps_summary(a - b, 0.7, difference=True)
    assert s["std_hu"] == pytest.approx(5.0, rel=0.02)


def _filtered_noise(s_per_mm: float, px: float, n: int, rng) -> np.ndarray:
    """White noise through |H(f)| = f exp(-f^2 / (2 s^2)): the radial NPS is f^2 exp(-f^2/s^2), whose peak
    is at s and whose power-weighted mean frequency is 2 s / sqrt(pi)."""
    fy = np.fft.fftfreq(n, d=px)
    fr = np.hypot(*np.meshgrid(fy, fy, indexing="ij"))
    h = fr * np.exp(-fr ** 2 / (2 * s_per_mm ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, n))) * h))


def test_noise_through_a_known_filter_peaks_where_it_should():
    rng = np.random.default_rng(3)
    px, s, roi = 0.5, 0.25, 64
    field = _filtered_noise(s, px, 1024, rng)
    centres = [(r, c) for r in range(32, 1024 - 32, 64) for c in range(32, 1024 - 32, 64)]
    rois = nm.square_rois(field, centres, roi)
    assert rois.shape == (len(centres), roi, roi)
    summary = nm.nps_summary(rois, px)
    df = 1.0 / (roi * px)
    assert abs(summary["peak_per_mm"] - s) <= df
    assert summary["mean_per_mm"] == pytest.approx(2 * s / np.sqrt(np.pi), abs=0.5 * df)


def test_square_rois_refuse_to_leave_the_image():
    with pytest.raises(ValueError, match="smaller size_px"):
        nm.square_rois(np.zeros((32, 32)), [(5, 16)], 16)


def _quadratic_cylinder(a_hu: float, radius_mm: float, px: float, n: int = 512) -> np.ndarray:
    c = (n - 1) / 2
    r = np.hypot(*np.indices((n, n)) - c) * px
    return np.where(r <= radius_mm, a_hu * (r / radius_mm) ** 2, -1000.0)


def test_a_cylinder_with_quadratic_cupping_gives_the_right_centre_to_edge():
    a, radius, px = 40.0, 150.0, 380.0 / 512
    img = _quadratic_cylinder(a, radius, px)
    cup = nm.cupping_hu(img, px, radius)
    # mean of a (r/R)^2: c^2/2 over the centre disc (c = 0.1), (e1^2 + e2^2)/2 over the edge annulus (0.8-0.9)
    assert cup["centre_minus_edge_hu"] == pytest.approx(a * (0.1 ** 2 - 0.8 ** 2 - 0.9 ** 2) / 2, abs=0.3)
    assert cup["centre_hu"] == pytest.approx(a * 0.1 ** 2 / 2, abs=0.3)
    r, prof = nm.radial_profile(img, px, bin_mm=5.0)
    inside = r < radius - 5
    np.testing.assert_allclose(prof[inside], a * (r[inside] / radius) ** 2, atol=0.6)
    assert nm.cupping_hu(np.zeros((64, 64)), 1.0, 20.0)["centre_minus_edge_hu"] == 0.0


def test_disc_mask_and_annulus():
    m = nm.disc_mask((101, 101), (50, 50), 10)
    assert m.sum() == pytest.approx(np.pi * 100, rel=0.03)
    ring = nm.disc_mask((101, 101), (50, 50), 10, inner_radius_px=5)
    assert ring.sum() == m.sum() - nm.disc_mask((101, 101), (50, 50), 5).sum()


# -- phantoms and the files gecatsim reads -----------------------------------------------------------

def _has_gecatsim() -> bool:
    try:
        import gecatsim  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def abdomen():
    return sc.abdomen_slice(256, 380.0 / 256, noise_roi_px=32)


def test_phantoms_put_their_regions_and_noise_rois_inside_their_materials(abdomen):
    from ctinv_utils.data.phantoms import LABELS

    cyl = sc.water_cylinder(256, 380.0 / 256, noise_roi_px=32)
    for ph in (cyl, abdomen):
        for name, mask in ph.regions.items():
            assert mask.any() and np.all(ph.labels[mask] == ph.materials[name].label), (ph.name, name)
        rois = nm.square_rois(ph.labels, ph.noise_centres_px, ph.noise_roi_px)
        assert np.all(np.isin(rois, [LABELS[t] for t in ("water", "liver", "fat")])), ph.name  # soft tissue
        assert len(ph.noise_centres_px) >= 5, ph.name
    assert np.all(nm.square_rois(cyl.labels, cyl.noise_centres_px, cyl.noise_roi_px) == LABELS["water"])
    assert set(np.unique(abdomen.labels)) == {LABELS[t] for t in ("air", "water", "fat", "liver", "cancellous", "bone")}
    hu = abdomen.image_hu
    assert hu.dtype == np.float32 and hu[0, 0] == -1000.0
    assert np.all(hu[abdomen.regions["liver"]] == 60.0)
    with pytest.raises(ValueError, match="does not fit"):
        sc.water_cylinder(256, 1.0)


def test_material_densities_give_the_painted_hu_at_the_reference_energy():
    from ctinv_utils.data.scanner import xray

    water, rho_w = sc.material_composition(sc.MATERIALS["water"])
    assert rho_w == pytest.approx(1.0) and sum(water.values()) == pytest.approx(1.0)
    fat, rho_fat = sc.material_composition(sc.MATERIALS["fat"])
    assert set(fat) >= {"H", "C", "O"}
    # adipose at its nominal density reads about -76 HU at 70 keV: painted at -100 HU it is less dense
    assert rho_fat < xray.load_tables().density["adipose"]


def test_gecatsim_phantom_files_read_back(tmp_path, abdomen):
    path = sc.write_gecatsim_phantom(abdomen, tmp_path)
    vp = json.loads(path.read_text())
    # the keys gecatsim's Phantom_Voxelized reads, one entry per material
    for key in ("n_materials", "mat_name", "volumefractionmap_filename", "volumefractionmap_datatype", "cols",
                "rows", "slices", "x_size", "y_size", "z_size", "x_offset", "y_offset", "z_offset"):
        assert key in vp and (key == "n_materials" or len(vp[key]) == vp["n_materials"]), key
    assert vp["x_offset"][0] == (256 + 1) / 2  # isocentre at the grid centre
    back = sc.read_gecatsim_phantom(path)
    fractions = abdomen.fractions()
    for i, (mat, (frac, density)) in enumerate(back.items()):
        name = list(fractions)[i]
        np.testing.assert_array_equal(frac, fractions[name])
        assert density == pytest.approx(sc.material_composition(abdomen.materials[name])[1], rel=1e-6)
        assert Path(mat).is_file()
    if _has_gecatsim():  # gecatsim's own readers agree
        from gecatsim.pyfiles.CommonTools import rawread
        from gecatsim.pyfiles.ReadMaterialFile import ReadMaterialFile

        raw = rawread(str(tmp_path / vp["volumefractionmap_filename"][0]), [], "float").reshape(256, 256)
        np.testing.assert_array_equal(raw, fractions[list(fractions)[0]])
        n, density, z, f = ReadMaterialFile(vp["mat_name"][0])
        assert density == pytest.approx(1.0, rel=1e-6) and sorted(z) == [1, 8]


def test_gecatsim_material_file_round_trip(tmp_path):
    path = sc.write_gecatsim_material(tmp_path / "m", {"H": 0.1, "O": 0.9}, 1.05, "test")
    fractions, density = sc.read_gecatsim_material(path)
    assert fractions == {1: 0.1, 8: 0.9} and density == 1.05
    with pytest.raises(ValueError, match="ATOMIC_NUMBER"):
        sc.write_gecatsim_material(tmp_path / "x", {"Xx": 1.0}, 1.0)


def test_gecatsim_spectrum_and_bowtie_files(tmp_path):
    e = np.arange(15.0, 121.0)
    phi = np.exp(-((e - 60) / 20) ** 2)
    spec = sc.write_gecatsim_spectrum(tmp_path / "s.dat", e, phi)
    lines = spec.read_text().splitlines()
    assert int(lines[0]) == e.size and lines[1].startswith("15.000000,")
    bow = sc.write_gecatsim_bowtie(tmp_path / "b.txt", lambda g: 35.0 * np.abs(g), samples=11)
    data = np.loadtxt(bow, comments=["#", "%"])  # as gecatsim reads it
    assert data.shape == (11, 5) and data[0, 1] == pytest.approx(3.5 * 0.5) and np.all(data[:, 2:] == 0)
    if _has_gecatsim():
        from gecatsim.pyfiles.Spectrum import spectrum_read

        ev, iv, _ = spectrum_read(str(spec))
        np.testing.assert_allclose(ev, e)
        np.testing.assert_allclose(iv, phi, rtol=1e-6)


def test_reference_setup_is_our_scanner():
    from ctinv_utils.data.scanner import xray
    from ctinv_utils.data.scanner.geometry import FanBeamGeometry

    g = FanBeamGeometry()
    s = sc.reference_setup()
    assert (s.sid_mm, s.sdd_mm, s.channels, s.channel_mm, s.channel_offset, s.views) == (
        g.source_iso_mm, g.source_detector_mm, g.n_channels, g.channel_pitch_mm, g.channel_offset, g.n_views)
    assert s.detector_mm == xray.DETECTOR_MM and s.reference_kev == xray.REFERENCE_KEV
    assert s.bowtie_al_mm(np.array([0.0]))[0] == 0.0
    assert json.dumps(s.describe())  # JSON-friendly
    with pytest.raises(ValueError, match="no field"):
        sc.reference_setup(bogus=1)


class _Cfg:
    """The parts of a gecatsim cfg the detection callback reads."""

    def __init__(self, incident, evec, air=False):
        self.sim = types.SimpleNamespace(Evec=evec, startViewId=0, isAirScan=air, isPhantomScan=not air,
                                         subViewCount=1, viewCount=10, Wvec=np.ones_like(incident))
        self.scanner = types.SimpleNamespace(detectionGain=2.0)
        self.thisSubView = incident


def test_detection_thins_the_full_dose_counts_binomially():
    evec = np.array([40.0, 80.0])
    incident = np.tile([300.0, 100.0], (20000, 1))  # cells x energy bins
    det = sc._Detection(np.random.default_rng(0), 0.25, True, 0.0)
    cfg = det(_Cfg(incident.copy(), evec), 1, 0)  # view 1: the efficiency (needs gecatsim) is already set
    full = cfg.thisView / 2.0
    low = det.low_views[0] / 2.0
    mean_full = 300 * 40 + 100 * 80
    assert full.mean() == pytest.approx(mean_full, rel=0.01)
    assert low.mean() == pytest.approx(0.25 * mean_full, rel=0.01)
    # thinning: Var(low) = f * sum E^2 lam; low and full are correlated with corr = sqrt(f)
    assert low.var() == pytest.approx(0.25 * (300 * 40 ** 2 + 100 * 80 ** 2), rel=0.05)
    assert np.corrcoef(low, full)[0, 1] == pytest.approx(0.5, abs=0.02)
    # no noise: the expected signal, scaled for the low dose
    quiet = sc._Detection(None, 0.25, False, 1000.0)
    cfg = quiet(_Cfg(incident.copy(), evec), 1, 0)
    np.testing.assert_allclose(cfg.thisView, 2.0 * mean_full)
    np.testing.assert_allclose(quiet.low_views[0], 0.5 * mean_full)


def test_electronic_noise_is_independent_in_each_reading():
    det = sc._Detection(np.random.default_rng(1), 0.25, True, 100.0)
    cfg = det(_Cfg(np.zeros((20000, 2)), np.array([40.0, 80.0])), 1, 0)
    assert cfg.thisView.std() == pytest.approx(100.0, rel=0.03)
    assert det.low_views[0].std() == pytest.approx(100.0, rel=0.03)
    assert abs(np.corrcoef(cfg.thisView, det.low_views[0])[0, 1]) < 0.03


# -- measurements and the targets ---------------------------------------------------------------------

def test_measure_phantom_on_images_with_known_noise_and_numbers(abdomen):
    rng = np.random.default_rng(4)
    clean = abdomen.image_hu.astype(np.float64)
    full = clean + rng.normal(0, 10, clean.shape)
    low = clean + rng.normal(0, 20, clean.shape)
    m = sc.measure_phantom(abdomen, low, full, clean, 0.25)
    assert m["std_full_hu"] == pytest.approx(10, rel=0.05) and m["std_low_hu"] == pytest.approx(20, rel=0.05)
    assert m["ratio"] == pytest.approx(2.0, rel=0.07) and m["expected_ratio"] == 2.0
    assert m["hu"] == {"water": 0.0, "fat": -100.0, "liver": 60.0, "cancellous": 250.0, "bone": 1000.0}
    cyl = sc.water_cylinder(256, 380.0 / 256, noise_roi_px=32)
    clean = cyl.image_hu.astype(np.float64)
    c = sc.measure_phantom(cyl, clean + rng.normal(0, 20, clean.shape), clean + rng.normal(0, 10, clean.shape),
                           clean, 0.25)
    assert c["cupping"]["centre_minus_edge_hu"] == 0.0 and c["profile"]["hu"][0] == 0.0
    assert c["noise_rois"] == len(cyl.noise_centres_px) and c["nps_full"]["peak_per_mm_se"] >= 0


def _measurements(ratio=2.0, peak=(0.20, 0.22), mean=(0.24, 0.25), cup=0.5, unc=(35.0, 38.0),
                  hu=None):
    hu = hu or {"water": (0.5, 0.0), "fat": (-99.0, -101.0), "liver": (61.0, 58.0), "bone": (960.0, 946.0)}

    def sim(i):
        return {"ratio": ratio if i == 0 else 2.0, "nps_full": {"peak_per_mm": peak[i], "mean_per_mm": mean[i]},
                "hu": {k: v[i] for k, v in hu.items()}}

    ours, ref = sim(0), sim(1)
    cyl_ours, cyl_ref = sim(0), sim(1)
    cyl_ours["cupping"], cyl_ref["cupping"] = {"centre_minus_edge_hu": cup}, {"centre_minus_edge_hu": 0.0}
    cyl_ours["cupping_uncorrected"] = {"centre_minus_edge_hu": unc[0]}
    cyl_ref["cupping_uncorrected"] = {"centre_minus_edge_hu": unc[1]}
    return {"water_cylinder": {"ours": cyl_ours, "gecatsim": cyl_ref}, "abdomen": {"ours": ours, "gecatsim": ref}}


def _verdicts(rows):
    return {r["name"]: r["pass"] for r in rows}


def test_targets_pass_on_agreeing_numbers():
    rows = sc.evaluate_targets(_measurements(), 0.25)
    v = _verdicts(rows)
    assert all(v.values()), [r for r in rows if not r["pass"]]
    assert {"water_cylinder/noise_ratio", "water_cylinder/nps_peak", "water_cylinder/nps_mean",
            "water_cylinder/cupping_corrected", "water_cylinder/cupping_uncorrected", "abdomen/noise_ratio",
            "abdomen/hu_water", "abdomen/hu_fat", "abdomen/hu_liver", "abdomen/hu_bone"} <= set(v)
    assert "water_cylinder/hu_water" not in v  # the cylinder's water is the calibration, not a test
    assert json.dumps(rows)


@pytest.mark.parametrize("change, failing", [
    (dict(ratio=2.11), {"water_cylinder/noise_ratio", "abdomen/noise_ratio"}),  # 5.5 % above sqrt(4)
    (dict(ratio=1.89), {"water_cylinder/noise_ratio", "abdomen/noise_ratio"}),
    (dict(peak=(0.15, 0.20)), {"water_cylinder/nps_peak", "abdomen/nps_peak"}),  # 0.05 1/mm apart
    (dict(mean=(0.30, 0.25)), {"water_cylinder/nps_mean", "abdomen/nps_mean"}),
    (dict(cup=-5.5), {"water_cylinder/cupping_corrected"}),
    (dict(unc=(20.0, 38.0)), {"water_cylinder/cupping_uncorrected"}),  # 18 HU apart > max(5, 25 % of 38)
    (dict(hu={"water": (25.0, 0.0), "bone": (1010.0, 946.0)}), {"abdomen/hu_water", "abdomen/hu_bone"}),
])
def test_targets_fail_where_the_numbers_disagree(change, failing):
    v = _verdicts(sc.evaluate_targets(_measurements(**change), 0.25))
    assert {k for k, ok in v.items() if not ok} == failing


def test_targets_at_their_edges():
    # 2.099 is within 5 % of 2 (tolerance 0.1); 0.039 1/mm apart passes; 30 HU at 25 % of 38 HU...
    v = _verdicts(sc.evaluate_targets(_measurements(ratio=2.099, peak=(0.161, 0.20), unc=(29.0, 38.0)), 0.25))
    assert v["abdomen/noise_ratio"] and v["abdomen/nps_peak"] and v["water_cylinder/cupping_uncorrected"]
    # ... and at 10 % dose the expected ratio is sqrt(10)
    v = _verdicts(sc.evaluate_targets(_measurements(ratio=3.16), 0.10))
    assert v["abdomen/noise_ratio"]
    only_ours = {"abdomen": {"ours": _measurements()["abdomen"]["ours"]}}
    assert [r["name"] for r in sc.evaluate_targets(only_ours, 0.25)] == ["abdomen/noise_ratio"]


def test_main_without_gecatsim_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gecatsim", None)  # import gecatsim raises ImportError
    assert sc.main(["--out", "unused"]) == 2
    assert "pip install gecatsim==1.6.6" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        sc.main(["--help"])
    assert exc.value.code == 0


# -- the whole comparison (minutes): only on request ---------------------------------------------------

@pytest.mark.skipif(not (_has_gecatsim() and os.environ.get(sc.RUN_ENV) == "1"),
                    reason=f"runs gecatsim for minutes: set {sc.RUN_ENV}=1 (and pip install gecatsim==1.6.6)")
def test_the_whole_comparison_with_gecatsim(tmp_path):
    res = sc.run_check(tmp_path, seed=0, progress=False)
    saved = json.loads((tmp_path / "simulator_check.json").read_text())
    assert saved["seed"] == 0 and saved["versions"]["gecatsim"] == sc.GECATSIM_VERSION and saved["machine"]
    assert (tmp_path / "simulator_check.png").stat().st_size > 0
    failed = [r for r in res["targets"] if not r["pass"]]
    assert not failed, failed


def test_packed_rois_are_disjoint_and_inside_the_region():
    rr, cc = np.indices((200, 200))
    mask = np.hypot(rr - 100, cc - 100) <= 90
    centres = nm.pack_square_rois(mask, 40, margin_px=3)
    assert len(centres) >= 9
    rois = nm.square_rois(mask, centres, 40)
    assert rois.all()  # every pixel of every ROI in the region
    for i, (r1, c1) in enumerate(centres):
        for r2, c2 in centres[i + 1:]:
            assert abs(r1 - r2) >= 40 or abs(c1 - c2) >= 40
    assert nm.pack_square_rois(np.zeros((50, 50), bool), 10) == []


def test_bootstrap_errors_shrink_with_more_rois():
    rng = np.random.default_rng(5)
    field = _filtered_noise(0.25, 0.5, 1024, rng)
    centres = [(r, c) for r in range(32, 1024 - 32, 64) for c in range(32, 1024 - 32, 64)]
    rois = nm.square_rois(field, centres, 64)
    few, many = nm.nps_bootstrap(rois[:8], 0.5), nm.nps_bootstrap(rois, 0.5)
    assert many["mean_per_mm_se"] < few["mean_per_mm_se"] and many["std_hu_se"] < few["std_hu_se"]
    assert nm.nps_bootstrap(rois[:8], 0.5) == few  # seeded: reproducible
    with pytest.raises(ValueError, match="at least two"):
        nm.nps_bootstrap(rois[:1], 0.5)
