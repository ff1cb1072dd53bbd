"""The batched projected L-BFGS against problems whose answer is known exactly."""

import numpy as np
import pytest
import torch

from ctinv_utils.models import GaussRI, central_square
from ctinv_utils.synthesis.invariances import Invariance
from ctinv_utils.synthesis.lbfgs import BatchedLBFGS
from ctinv_utils.units import hu_to_norm

N = 48
ROWS, COLS = central_square(N, N)
INSIDE = np.zeros((N, N), bool)
INSIDE[ROWS, COLS] = True


class ZeroSquare(torch.nn.Module):
    """Identity except the central square, which it sets to zero."""

    def forward(self, x):
        y = x.clone()
        y[..., ROWS, COLS] = 0
        return y


def _quadratic(diag, b):
    """Per sample i: 0.5 sum(diag_i x^2) - sum(b_i x), a separable convex problem."""
    def closure(x, index):
        loss = (0.5 * diag[index] * x ** 2 - b[index] * x).flatten(1).sum(1)
        return loss, {"norm": x.flatten(1).norm(dim=1)}
    return closure


@pytest.mark.parametrize("bounds", [None, (-0.5, 0.8)])
def test_box_constrained_quadratics_reach_their_exact_minimum(bounds):
    """Three independent ill-conditioned quadratics (condition number 100): the minimum is b / d, clipped
    to the box; each sample converges to it on its own."""
    g = torch.Generator().manual_seed(0)
    diag = 10 ** (2 * torch.rand(3, 100, generator=g, dtype=torch.float64))
    b = torch.randn(3, 100, generator=g, dtype=torch.float64) * diag
    b[1] *= 1e-2  # a second sample on another scale: its steps must not be the others'
    exact = b / diag if bounds is None else (b / diag).clamp(*bounds)
    x = torch.zeros(3, 100, dtype=torch.float64)
    opt = BatchedLBFGS([x], lr=0.1, bounds=bounds)
    closure = _quadratic(diag, b)
    for _ in range(100):
        loss, grad, terms = opt.step(closure)
    assert torch.allclose(x, exact, atol=1e-6), (x - exact).abs().max()
    if bounds is not None:
        assert float(x.min()) >= bounds[0] and float(x.max()) <= bounds[1]
        assert (x == bounds[0]).any() and (x == bounds[1]).any()  # the box is active: a real test
    assert torch.allclose(terms["norm"], x.norm(dim=1))  # the terms are those of the accepted point


def test_every_step_decreases_every_samples_loss():
    g = torch.Generator().manual_seed(1)
    diag = 10 ** (2 * torch.rand(2, 50, generator=g, dtype=torch.float64))
    b = torch.randn(2, 50, generator=g, dtype=torch.float64)
    x = torch.zeros(2, 50, dtype=torch.float64)
    opt, closure = BatchedLBFGS([x], lr=0.5), _quadratic(diag, b)
    losses = [opt.step(closure)[0] for _ in range(20)]
    assert all(bool((later <= earlier).all()) for earlier, later in zip(losses, losses[1:]))


def test_zeroed_square_changes_inside_and_keeps_outside_within_the_hu_range():
    """Ground truth: the square-zeroing denoiser ignores its square. The optimum of
    d(f(x), f(x_inv)) - alpha d(x, x_inv) changes the pixels inside as far as the input term pays
    (bounded MSE saturates: hundreds of HU) and leaves every pixel outside where it is. L-BFGS gets
    there within 40 iterations and never leaves the HU range."""
    x = hu_to_norm(torch.full((1, 1, N, N), 40.0) + 30 * torch.randn(1, 1, N, N, generator=torch.Generator().manual_seed(0)))
    inv = Invariance(x, ZeroSquare(), "mse", alpha=0.05, optimizer="lbfgs", lr=0.1)
    inv.synthesize(40, progress=False)
    lo, hi = (float(np.float32(hu_to_norm(v))) for v in inv.hu_range)  # the bounds as the image holds them
    d = (inv.result - x)[0, 0].numpy()
    assert np.sqrt(np.mean(d[INSIDE] ** 2)) > 1.0  # > 500 HU (from 50 HU of start noise)
    assert np.abs(d[~INSIDE]).max() < 2e-3  # < 1 HU
    assert float(inv.result.min()) >= lo and float(inv.result.max()) <= hi


def test_batched_alphas_equal_single_runs():
    x = hu_to_norm(torch.full((1, 1, 40, 40), 40.0) + 40 * torch.randn(1, 1, 40, 40, generator=torch.Generator().manual_seed(2)))
    alphas = [0.01, 0.1]
    batched = Invariance(x, GaussRI(), "mse", alpha=alphas, seed=3, optimizer="lbfgs")
    batched.synthesize(5, progress=False)  # beyond a few steps rounding differences grow (a line search
    # decision flips): the runs then agree in loss, not pixel by pixel
    for i, a in enumerate(alphas):
        single = Invariance(x, GaussRI(), "mse", alpha=a, seed=3, optimizer="lbfgs")
        single.synthesize(5, progress=False)
        assert torch.allclose(batched.result[i], single.result[0], atol=1e-4)
        assert np.allclose([h[i] for h in batched.history["loss"]], [h[0] for h in single.history["loss"]],
                           rtol=1e-4, atol=1e-7)


def test_resume_equals_uninterrupted(tmp_path):
    x = hu_to_norm(torch.full((1, 1, 32, 32), 40.0) + 40 * torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(4)))
    straight = Invariance(x, GaussRI(), "dssim", alpha=[0.02, 0.2], seed=1, lr=0.02, optimizer="lbfgs")
    straight.synthesize(16, progress=False)
    first = Invariance(x, GaussRI(), "dssim", alpha=[0.02, 0.2], seed=1, lr=0.02, optimizer="lbfgs")
    first.synthesize(7, progress=False)
    first.save(tmp_path / "inv.pt")
    resumed = Invariance.load(tmp_path / "inv.pt", GaussRI())
    assert resumed.optimizer_name == "lbfgs" and resumed.iteration == 7
    resumed.synthesize(9, progress=False)
    assert torch.equal(resumed.result, straight.result)
    assert resumed.history["loss"] == straight.history["loss"]


def test_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        Invariance(torch.zeros(1, 1, 16, 16), GaussRI(), "mse", optimizer="sgd")
