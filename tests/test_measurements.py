"""Noise measurement and the evaluation metrics (units: HU, dB)."""

import numpy as np
import pytest

from ctinv_utils.training.evaluation import window_metrics
from ctinv_utils.data.noise_measurement import find_flat_roi, noise_std_hu


def test_flat_roi_avoids_structure_and_measures_noise():
    rng = np.random.default_rng(0)
    img = np.full((96, 96), -1000.0)
    img[10:86, 10:86] = 40.0                       # soft tissue
    img[10:86, 10:50] += 80 * np.sin(np.arange(40) / 2.0)[None, :]  # structured left half
    noisy = img + rng.normal(0, 12.0, img.shape)
    roi = find_flat_roi(img, roi_size=15)
    ys, xs = np.nonzero(roi)
    assert roi.sum() == 225 and xs.min() >= 50 and ys.min() >= 10 and ys.max() < 86
    assert noise_std_hu(noisy, roi) == pytest.approx(12.0, rel=0.15)
    with pytest.raises(ValueError, match="no 15x15 px soft-tissue region"):
        find_flat_roi(np.full((64, 64), -1000.0))


def test_window_metrics_units():
    ref = np.random.default_rng(1).uniform(-100, 200, (64, 64))
    m = window_metrics(ref + 20.0, ref, "abdomen")  # +20 HU everywhere, inside the 400 HU window
    assert m["rmse_hu"] == pytest.approx(20.0, abs=1.5)  # clipping at the window edge trims a little
    assert m["psnr"] == pytest.approx(20 * np.log10(400 / m["rmse_hu"]), abs=1e-6)
    worse = window_metrics(ref + 60.0, ref, "abdomen")
    assert worse["psnr"] < m["psnr"] and worse["ssim"] < 1.0
