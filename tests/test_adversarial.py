"""FGSM and BIM for image-to-image denoisers."""

import pytest
import torch

from ctinv_utils.synthesis.adversarial import BIM, FGSM
from ctinv_utils.models import CNN10, GaussRI
from ctinv_utils.units import norm_difference_to_hu


@pytest.fixture
def x():
    return torch.randn(1, 1, 40, 40, generator=torch.Generator().manual_seed(0)) * 0.3


@pytest.fixture
def cnn():
    torch.manual_seed(0)
    return CNN10().eval()


@pytest.mark.parametrize("loss", ["output", "target"])
def test_fgsm_with_zero_eps_changes_nothing(x, cnn, loss):
    a = FGSM(x, cnn, eps_hu=0.0, loss=loss, target=x + 0.1)
    a.synthesize()
    assert torch.equal(a.result, x)


def test_attacks_stay_in_the_eps_ball_and_bim_beats_fgsm(x, cnn):
    fgsm = FGSM(x, cnn, eps_hu=20.0, loss="target", target=x)
    fgsm.synthesize()
    bim = BIM(x, cnn, eps_hu=20.0, step_hu=5.0, loss="target", target=x)
    bim.synthesize(10, progress=False)
    for atk in (fgsm, bim):
        assert norm_difference_to_hu((atk.result - x).abs().max()) <= 20.0 + 1e-3
    assert bim.summary()["output_rms_hu"] > fgsm.summary()["output_rms_hu"] * 0.99
    # the attack increases the attacked loss over its iterations
    losses = [-h[0] for h in bim.history["loss"]]
    assert losses[-1] > losses[0]


def test_output_loss_needs_random_start(x, cnn):
    """At x_adv = x the gradient of ||f(x_adv) - f(x)||² is zero: without a random start nothing moves."""
    still = BIM(x, cnn, eps_hu=10.0, step_hu=2.0, loss="output", random_start=False)
    still.synthesize(3, progress=False)
    assert torch.equal(still.result, x)
    moving = BIM(x, cnn, eps_hu=10.0, step_hu=2.0, loss="output")
    moving.synthesize(3, progress=False)
    assert moving.summary()["output_rms_hu"] > 0


def test_gauss_ri_attack_leaves_the_square_of_the_output_untouched(x):
    a = BIM(x, GaussRI(), eps_hu=10.0, step_hu=2.0, loss="output")
    a.synthesize(5, progress=False)
    from ctinv_utils.models import central_square

    rows, cols = central_square(40, 40)
    assert (a.output()[0, 0][rows, cols] == 0).all()


def test_bad_attack_input(x, cnn):
    with pytest.raises(ValueError, match="unknown attack loss"):
        BIM(x, cnn, loss="l1")
    with pytest.raises(ValueError, match="needs target"):
        FGSM(x, cnn, loss="target")
    with pytest.raises(ValueError, match=">= 0 HU"):
        FGSM(x, cnn, eps_hu=-1)


def test_attack_resume(x, cnn, tmp_path):
    straight = BIM(x, cnn, eps_hu=10.0, step_hu=1.0)
    straight.synthesize(6, progress=False)
    first = BIM(x, cnn, eps_hu=10.0, step_hu=1.0)
    first.synthesize(2, progress=False)
    first.save(tmp_path / "bim.pt")
    resumed = BIM.load(tmp_path / "bim.pt", cnn)
    resumed.synthesize(4, progress=False)
    assert torch.equal(resumed.result, straight.result)
