"""Lesion insertion against ground truth: the twin differs from the lesion slice only at the lesion,
the noise-free reconstruction has the inserted contrast, the set is seeded, cached and checked."""

import json

import numpy as np
import pytest
from scipy import ndimage

from ctinv_utils.analysis.contrast_detail import dprime_table_for
from ctinv_utils.analysis.observers import lesion_contrast
from ctinv_utils.data.acquisition import fbp_delta_hu, fbp_hu, project, project_delta
from ctinv_utils.data.lesions import (DONE_MARKER, LesionError, LesionSetConfig, annuli, build_arrays,
                                      disc_coverage, insert_lesion, lesion_set, lesion_set_dir, load_lesion_set,
                                      place_in_tissue, simulate_lesion_pair)
from ctinv_utils.data.phantoms import LABELS, Phantom
from ctinv_utils.data.scanner.acquire import ClinicalScanner, ParallelScanner
from ctinv_utils.data.scanner.geometry import FanBeamGeometry

SIZE, VIEWS = 256, 360  # the quick preset's geometry: 1.48 mm pixels
TINY = dict(diameters_mm=(5.0, 10.0), contrasts_hu=(-20.0, 30.0), realisations=2, absent_per_realisation=2,
            image_size=128, n_views=120, roi_mm=30.0, scanner="parallel", photons_full_dose=6e4)


@pytest.fixture(scope="module")
def liver_slice():
    hu, labels, pixel_mm = Phantom("abdomen", 3).slice(0.4, SIZE)
    centre = place_in_tissue(labels, "liver", 11, 2, np.random.default_rng(0))
    return hu, labels, pixel_mm, centre, project(hu, pixel_mm, VIEWS)


def test_disc_coverage_has_the_disc_area():
    for r in (1.01, 1.7, 3.4, 6.7):  # 1.01 px: a 3 mm lesion at 1.48 mm pixels
        cov = disc_coverage((40, 40), (20, 19), r)
        assert abs(cov.sum() / (np.pi * r * r) - 1) < 0.01
        assert cov.max() == 1.0 and cov.min() == 0.0


def test_placement_keeps_the_roi_inside_the_tissue(liver_slice):
    hu, labels, pixel_mm, (r, c), _ = liver_slice
    assert (labels[r - 13:r + 14, c - 13:c + 14] == LABELS["liver"]).all()  # ROI half 11 + margin 2
    assert place_in_tissue(labels, "liver", 60, 0, np.random.default_rng(0)) is None  # no 121 px square fits


def test_twin_differs_from_the_lesion_slice_only_at_the_lesion(liver_slice):
    """x_lesion - x_free is the lesion's noise-free FBP: outside 3 px from the lesion's edge it stays
    below 1 % of the contrast (measured 0.3 %), though both images carry ~45 HU of noise."""
    hu, labels, pixel_mm, centre, clean = liver_slice
    contrast = 10.0
    for diameter in (3.0, 10.0):
        cov = disc_coverage(hu.shape, centre, diameter / 2 / pixel_mm)
        pair = simulate_lesion_pair(ParallelScanner(VIEWS), clean, project_delta(contrast * cov, pixel_mm, VIEWS),
                                    pixel_mm, SIZE, 6e4, 0.25, np.random.default_rng(1))
        for dose in ("low", "full"):
            diff = pair[f"{dose}_lesion"].astype(np.float64) - pair[f"{dose}_free"]
            assert np.abs(diff - pair["signal"]).max() < 1e-3  # the twin relation, float32 rounding only
            far = ndimage.distance_transform_edt(cov < 0.5) > 3
            assert np.abs(diff[far]).max() < 0.01 * contrast
            assert diff[cov >= 0.5].mean() > 0.3 * contrast  # and the lesion is there
        noise = pair["low_free"] - fbp_hu(clean, pixel_mm, SIZE)
        assert noise[labels == LABELS["liver"]].std() > 20  # both images are noisy


def test_the_clinical_scanners_twin_differs_only_at_the_lesion():
    """The same twin relation through the fan beam, the polychromatic detector and the water
    correction (a coarse fan and a small slice: the relation is exact by linearity at any size)."""
    hu, labels, pixel_mm = Phantom("abdomen", 3).slice(0.4, 128)
    centre = place_in_tissue(labels, "liver", 5, 2, np.random.default_rng(0))
    scanner = ClinicalScanner(geometry=FanBeamGeometry(n_channels=184, channel_pitch_mm=4 * 1.2858, n_views=240))
    cov = disc_coverage(hu.shape, centre, 20.0 / 2 / pixel_mm)  # 20 mm: 7 px of 3 mm
    pair = simulate_lesion_pair(scanner, scanner.line_integrals(hu, labels, pixel_mm),
                                scanner.delta_line_integrals(30.0 * cov, pixel_mm), pixel_mm, 128, 2e5, 0.25,
                                np.random.default_rng(1))
    diff = pair["low_lesion"].astype(np.float64) - pair["low_free"]
    assert np.abs(diff - pair["signal"]).max() < 1e-3
    far = ndimage.distance_transform_edt(cov < 0.5) > 3
    assert np.abs(pair["signal"][far]).max() < 0.02 * 30.0
    assert 0.9 * 30.0 < pair["signal"][ndimage.binary_erosion(cov >= 0.5, iterations=2)].mean() < 1.05 * 30.0


def test_insertion_before_acquisition_equals_the_linear_twin(liver_slice):
    """Painting the lesion into the phantom and reconstructing noise-free gives the same lesion
    image as projecting the lesion alone (linearity used for the twin), to float32 rounding."""
    hu, _, pixel_mm, centre, clean = liver_slice
    direct = fbp_hu(project(insert_lesion(hu, centre, 10.0, 20.0, pixel_mm), pixel_mm, VIEWS), pixel_mm, SIZE)
    cov = disc_coverage(hu.shape, centre, 10.0 / 2 / pixel_mm)
    s = fbp_delta_hu(project_delta(20.0 * cov, pixel_mm, VIEWS), pixel_mm, SIZE)
    assert np.abs(direct.astype(np.float64) - fbp_hu(clean, pixel_mm, SIZE) - s).max() < 1e-3


@pytest.mark.parametrize("diameter, tolerance", [(20.0, 0.02), (10.0, 0.05)])
def test_noise_free_reconstruction_has_the_inserted_contrast(liver_slice, diameter, tolerance):
    """Large lesions: contrast in the lesion's core (mask eroded by 2 px, away from the blurred edge)
    minus the annulus 3-9 mm outside is the inserted contrast (measured 0.7 % low at 20 mm, 2.1 % at
    10 mm); the reconstruction keeps the lesion's integral (FBP has unit DC gain)."""
    hu, _, pixel_mm, centre, _ = liver_slice
    contrast = -15.0
    cov = disc_coverage(hu.shape, centre, diameter / 2 / pixel_mm)
    s = fbp_delta_hu(project_delta(contrast * cov, pixel_mm, VIEWS), pixel_mm, SIZE)
    mask = cov >= 0.5
    core = ndimage.binary_erosion(mask, iterations=2)
    measured = lesion_contrast(s, core, annuli(mask, 3 / pixel_mm, 9 / pixel_mm))
    assert abs(measured / contrast - 1) < tolerance, measured
    assert abs(s.sum() / (contrast * cov.sum()) - 1) < 0.005


def test_lesion_set_is_seeded_cached_and_checked():
    cfg = LesionSetConfig(**TINY)
    ls = lesion_set(cfg, workers=1, progress=False)
    assert len(ls) == 2 * 2 * 2 and ls.low_absent.shape == (2, 2, 128, 128)
    # twins, masks, centres and positions in mm
    assert np.abs(ls.low_lesion.astype(np.float64) - ls.low_free - ls.signal).max() < 1e-3
    assert np.abs(ls.full_lesion.astype(np.float64) - ls.full_free - ls.signal).max() < 1e-3
    for i in range(len(ls)):
        r, c = ls.center_px[i]
        assert ls.masks[i, r, c] and ls.labels[ls.realisation[i], r, c] == LABELS["liver"]
        assert np.sign(ls.signal[i, r, c]) == np.sign(ls.contrast_hu[i])
    x_mm, y_mm = ls.center_mm[0]
    assert abs(x_mm - (ls.center_px[0, 1] - 63.5) * ls.pixel_mm) < 1e-9
    assert ls.rois(ls.low_lesion).shape == (len(ls), cfg.roi_px, cfg.roi_px)
    assert ls.absent_rois(ls.low_absent).shape == (2, 2, cfg.roi_px, cfg.roi_px)
    assert list(ls.cell(10.0, -20.0)) == [4, 5]
    # the observer sees what the physics says: full dose beats low dose, 10 mm beats 5 mm (NPW,
    # twins + lesion-free scans + the other cells' twins as noise ROIs; 2 realisations per cell)
    low = dprime_table_for(ls, ls.low_lesion, ls.low_free, ls.low_absent, method="resubstitution").dprime
    full = dprime_table_for(ls, ls.full_lesion, ls.full_free, ls.full_absent, method="resubstitution").dprime
    assert (full > 1.3 * low).all() and (low[1] > low[0]).all() and (full[1] > full[0]).all(), (low, full)
    # cached: loading returns the same arrays; a rebuild reproduces them from the seed
    again = lesion_set(cfg, progress=False)
    assert np.array_equal(again.low_lesion, ls.low_lesion) and np.array_equal(again.low_absent, ls.low_absent)
    rebuilt = build_arrays(cfg, workers=1, progress=False)
    assert np.array_equal(rebuilt["low_lesion"], ls.low_lesion) and np.array_equal(rebuilt["center_px"], ls.center_px)
    other = build_arrays(LesionSetConfig(**{**TINY, "seed": 1}), workers=1, progress=False)
    assert not np.array_equal(other["low_lesion"], ls.low_lesion)
    # a damaged cache is named, not silently used
    folder = lesion_set_dir(cfg)
    assert "sha256" in json.loads((folder / DONE_MARKER).read_text())
    data = bytearray((folder / "lesions.npz").read_bytes())
    data[-100] ^= 0xFF
    (folder / "lesions.npz").write_bytes(bytes(data))
    with pytest.raises(LesionError, match="does not match the SHA-256"):
        load_lesion_set(folder)
    assert not list(folder.parent.glob(".*tmp"))  # atomic build leaves no temporary folder


def test_same_result_with_two_workers():
    cfg = LesionSetConfig(**{**TINY, "diameters_mm": (10.0,), "contrasts_hu": (20.0,), "absent_per_realisation": 1})
    one, two = build_arrays(cfg, workers=1, progress=False), build_arrays(cfg, workers=2, progress=False)
    assert all(np.array_equal(one[k], two[k]) for k in one)


def test_bad_settings_are_named():
    with pytest.raises(LesionError, match="at most half the ROI"):
        LesionSetConfig(diameters_mm=(20.0,), roi_mm=30.0)
    with pytest.raises(LesionError, match="non-zero"):
        LesionSetConfig(contrasts_hu=(0.0, 10.0))
    with pytest.raises(ValueError, match="unknown lesion settings"):
        LesionSetConfig.from_dict({"diameter": [3]})
    cfg = LesionSetConfig.from_simulation({"image_size": 192, "n_views": 270, "photons_full_dose": 1e5}, realisations=3)
    assert (cfg.image_size, cfg.n_views, cfg.photons_full_dose, cfg.realisations) == (192, 270, 1e5, 3)


# -- denoised lesions: crops, metrics, invariance projection (ctinv_utils.analysis.lesion_removal) --

def test_denoising_crops_equals_denoising_the_slice():
    """The ROI of f(crop) equals the ROI of f(whole slice) for a convolutional denoiser (CNN-10,
    random init, receptive field < the 24 px margin), also at the image border (edge padding keeps
    the crop defined); Gauss+RI (position-dependent) is denoised whole, so its central square stays
    where the slice's centre is."""
    import torch

    from ctinv_utils.analysis.lesion_removal import denoise_rois
    from ctinv_utils.models import build_denoiser, freeze
    from ctinv_utils.models.gauss_ri import GaussRI
    from ctinv_utils.units import hu_to_norm, norm_to_hu

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = (60 + 30 * rng.standard_normal((3, 96, 96))).astype(np.float32)
    centres = np.array([[48, 48], [30, 60], [12, 80]])
    for f in (freeze(build_denoiser("cnn10")), GaussRI()):
        with torch.no_grad():
            whole = norm_to_hu(f(torch.from_numpy(hu_to_norm(images))[:, None]))[:, 0].numpy()
        rois = denoise_rois(f, images, centres, 11)
        for k, (r, c) in enumerate(centres):
            expect = whole[k, r - 5:r + 6, c - 5:c + 6]
            if k < 2 or isinstance(f, GaussRI):  # the third ROI is 7 px from the border: zero padding differs there
                assert np.abs(rois[k] - expect).max() < 1e-3, (type(f).__name__, k)
    # a lesion at the slice's centre lies in Gauss+RI's square: output 0 (normalized) = -542.5 HU there
    np.testing.assert_allclose(denoise_rois(GaussRI(), images[:1], centres[:1], 11), norm_to_hu(0.0), atol=1e-3)


def test_lesion_metrics_of_known_denoisers():
    """Identity: contrast retained = structure transfer = 1 and the low-dose d'. A Gaussian blur
    (sigma 2 px) keeps less of a 5 mm lesion than of a 10 mm one."""
    import torch

    from ctinv_utils.analysis.lesion_removal import (LOW, contrast_detail_arrays, kind_metrics, lesion_rois,
                                                     metrics_json, verdicts)

    class Blur(torch.nn.Module):
        def forward(self, x):
            from ctinv_utils.models.gauss_ri import gaussian_kernel_1d

            k = gaussian_kernel_1d(2.0).float()
            r = (len(k) - 1) // 2
            y = torch.nn.functional.pad(x, (r, r, r, r), mode="reflect")
            y = torch.nn.functional.conv2d(y, k.view(1, 1, 1, -1))
            return torch.nn.functional.conv2d(y, k.view(1, 1, -1, 1))

    ls = lesion_set(LesionSetConfig(**{**TINY, "seed": 3}), workers=1, progress=False)  # TINY's cache gets damaged above
    rois = lesion_rois(ls, {"identity": torch.nn.Identity(), "blur": Blur()})
    assert set(rois) == {"low dose", "full dose", "identity", "blur"}
    m = {k: kind_metrics(ls, v, method="resubstitution", observers=("npw",)) for k, v in rois.items()}
    for k in ("low dose", "full dose", "identity"):
        assert np.allclose(m[k]["contrast_retained"], 1, atol=1e-4) and np.allclose(m[k]["structure_transfer"], 1, atol=1e-4)
    np.testing.assert_allclose(m["identity"]["tables"]["npw"].dprime, m[LOW]["tables"]["npw"].dprime, rtol=1e-4)
    cr = m["blur"]["contrast_retained_cells"]
    assert (cr < 0.95).all() and (cr[0] < cr[1]).all(), cr  # 5 mm loses more than 10 mm
    json.dumps(metrics_json(ls, m))  # JSON-ready
    cd = contrast_detail_arrays(m)
    assert cd["npw_positive"].shape == (4, 2) and list(cd["kinds"]) == list(m)
    v = verdicts(m)
    assert set(v) == {"identity", "blur"} and v["identity"]["npw"]["loses_lesions"] is not True
    assert v["blur"]["contrast_retained"] < 0.95 and v["identity"]["contrast_retained"] == pytest.approx(1, abs=1e-4)


def test_removal_fractions_of_known_changes():
    """x_inv = x - s removes the whole lesion (1) and (almost) nothing at lesion-free places; x_inv =
    x + 0.5 s enhances it (-0.5); a change away from the lesion removes almost nothing at the lesion
    (only the profile's mean over the crop couples them: |.| < 0.05 here); a constant offset exactly
    nothing anywhere."""
    from ctinv_utils.analysis.lesion_removal import (lesion_component, lesion_extent_px, lesion_free_places,
                                                     profile_fits, removal_fractions)
    from ctinv_utils.analysis.observers import ObserverError

    s = 20.0 * disc_coverage((49, 49), (24, 24), 4.0)
    x = np.random.default_rng(0).normal(60, 20, (49, 49))
    r = removal_fractions(np.stack([x - s, x + 0.5 * s, x + np.roll(s, 14, axis=1), x - 300.0]), x, s)
    np.testing.assert_allclose(r["removed"][:2], [1.0, -0.5], atol=1e-9)
    np.testing.assert_allclose(r["removed"][2:], 0.0, atol=0.05)
    # the map's centre (one FFT cross-correlation) is the lesion's place: it equals the direct
    # projection there; the places whose copy misses the lesion are the chance set
    assert r["removal_map"].shape == (4, 49, 49)
    np.testing.assert_allclose(r["removal_map"][:, 24, 24], r["removed"], atol=1e-6)
    np.testing.assert_allclose(lesion_component(np.stack([-s, 0.5 * s, np.full_like(s, 7.0)]), s), [1.0, -0.5, 0.0],
                               atol=1e-12)
    with pytest.raises(ObserverError, match="flat"):
        lesion_component(s, np.full_like(s, 3.0))
    # chance set: copies wholly inside the crop (extent 8.8 px: centres 5..44, 40 x 40) that miss the
    # lesion (centres more than 9.8 px away: ~300-370 places excluded)
    assert lesion_extent_px(s) == pytest.approx(8.8, abs=0.1)
    n_free = r["removed_elsewhere"].shape[1]
    assert r["removed_elsewhere"].shape[0] == 4 and 1600 - 450 < n_free < 1600 - 250
    assert np.abs(r["removed_elsewhere"][:2]).max() < 0.05
    # the places whose copy fits: a centred square band-free region, holding the chance set
    fits, free = profile_fits(s), lesion_free_places(s)
    side = int(fits[24].sum())
    assert fits.sum() == side ** 2 and 38 <= side <= 40 and not fits[0].any() and not fits[:, -1].any()
    assert (free <= fits).all() and fits.sum() - free.sum() > 250 and free.sum() == n_free
    # the copy moved 14 px to the right is removed fully there, and nowhere near the lesion
    assert r["removal_map"][2, 24, 24 + 14] == pytest.approx(-1.0, abs=0.05)
    # the lesion ranks above every lesion-free place when it alone is subtracted; a constant offset
    # is the same everywhere
    assert r["removed_percentile"][0] == 100.0 and r["removed_percentile"][1] == 0.0
    assert np.ptp(r["removal_map"][3]) < 1e-9
    # a change that is white noise ranks the lesion near the middle, as the lesion-free places
    noise = np.random.default_rng(1).normal(0, 500, (200, 49, 49))
    pct = removal_fractions(x + noise, x, s)["removed_percentile"]
    assert 40 < pct.mean() < 60 and 3 < (pct > 95).sum() < 20
    # the map's places are read as lesion positions only when the profile is centred on the crop
    with pytest.raises(ObserverError, match="not the crop's centre"):
        removal_fractions(x[None], x, np.roll(s, 5, axis=1))
