"""The simulated acquisition against physics: noise scaling with dose and HU calibration."""

import numpy as np
import pytest
from scipy import ndimage

from ctinv_utils.data.acquisition import fbp_hu, hu_to_mu, mu_to_hu, project, simulate_pair
from ctinv_utils.data.phantoms import FLAT_TISSUE, LABELS, Phantom
from ctinv_utils.data.regions import DOSE_FRACTION


def test_hu_mu_round_trip():
    hu = np.array([-1000.0, 0.0, 40.0, 1000.0])
    assert np.allclose(mu_to_hu(hu_to_mu(hu)), hu)
    assert hu_to_mu(np.array([-1000.0]))[0] == 0.0


@pytest.mark.parametrize("region", ["head", "chest", "abdomen"])
def test_low_dose_noise_scales_as_sqrt_inverse_dose(region):
    """Noise-only std (reconstruction minus the noise-free FBP) in the flat tissue of each region:
    low/full must be sqrt(1/dose) within 15 %."""
    hu, labels, pixel_mm = Phantom(region, seed=11).slice(0.5, 192)
    clean = fbp_hu(project(hu, pixel_mm, 270), pixel_mm, 192)
    ratios = []
    for k in range(3):
        low, full = simulate_pair(hu, pixel_mm, 6e4, DOSE_FRACTION[region], 270, np.random.default_rng(k))
        roi = ndimage.binary_erosion(labels == LABELS[FLAT_TISSUE[region]], iterations=3)
        ratios.append(np.std((low - clean)[roi]) / np.std((full - clean)[roi]))
    expected = np.sqrt(1 / DOSE_FRACTION[region])
    assert abs(np.mean(ratios) / expected - 1) < 0.15, (np.mean(ratios), expected)


@pytest.mark.parametrize("region", ["abdomen", "head"])
def test_water_like_tissue_is_zero_hu_in_full_dose(region):
    hu, labels, pixel_mm = Phantom(region, seed=5).slice(0.5, 256)
    water = ndimage.binary_erosion(labels == LABELS["water"], iterations=3)
    assert water.sum() > 30
    _, full = simulate_pair(hu, pixel_mm, 6e4, DOSE_FRACTION[region], 360, np.random.default_rng(0))
    assert abs(full[water].mean()) < 10.0


def test_full_dose_reproduces_tissue_hu():
    hu, labels, pixel_mm = Phantom("abdomen", seed=2).slice(0.5, 256)
    _, full = simulate_pair(hu, pixel_mm, 6e4, 0.25, 360, np.random.default_rng(1))
    liver = ndimage.binary_erosion(labels == LABELS["liver"], iterations=3)
    assert abs(full[liver].mean() - 60.0) < 5.0
    assert abs(full[:5, :5].mean() - (-1000.0)) < 30.0  # air in the corner


def test_phantoms_differ_between_patients_and_are_seeded():
    a1, _, _ = Phantom("chest", 1).slice(0.5, 128)
    a2, _, _ = Phantom("chest", 1).slice(0.5, 128)
    b, _, _ = Phantom("chest", 2).slice(0.5, 128)
    assert np.array_equal(a1, a2)
    assert not np.array_equal(a1, b)
