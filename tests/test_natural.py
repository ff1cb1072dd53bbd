"""Natural invariances: the generator's multi-scale condition, reproducible sampling, any size the
down-sampling divides, exact resume, bad input, and the ground truth of an ideal low-pass denoiser;
the noise-versus-anatomy measurements against known answers."""

import numpy as np
import pytest
import torch

from ctinv_utils.analysis.natural import change_metrics, verdicts
from ctinv_utils.analysis.spectra import radial_nps, spectral_shape_distance
from ctinv_utils.errors import CTInvError
from ctinv_utils.models.natural_generator import ConditionalGenerator
from ctinv_utils.synthesis.natural import NaturalInvariance

from ground_truth import IdealLowPass

P = 32  # patches of the tests (fully convolutional: the talk's 80 px work the same way, slower)
SMALL = dict(channels=(8, 8, 8), critic_width=0.125, patch_size=P, margin=2)


class ZeroSquare(torch.nn.Module):
    """Identity except the central 30x30 square, which it sets to zero."""

    def forward(self, x):
        y = x.clone()
        r0, c0 = (x.shape[-2] - 30) // 2, (x.shape[-1] - 30) // 2
        y[..., r0:r0 + 30, c0:c0 + 30] = 0
        return y


def patches(n=32, size=P, seed=0):
    return 1.0 + 0.2 * torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def test_every_stage_sees_the_condition_at_its_own_resolution():
    gen = ConditionalGenerator(channels=(8, 6, 4), z_channels=2)
    seen = []
    for block in gen.blocks:
        block.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    x = torch.randn(3, 1, 32, 48)
    y = gen(x, gen.noise(3, 32, 48))
    assert y.shape == x.shape
    # stage i: (previous features) + condition d_i(x) (1 channel) + z_i (2 channels), at 1/4, 1/2, 1/1
    assert seen == [(3, 3, 8, 12), (3, 8 + 3, 16, 24), (3, 6 + 3, 32, 48)]
    # the condition entering stage 0 is the average-pooled image
    cond = []
    gen.blocks[0][0].register_forward_hook(lambda m, inp, out: cond.append(inp[0][:, :1]))
    gen(x, gen.noise(3, 32, 48))
    assert torch.allclose(cond[0], torch.nn.functional.avg_pool2d(x, 4))


def test_samples_differ_by_z_and_reproduce_by_seed():
    nat = NaturalInvariance(torch.nn.Identity(), "mse", seed=0, **SMALL)
    x = patches(1)
    a, b = nat.sample(x, 3, seed=1, untrained=True), nat.sample(x, 3, seed=1, untrained=True)
    assert torch.equal(a, b) and a.shape == (3, 1, P, P)
    assert (a[0] - a[1]).abs().mean() > 1e-3  # two z, two samples
    assert not torch.equal(a, nat.sample(x, 3, seed=2, untrained=True))


def test_trained_at_one_size_applies_to_another():
    nat = NaturalInvariance(torch.nn.Identity(), "mse", seed=0, **SMALL)
    nat.train(patches(), 2, batch_size=4, progress=False)
    assert nat.sample(patches(1, size=128), 2).shape == (2, 1, 128, 128)
    with pytest.raises(ValueError, match="divisible by 4 .*e.g. 20, 32"):
        nat.sample(patches(1, size=30), 1)


def test_resume_equals_uninterrupted(tmp_path):
    src = patches()
    straight = NaturalInvariance(torch.nn.Identity(), "mse", seed=3, **SMALL)
    straight.train(src, 6, batch_size=4, progress=False)

    first = NaturalInvariance(torch.nn.Identity(), "mse", seed=3, **SMALL)
    first.train(src, 4, batch_size=4, checkpoint=tmp_path / "n.ckpt", checkpoint_every=2, progress=False)
    resumed = NaturalInvariance(torch.nn.Identity(), "mse", seed=3, **SMALL)  # a new process, say
    resumed.train(src, 6, batch_size=4, checkpoint=tmp_path / "n.ckpt", checkpoint_every=2, progress=False)
    for a, b in zip(straight.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.history["loss"] == resumed.history["loss"]
    # save / load keeps weights, optimizer and the generator's stream; another denoiser is refused
    straight.save(tmp_path / "nat.pt")
    back = NaturalInvariance.load(tmp_path / "nat.pt", torch.nn.Identity())
    assert torch.equal(back.sample(patches(1), 2, seed=5), straight.sample(patches(1), 2, seed=5))
    with pytest.raises(CTInvError, match="not the one this generator was trained for"):
        NaturalInvariance.load(tmp_path / "nat.pt", ZeroSquare())


def test_checkpoint_of_another_config_says_what_differs(tmp_path):
    NaturalInvariance(torch.nn.Identity(), "mse", seed=0, **SMALL).train(
        patches(), 2, batch_size=4, checkpoint=tmp_path / "c.ckpt", progress=False)
    other = NaturalInvariance(torch.nn.Identity(), "mse", alpha=0.7, seed=0, **SMALL)
    with pytest.raises(CTInvError, match=r"another config .*alpha"):
        other.train(patches(), 4, batch_size=4, checkpoint=tmp_path / "c.ckpt", progress=False)


def test_bad_input():
    f = torch.nn.Identity()
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        NaturalInvariance(f, beta=-1.0, **SMALL)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        NaturalInvariance(f, beta=float("nan"), **SMALL)
    with pytest.raises(ValueError, match=r"patch_size 30 .* multiple of 4"):
        NaturalInvariance(f, **{**SMALL, "patch_size": 30})
    nat = NaturalInvariance(f, **SMALL)
    with pytest.raises(ValueError, match="fewer than one batch"):
        nat.train(patches(3), 2, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="patches are 64 px"):
        nat.train(patches(8, size=64), 2, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="unknown natural-invariance settings"):
        NaturalInvariance(f, gamma=1.0, **SMALL)


@pytest.mark.reproduction
def test_ideal_low_pass_gets_its_change_above_the_cut_off():
    """Ground truth: an ideal low-pass ignores exactly the frequencies above its cut-off, everywhere in
    the image (a fully convolutional generator learns a translation-invariant null space quickly). The
    initial z-texture is broadband; a briefly trained generator (no critic) moves its change there."""
    f = IdealLowPass(0.2)
    # no HU range: the ground truth is that of the linear filter (a clamp would add low frequencies)
    nat = NaturalInvariance(f, "mse", alpha=0.5, beta=0.0, seed=0, lr=3e-3, hu_range=None, **{**SMALL, "margin": 0})
    x = patches(1, seed=9)
    before = f.stopband_fraction(nat.sample(x, 4, seed=1, untrained=True) - x)
    nat.train(patches(64), 40, batch_size=8, progress=False)
    delta = nat.sample(x, 4, seed=1) - x
    assert before < 0.7, before  # the start: broadband (the stop band is ~87% of the spectrum's area)
    assert f.stopband_fraction(delta) > 0.95, f.stopband_fraction(delta)
    assert float(delta.std()) > 0.1  # and it grew: not a trivially small change
    # and the output is (all but) unchanged
    assert float((f(x + delta) - f(x)).std()) < 0.1 * float(delta.std())


def test_nps_of_white_noise_is_flat_at_its_variance():
    rng = np.random.default_rng(0)
    f, nps = radial_nps(rng.normal(0, 10, (8, 128, 128)))
    # sigma^2 = 100 HU^2 px^2 at every frequency (lowest bins: mean removal; each ring is an estimate)
    assert nps[4:].mean() == pytest.approx(100, rel=0.03) and np.allclose(nps[4:], 100, rtol=0.2)
    smooth = np.stack([np.real(np.fft.ifft2(np.fft.fft2(a) * (np.hypot(*np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128))) < 0.1)))
                       for a in rng.normal(0, 10, (8, 128, 128))])
    _, nps_low = radial_nps(smooth)
    assert spectral_shape_distance(nps, nps) == 0 and spectral_shape_distance(nps, nps_low) > 0.5


def test_change_metrics_know_the_answers():
    """Known changes: removing the noise correlates -1 with it; a new realisation of the same amplitude
    about -0.71 with the same noise std; a change on the edges of the anatomy is flagged."""
    rng = np.random.default_rng(0)
    full = np.full((96, 96), 40.0)
    full[30:66, 30:66] = 200.0  # a block of "anatomy"
    noise = rng.normal(0, 20, (96, 96))
    x = full + noise
    removed = change_metrics(full[None], x, full)
    assert removed["corr_change_with_noise"] == pytest.approx(-1, abs=1e-6)
    new = change_metrics(np.stack([full + rng.normal(0, 20, (96, 96)) for _ in range(4)]), x, full)
    assert new["corr_change_with_noise"] == pytest.approx(-0.71, abs=0.05)
    assert new["noise_amplitude_ratio"] == pytest.approx(1.0, abs=0.15)
    v = verdicts(new)
    assert v["noise_realisation"].startswith("noise realisation: NEW") and "much less than noise" in v["anatomy"]
    edges = np.zeros((96, 96))
    edges[28:32, 28:68] = edges[64:68, 28:68] = 300.0  # moves the block's edges
    anatomy = change_metrics((x + edges)[None], x, full)
    assert verdicts(anatomy)["anatomy"].startswith("anatomy: ALTERED")


def test_samples_stay_in_the_physical_hu_range_unless_asked_not_to():
    """Issue 8.2: g(z|x) is projected onto -1024...3071 HU by default; None keeps the talk's form."""
    from ctinv_utils.units import hu_to_norm, norm_to_hu

    air = torch.full((1, 1, P, P), float(hu_to_norm(-1020.0)))  # at the floor: a 50 HU texture crosses it
    f = torch.nn.Identity()
    inside = NaturalInvariance(f, **SMALL).sample(air, 2, seed=0, untrained=True)
    free = NaturalInvariance(f, hu_range=None, **SMALL).sample(air, 2, seed=0, untrained=True)
    assert float(norm_to_hu(inside).min()) >= -1024.0 - 1e-3
    assert float(norm_to_hu(free).min()) < -1030.0
    with pytest.raises(ValueError, match="hu_range"):
        NaturalInvariance(f, hu_range=(100, -100), **SMALL)


def test_the_generator_learns_through_the_hu_projection():
    """The projection onto the HU range must not cut the generator off from its gradient (it once did:
    every step left the weights unchanged)."""
    nat = NaturalInvariance(torch.nn.Identity(), "mse", alpha=0.5, beta=0.0, seed=0, lr=1e-3, **SMALL)
    before = {k: v.clone() for k, v in nat.net.state_dict().items()}
    nat.train(patches(16), 2, batch_size=4, progress=False)
    assert any(not torch.equal(before[k], v) for k, v in nat.net.state_dict().items())
