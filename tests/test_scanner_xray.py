"""The polychromatic X-ray physics of the clinical scanner model (ctinv_utils.data.scanner.xray).

The noise checks compare with an independent calculation on the 1 keV table. For an energy-integrating
reading ``S = sum_E E N_E + e`` with Poisson counts of mean ``lam_E`` and electronic noise of variance
``s2``, the log signal ``p = -log(S / S_air)`` has, to first order, ``Var(p) = (Q + s2) / Sbar**2`` with
``Q = sum_E E**2 lam_E`` and ``Sbar = sum_E E lam_E``. The low-dose counts are a binomial thinning of the
full-dose counts, ``N_full = N_low + R`` with ``R`` independent of ``N_low``, so
``Cov(S_full, S_low) = sum_E E**2 Var(N_low_E) = f Q`` and, with independent electronic noise,

    corr(p_full, p_low) = f Q / sqrt((f Q + s2) (Q + s2))  ->  sqrt(f)  without electronic noise,
    Var(p_low) / Var(p_full) = (f Q + s2) / (f**2 (Q + s2))  ->  1 / f.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctinv_utils.data.phantoms import LABELS, Phantom
from ctinv_utils.data.scanner import xray
from ctinv_utils.errors import BadArgumentError

TABLES = xray.load_tables()
E = TABLES.energies_kev


def mu_rho_at(material: str, kev: float) -> float:
    return float(TABLES.mu_rho[material][E == kev][0])


# -- tables ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("material, kev, nist", [
    # NIST XCOM / X-ray mass attenuation coefficients (Hubbell & Seltzer), total with coherent, cm2/g
    ("water", 60, 0.2059), ("water", 100, 0.1707), ("water", 40, 0.2683), ("water", 80, 0.1837),
    ("cortical_bone", 60, 0.3148), ("cortical_bone", 100, 0.1855),
    ("aluminium", 60, 0.2778), ("aluminium", 100, 0.1704), ("air", 60, 0.1875), ("air", 100, 0.1541),
])
def test_mass_attenuation_matches_nist(material, kev, nist):
    assert mu_rho_at(material, kev) == pytest.approx(nist, rel=3e-3)


def test_tables_record_their_origin_and_reference_constant():
    meta = TABLES.meta
    assert meta["versions"]["spekpy"] == "2.5.4" and meta["versions"]["xraydb"] == "4.5.8"
    assert meta["spectrum"]["kvp"] == xray.KVP and meta["spectrum"]["filtration_mm"] == dict(xray.FILTRATION_MM)
    assert E[0] == 15 and E[-1] == 120 and np.all(np.diff(E) == 1)
    assert xray.MU_WATER_REF_PER_MM == pytest.approx(float(TABLES.mu_per_mm("water")[E == xray.REFERENCE_KEV][0]),
                                                     rel=1e-12)
    assert set(xray.BODY_MATERIALS) <= set(TABLES.density)
    assert TABLES.density["trabecular_bone"] == pytest.approx(1.0 / (0.3 / 1.92 + 0.7 / 1.03))


def test_spectrum_is_a_filtered_120_kvp_spectrum():
    spec = TABLES.meta["spectrum"]
    assert 55.0 < TABLES.mean_kev < 70.0
    assert TABLES.mean_kev == pytest.approx(spec["mean_kev_spekpy"], abs=0.2)
    assert 6.0 < spec["hvl1_mm_al"] < 9.0
    assert spec["fraction_below_table"] < 1e-4
    assert np.all(TABLES.fluence >= 0) and TABLES.fluence[-1] < 1e-3 * TABLES.fluence.max()
    assert 50 < E[np.argmax(TABLES.fluence)] < 70  # tungsten K lines at 57-59 and 67-69 keV, after filtration


def test_tables_regenerate_identically_with_the_libraries(tmp_path):
    pytest.importorskip("spekpy")
    xraydb = pytest.importorskip("xraydb")
    from importlib.metadata import version
    if (version("spekpy"), xraydb.__version__) != ("2.5.4", "4.5.8"):
        pytest.skip("other spekpy/xraydb versions than the tables were made with")
    out = tmp_path / "tables.json"
    assert xray.main(["--out", str(out)]) == 0
    new, old = json.loads(out.read_text()), json.loads(xray.TABLES_PATH.read_text())
    new["versions"].pop("numpy"), old["versions"].pop("numpy")
    assert new["versions"] == old["versions"]
    assert np.allclose(new["spectrum"]["fluence_per_cm2_mas_at_1m"], old["spectrum"]["fluence_per_cm2_mas_at_1m"],
                       rtol=1e-9, atol=0)
    for name in old["materials"]:
        assert np.allclose(new["materials"][name]["mu_rho_cm2_g"], old["materials"][name]["mu_rho_cm2_g"], rtol=1e-9)
    # and one value straight from xraydb, not through write_tables
    assert mu_rho_at("water", 70) == pytest.approx(float(xraydb.material_mu("H2O", 70e3, density=1.0)), rel=1e-9)


# -- basis decomposition ---------------------------------------------------------------------------

def test_decomposition_reproduces_each_body_material():
    """Stated tolerance: 0.5 % over the energies that carry the spectrum (measured worst: adipose, 0.23 %)."""
    errors = xray.decomposition_errors()
    assert set(errors) == set(xray.BODY_MATERIALS)
    assert max(errors.values()) < 5e-3, errors
    assert errors["soft_tissue"] < 1e-3 and errors["lung"] < 1e-3
    assert xray.basis_coefficients("water") == pytest.approx((1.0, 0.0), abs=1e-12)
    assert xray.basis_coefficients("cortical_bone") == pytest.approx((0.0, 1.0), abs=1e-12)
    a, b = xray.basis_coefficients("adipose")
    assert b < 0 < a  # fat is "less than water" in effective Z: a negative bone part


def test_basis_maps_reproduce_the_painted_hu_at_the_reference_energy():
    hu, labels, pixel_mm = Phantom("abdomen", seed=3).slice(0.5, 96)
    hu = np.where(np.isfinite(hu), hu, 40.0)
    water_eq, bone_eq = xray.basis_maps(hu, labels, xray.label_materials(LABELS))
    assert water_eq.dtype == np.float32 and water_eq.shape == hu.shape
    assert np.allclose(xray.hu_from_mu(mu_at_reference(water_eq, bone_eq)), np.maximum(hu, -1000.0), atol=0.02)
    assert np.all(water_eq[hu <= -1000] == 0) and np.all(bone_eq[hu <= -1000] == 0)


def mu_at_reference(water_eq, bone_eq):
    mu_bone = TABLES.mu_per_mm("cortical_bone")[E == xray.REFERENCE_KEV][0]
    return np.asarray(water_eq, np.float64) * xray.MU_WATER_REF_PER_MM + np.asarray(bone_eq, np.float64) * mu_bone


def test_basis_maps_scale_the_density_of_each_material():
    """Bone painted at 1000 HU is cortical bone at 2 mu_water / mu_bone = 0.78 of its density (it reads
    1559 HU at 70 keV at full density); liver at 60 HU is soft tissue, almost all water-like."""
    labels = np.array([1, 2, 3])
    water_eq, bone_eq = xray.basis_maps(np.array([1000.0, 60.0, -1200.0]), labels,
                                        {1: "cortical_bone", 2: "soft_tissue", 3: "air"})
    full_bone_hu = xray.hu_from_mu(TABLES.mu_per_mm("cortical_bone")[E == xray.REFERENCE_KEV][0])
    assert 1400 < full_bone_hu < 1700
    assert water_eq[0] == 0 and bone_eq[0] == pytest.approx(2000.0 / (1000.0 + full_bone_hu), rel=1e-6)
    assert abs(bone_eq[1]) < 0.01 and water_eq[1] == pytest.approx(1.05, abs=0.02)
    assert water_eq[2] == 0 and bone_eq[2] == 0  # below -1000 HU: nothing
    assert xray.label_materials({"fat": 1, "liver": 2, "airway": 3}) == {1: "adipose", 2: "soft_tissue", 3: "air"}


def test_basis_maps_accept_material_names_per_pixel():
    hu = np.array([[0.0, 500.0], [-1000.0, -100.0]])
    names = np.array([["water", "water"], ["air", "adipose"]])
    w, b = xray.basis_maps(hu, names)
    assert w[0, 0] == pytest.approx(1.0) and w[0, 1] == pytest.approx(1.5) and b[0, 0] == 0
    assert w[1, 0] == 0 and b[1, 1] < 0


# -- detector model: noise-free ---------------------------------------------------------------------

def test_bowtie_is_zero_in_the_centre_and_grows_to_the_edge():
    g = np.linspace(0, np.radians(25), 200)
    t = xray.bowtie_al_mm(g)
    assert t[0] == 0 and np.all(np.diff(t) >= 0) and 30 < t[-1] <= xray.BOWTIE_MAX_MM
    assert np.allclose(xray.bowtie_al_mm(-g), t)


def test_model_bins_follow_the_1_kev_table():
    """The detector model merges the table into 5 keV bins; its log signal stays within 0.005 (0.2 %) of
    the same calculation on the 1 keV table (measured: 0.0034 at 500 mm water + 30 mm bone)."""
    s = TABLES.fluence / TABLES.fluence.sum()
    eta = 1.0 - np.exp(-TABLES.mu_per_mm("gos") * xray.DETECTOR_MM)
    for water in (0.0, 100.0, 300.0, 500.0):
        for bone in (0.0, 10.0, 30.0):
            for gamma in (0.0, 0.25, 0.42):
                t = xray.bowtie_al_mm(gamma)
                att = water * TABLES.mu_per_mm("water") + bone * TABLES.mu_per_mm("cortical_bone")
                al = t * TABLES.mu_per_mm("aluminium")
                fine = -np.log(np.sum(s * eta * E * np.exp(-att - al)) / np.sum(s * eta * E * np.exp(-al)))
                model = xray.expected_log(water, bone, gamma, correct=False)
                assert abs(model - fine) <= 0.005 and abs(model - fine) <= 2e-3 * fine + 1e-12


@pytest.mark.parametrize("gamma", [0.0, 0.2, 0.42])
def test_water_after_correction_is_linear_and_reads_mu_ref(gamma):
    """Measured: within 3e-6 of mu_ref * T; the test asks for 1e-3 (the issue: 0.5 %)."""
    thickness = np.linspace(5.0, 500.0, 25)
    corrected = xray.expected_log(thickness, 0.0, gamma)
    assert np.allclose(corrected, xray.MU_WATER_REF_PER_MM * thickness, rtol=1e-3, atol=0)
    raw = xray.expected_log(thickness, 0.0, gamma, correct=False)
    assert np.all(np.diff(raw / thickness) < 0)  # before it, water hardens the beam
    assert np.allclose(xray.water_correction(raw, gamma), corrected)


def test_bone_keeps_residual_beam_hardening_after_the_water_correction():
    """Bone hardens the beam more than water: after the water correction its line integral still grows
    less than linearly with its thickness (the dark streaks between bones), and a thin bone behind much
    water reads lower than behind little (its effective energy rises)."""
    bone = np.linspace(0.0, 60.0, 13)
    for water in (0.0, 200.0, 400.0):
        extra = xray.expected_log(water, bone, 0.0) - xray.expected_log(water, 0.0, 0.0)
        assert np.all(np.diff(extra, 2) < 0), water
    slope = [(xray.expected_log(w, 5.0, 0.0) - xray.expected_log(w, 0.0, 0.0)) / 5.0 for w in (0.0, 200.0, 400.0)]
    assert slope[0] > slope[1] > slope[2]
    mu_bone_ref = TABLES.mu_per_mm("cortical_bone")[E == xray.REFERENCE_KEV][0]
    assert slope[2] < mu_bone_ref < slope[0]  # 70 keV lies within the effective energies of a body


@pytest.mark.parametrize("material, painted_hu", [("soft_tissue", 40.0), ("adipose", -100.0), ("lung", -850.0),
                                                  ("trabecular_bone", 250.0), ("cortical_bone", 1000.0)])
def test_painted_hu_read_back_behind_a_typical_body(material, painted_hu):
    """The reference energy is the body's effective energy: behind 200 mm of water, a 20 mm insert reads
    its painted HU after the water correction (measured within 11 HU; bone 1004 for 1000)."""
    w, b = xray.basis_maps(np.array([painted_hu]), np.array([material]))
    base = xray.expected_log(200.0, 0.0, 0.05)
    read = xray.hu_from_mu((xray.expected_log(200.0 + 20.0 * w[0], 20.0 * b[0], 0.05) - base) / 20.0)
    assert read == pytest.approx(painted_hu, abs=15.0)


def test_mean_of_measurements_is_the_expected_log():
    rng = np.random.default_rng(0)
    water = np.full((200, 250), 250.0)
    gamma = np.linspace(-0.3, 0.3, 250)
    full, low = xray.measure(water, 10.0, gamma, 1e6, 0.25, rng)
    clean = xray.expected_log(water, 10.0, gamma)
    assert full.shape == water.shape
    assert abs(np.mean(full - clean)) < 2e-3 and abs(np.mean(low - clean)) < 4e-3


def test_photon_starvation_is_clamped_not_infinite():
    rng = np.random.default_rng(1)
    full, low = xray.measure(np.full(5000, 3000.0), 0.0, 0.0, 1e5, 0.1, rng, correct=False)
    assert np.all(np.isfinite(full)) and np.all(np.isfinite(low))
    air = 1e5 * xray._model().air_signal(np.zeros(1))[0]
    floor = xray.FLOOR_PHOTONS * xray._model().air_mean_kev
    assert full.max() == pytest.approx(-np.log(floor / air))  # the clamp is the largest value


# -- detector model: noise ------------------------------------------------------------------------

def fine_moments(water_mm: float, gamma: float, photons: float) -> tuple[float, float]:
    """(Sbar, Q) of the full-dose reading computed on the 1 keV table, independently of the model bins."""
    s = TABLES.fluence / TABLES.fluence.sum()
    eta = 1.0 - np.exp(-TABLES.mu_per_mm("gos") * xray.DETECTOR_MM)
    att = water_mm * TABLES.mu_per_mm("water") + xray.bowtie_al_mm(gamma) * TABLES.mu_per_mm("aluminium")
    lam = photons * s * eta * np.exp(-att)
    return float(np.sum(E * lam)), float(np.sum(E ** 2 * lam))


def noise_pair(water, gamma, photons, f, sigma_photons, n=200_000, seed=7):
    rng = np.random.default_rng(seed)
    full, low = xray.measure(np.full(n, water), 0.0, gamma, photons, f, rng,
                             electronic_noise_photons=sigma_photons, correct=False)
    return full - full.mean(), low - low.mean()


def test_noise_variance_and_low_full_ratio_without_electronic_noise():
    water, gamma, photons, f = 200.0, 0.1, 2e5, 0.25
    full, low = noise_pair(water, gamma, photons, f, 0.0)
    sbar, q = fine_moments(water, gamma, photons)
    assert np.var(full) == pytest.approx(q / sbar ** 2, rel=0.03)
    assert np.var(low) / np.var(full) == pytest.approx(1 / f, rel=0.03)
    assert np.corrcoef(full, low)[0, 1] == pytest.approx(np.sqrt(f), abs=0.01)


def test_electronic_noise_is_independent_between_the_scans():
    """At ~4000 detected photons (1000 at low dose) and 30 photon-equivalents of electronic noise (a
    variance like the low-dose quantum noise, with the counts high enough for the first-order formulas)
    the correlation falls from sqrt(f) = 0.5 to f Q / sqrt((f Q + s2)(Q + s2)); a shared electronic
    noise would raise it instead."""
    water, gamma, photons, f, sigma = 300.0, 0.0, 1e6, 0.25, 30.0
    full, low = noise_pair(water, gamma, photons, f, sigma)
    sbar, q = fine_moments(water, gamma, photons)
    s2 = (sigma * xray._model().air_mean_kev) ** 2
    assert sbar / TABLES.mean_kev == pytest.approx(4000, rel=0.5)
    expected_corr = f * q / np.sqrt((f * q + s2) * (q + s2))
    assert expected_corr < 0.45
    assert np.corrcoef(full, low)[0, 1] == pytest.approx(expected_corr, abs=0.02)
    assert np.var(full) == pytest.approx((q + s2) / sbar ** 2, rel=0.04)
    assert np.var(low) / np.var(full) == pytest.approx((f * q + s2) / (f ** 2 * (q + s2)), rel=0.05)


def test_thinning_is_binomial_and_never_adds_photons():
    rng = np.random.default_rng(3)
    lam, f = 20.0, 0.25
    full, low = xray.poisson_pair(np.full(400_000, lam), f, rng)
    assert np.all(low <= full) and np.all(low >= 0)
    assert full.mean() == pytest.approx(lam, rel=0.01) and full.var() == pytest.approx(lam, rel=0.02)
    for n in (15, 20, 25):  # low | full = n is Binomial(n, f)
        sel = low[full == n]
        assert sel.mean() == pytest.approx(n * f, rel=0.03)
        assert sel.var() == pytest.approx(n * f * (1 - f), rel=0.08)


def test_same_seed_same_numbers():
    water = np.linspace(0, 400, 3000).reshape(3, 1000)
    gamma = np.linspace(-0.4, 0.4, 1000)
    a = xray.measure(water, 2.0, gamma, 1e5, 0.1, np.random.default_rng(11))
    b = xray.measure(water, 2.0, gamma, 1e5, 0.1, np.random.default_rng(11))
    c = xray.measure(water, 2.0, gamma, 1e5, 0.1, np.random.default_rng(12))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


# -- bad arguments ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"dose_fraction": 0.0}, r"\(0, 1\]"),
    ({"dose_fraction": 1.5}, r"\(0, 1\]"),
    ({"photons_full_dose": -1.0}, "positive"),
    ({"photons_full_dose": np.nan}, "positive"),
    ({"rng": 42}, "default_rng"),
    ({"electronic_noise_photons": -1.0}, ">= 0"),
    ({"floor_photons": 0.0}, "positive"),
    ({"gamma_rad": np.zeros(7)}, "broadcast"),
    ({"water_mm": np.array([np.nan, 1.0, 2.0])}, "finite"),
    ({"gamma_rad": 2.0}, "radians"),
])
def test_measure_rejects_bad_arguments(kwargs, match):
    args = {"water_mm": np.ones(3), "bone_mm": 0.0, "gamma_rad": np.zeros(3), "photons_full_dose": 1e5,
            "dose_fraction": 0.25, "rng": np.random.default_rng(0)}
    args.update(kwargs)
    with pytest.raises(BadArgumentError, match=match):
        xray.measure(**args)


def test_basis_maps_and_tables_reject_bad_arguments(tmp_path):
    hu = np.zeros((2, 2))
    with pytest.raises(BadArgumentError, match="add them"):
        xray.basis_maps(hu, np.array([[0, 1], [2, 99]]), {0: "water", 1: "water", 2: "water"})
    with pytest.raises(BadArgumentError, match="use one of"):
        xray.basis_maps(hu, np.full((2, 2), "unobtainium"))
    with pytest.raises(BadArgumentError, match="one label per pixel"):
        xray.basis_maps(hu, np.zeros((3, 2), dtype=int), {0: "water"})
    with pytest.raises(BadArgumentError, match="finite HU"):
        xray.basis_maps(np.full((2, 2), np.nan), np.zeros((2, 2), dtype=int), {0: "water"})
    with pytest.raises(BadArgumentError, match="label_material"):
        xray.basis_maps(hu, np.zeros((2, 2), dtype=int))
    with pytest.raises(BadArgumentError, match="'spectrum' or 'table'"):
        xray.decomposition_errors("everywhere")
    with pytest.raises(BadArgumentError, match="xray-tables"):
        xray.load_tables(tmp_path / "missing.json")
