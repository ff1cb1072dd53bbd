"""HU windows and the normalizer: the unit conversions everything else rests on."""

import numpy as np
import pytest
import torch

from ctinv_utils.units import hu_difference_to_norm, hu_to_norm, norm_difference_to_hu, norm_to_hu
from ctinv_utils.units import ABDOMEN, DIFFERENCE, LUNG, apply_window, get_window


def test_talk_windows():
    assert (LUNG.center, LUNG.width) == (-600, 1500)
    assert (ABDOMEN.center, ABDOMEN.width) == (50, 400)
    assert (DIFFERENCE.center, DIFFERENCE.width) == (0, 100)
    assert np.allclose(apply_window([-1350, -600, 150, 2000], "lung"), [0, 0.5, 1, 1])
    assert np.allclose(apply_window([-150, 50, 250], ABDOMEN), [0, 0.5, 1])
    with pytest.raises(ValueError, match="unknown HU window"):
        get_window("bone")


def test_normalizer_is_ldct_benchmark_convention():
    # ldct-benchmark standardises HU + 1024 with mean 481.454 and std 502.185
    assert hu_to_norm(0.0) == pytest.approx((1024 - 481.45419786099086) / 502.18507379395044)
    assert hu_to_norm(-1024 + 481.45419786099086) == pytest.approx(0.0)
    hu = torch.linspace(-1024, 3000, 7)
    assert torch.allclose(norm_to_hu(hu_to_norm(hu)), hu, atol=1e-3)
    # differences carry no offset: 1 normalized unit = 502.185 HU
    assert norm_difference_to_hu(1.0) == pytest.approx(502.18507379395044)
    assert hu_difference_to_norm(norm_difference_to_hu(0.3)) == pytest.approx(0.3)
    assert hu_to_norm(100.0) - hu_to_norm(0.0) == pytest.approx(hu_difference_to_norm(100.0))
