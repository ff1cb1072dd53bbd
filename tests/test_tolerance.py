"""Invariances at a stated output tolerance: the answer is the largest input change among the runs
whose output change is within the tolerance, refinement brackets the tolerance, and a tolerance no
alpha meets is reported as such."""

import numpy as np
import pytest
import torch

from ctinv_utils.synthesis.invariances import Invariance
from ctinv_utils.synthesis.tolerance import at_tolerance


class Blur(torch.nn.Module):
    """A 5x5 box blur (zero padding): passes low frequencies, damps fine texture."""

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)


def grid_run(alphas=(0.05, 0.5, 2.0), iters=60):
    x = 1.0 + 0.1 * torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    inv = Invariance(x, Blur(), "mse", alpha=list(alphas), seed=0, lr=0.03, hu_range=None)
    inv.synthesize(iters, progress=False, lr_schedule="cosine")
    return inv


@pytest.fixture(scope="module")
def grid():
    return grid_run()


def test_answer_is_the_largest_input_change_within_the_tolerance(grid):
    rows = grid.summary()
    outs = sorted(r["output_rms_hu"] for r in rows)
    tol = 0.5 * (outs[0] + outs[1])  # between the two smallest output changes: one grid alpha meets it
    res = at_tolerance(grid, tol_hu=tol, refine_steps=2, candidates=2, lr_schedule="cosine")
    assert res.within and res.output_rms_hu <= tol
    ok = [t for t in res.trials if t["output_rms_hu"] <= tol]
    assert res.input_rms_hu == max(t["input_rms_hu"] for t in ok)
    # refinement ran between the bracketing grid alphas, and every reported number is the run's own
    assert len(res.trials) > len(rows)
    refined = [t["alpha"] for t in res.trials[len(rows):]]
    a_sorted = sorted(r["alpha"] for r in rows)
    assert all(a_sorted[0] <= a <= a_sorted[-1] for a in refined), refined
    row = res.run.summary()[res.index]
    assert np.isclose(row["output_rms_hu"], res.output_rms_hu) and np.isclose(row["alpha"], res.alpha)
    assert res.summary()["alphas_tried"] == [t["alpha"] for t in res.trials]
    assert res.run.iteration == grid.iteration  # refined or not, the answer was optimised as long as the grid


def test_refinements_run_at_least_as_long_as_the_grid(grid):
    """Trials must compare along alpha: an early stop may not end a refinement before the grid's
    iteration count (min_iter is raised to it), and may let it run on up to max_iter."""
    outs = sorted(r["output_rms_hu"] for r in grid.summary())
    res = at_tolerance(grid, tol_hu=0.5 * (outs[0] + outs[1]), refine_steps=1, max_iter=grid.iteration + 30,
                       stop_criterion=0.01, stop_window=None, min_iter=0)
    refined = res.trials[len(outs):]
    assert refined and all(grid.iteration <= t["iterations"] <= grid.iteration + 30 for t in refined)
    assert all(t["iterations"] == grid.iteration for t in res.trials[:len(outs)])


def test_the_whole_grid_within_the_tolerance_needs_no_refinement(grid):
    big = 10 * max(r["output_rms_hu"] for r in grid.summary())
    res = at_tolerance(grid, tol_hu=big)
    assert len(res.trials) == len(grid.summary()) and res.within
    assert res.alpha == max(r["alpha"] for r in grid.summary())  # here the largest alpha moves the input most


def test_a_tolerance_no_alpha_meets_is_reported(grid):
    res = at_tolerance(grid, tol_hu=1e-6, refine_steps=0)
    assert not res.within and res.summary()["within_tolerance"] is False
    assert res.output_rms_hu == min(t["output_rms_hu"] for t in res.trials)


@pytest.mark.parametrize("tol", [0, -1, float("nan"), "5"])
def test_bad_tolerance(grid, tol):
    with pytest.raises(ValueError, match="tol_hu"):
        at_tolerance(grid, tol_hu=tol)
