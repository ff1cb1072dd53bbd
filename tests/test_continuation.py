"""Continuation over an alpha grid, warm starts and runs of different lengths side by side."""

import math

import pytest
import torch

from ctinv_utils.errors import BadArgumentError
from ctinv_utils.models import GaussRI
from ctinv_utils.recipes.invariances import InvarianceProtocol, invariance_rows, optimise_invariance
from ctinv_utils.synthesis.base import relative_spread
from ctinv_utils.synthesis.explorer import InvarianceExplorer
from ctinv_utils.synthesis.invariances import Invariance, stack_runs
from ctinv_utils.units import hu_to_norm


@pytest.fixture(scope="module")
def x():
    noise = 40 * torch.randn(1, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    return hu_to_norm(torch.full((1, 1, 40, 40), 40.0) + noise)


def _protocol(continuation: bool) -> InvarianceProtocol:
    return InvarianceProtocol(alphas=[0.01, 0.05, 0.2], max_iter=600, lr=0.1, adam_betas=(0.9, 0.9), stop_early=True,
                              min_iter=150, continuation=continuation, warm_min_iter=30)


def test_relative_spread_judges_each_run_over_its_own_iterations():
    long = [1.0 - 0.1 * t for t in range(10)]  # still moving: 10 % per step
    short = [1.0, 0.5, 0.5, 0.5]                # settled after its second step
    padded = [[a, short[t] if t < len(short) else math.nan] for t, a in enumerate(long)]
    both = relative_spread(padded, window=2)
    assert both[0] == pytest.approx(relative_spread(long, window=2)[0])
    assert both[1] == pytest.approx(relative_spread(short, window=2)[0]) and both[1] == 0.0


def test_continuation_runs_each_alpha_from_its_neighbour_and_reports_each_run(x):
    cold = optimise_invariance(x, GaussRI(), "mse", _protocol(False), seed=0)
    warm = optimise_invariance(x, GaussRI(), "mse", _protocol(True), seed=0)
    assert warm.result.shape == cold.result.shape == (3, 1, 40, 40) and warm.alpha_values == [0.01, 0.05, 0.2]
    # the largest alpha runs from x + noise exactly as in the batch; the others start warm and stop sooner
    assert warm.run_iterations[2] >= 150 and max(warm.run_iterations[:2]) < min(warm.run_iterations[2], cold.iteration)
    assert warm.warm_start and all(warm.convergence())
    rows = invariance_rows(warm, denoiser="g", distance="mse")
    assert [r["iterations"] for r in rows] == warm.run_iterations
    # the same optimum: each alpha's objective within 1 % of the batch from x + noise (it is negative)
    for i in range(3):
        lw = [v for v in (h[i] for h in warm.history["loss"]) if v == v][-1]
        assert lw <= 0.99 * cold.history["loss"][-1][i], (i, lw, cold.history["loss"][-1][i])
    assert warm.figure_arrays()["history_loss"].shape == (warm.iteration, 3)


def test_a_stacked_run_that_did_not_converge_stays_not_converged(x):
    quick = Invariance(x, GaussRI(), "mse", 0.2, seed=0, lr=0.1)
    quick.synthesize(200, progress=False)
    cut = Invariance(x, GaussRI(), "mse", 0.01, seed=0, lr=1e-4)  # far too small a step: still moving at its end
    cut.synthesize(20, progress=False)
    stacked = stack_runs([cut, quick])
    assert stacked.run_iterations == [20, 200]
    assert stacked.convergence() == [cut.convergence()[0], quick.convergence()[0]] == [False, True]


def test_stack_runs_refuses_batches_and_other_distances(x):
    a = Invariance(x, GaussRI(), "mse", [0.1, 0.2])
    with pytest.raises(BadArgumentError, match="single-alpha"):
        stack_runs([a])
    with pytest.raises(BadArgumentError, match="same image and distance"):
        stack_runs([Invariance(x, GaussRI(), "mse", 0.1), Invariance(x, GaussRI(), "dssim", 0.1)])


def test_a_start_of_the_wrong_shape_is_named(x):
    with pytest.raises(BadArgumentError, match="start must have shape"):
        Invariance(x, GaussRI(), "mse", [0.1, 0.2], start=torch.zeros(3, 1, 40, 40))


def test_explorer_starts_a_new_alpha_from_the_nearest_grid_result(x):
    grid = optimise_invariance(x, GaussRI(), "mse", _protocol(False), seed=0)
    kw = dict(max_iter=600, lr=0.1, adam_betas=(0.9, 0.9), synthesize_kw={"stop_criterion": 0.01, "stop_window": None,
                                                                          "min_iter": 150}, progress=False)
    warm = InvarianceExplorer(x, {"g": GaussRI()}, ("mse",), grid.alpha_values, warm_start=True, warm_min_iter=30, **kw)
    cold = InvarianceExplorer(x, {"g": GaussRI()}, ("mse",), grid.alpha_values, **kw)
    for ex in (warm, cold):
        ex.add(grid, "g")
    warm.result("g", "mse", 0.03), cold.result("g", "mse", 0.03)
    w, c = warm.runs[("g", "mse", 0.03)], cold.runs[("g", "mse", 0.03)]
    assert w["started_from"] == 0.05 and c["started_from"] is None  # log-nearest: 0.03 is nearer 0.05 than 0.01
    assert w["converged"] and w["iterations"] < c["iterations"]
    # the same optimum, seconds sooner: each objective at the result
    objective = {}
    for name, ex in (("warm", warm), ("cold", cold)):
        inv = Invariance(x, GaussRI(), "mse", 0.03, start=torch.from_numpy(ex.result("g", "mse", 0.03))[None, None])
        objective[name] = float(inv.objective()[0].detach())
    assert objective["cold"] < 0 and objective["warm"] <= 0.99 * objective["cold"]  # at most 1 % worse


def test_the_optimiser_benchmark_measures_every_method_against_adam(x):
    from ctinv_utils.tools.convergence import compare_optimisers, explorer_timings, optimiser_table

    protocol = _protocol(False).replace(max_iter=200, min_iter=60, warm_min_iter=20, max_iter_vgg=20)
    rows = compare_optimisers(x, {"g": GaussRI()}, protocol, 0, ("mse",))
    assert [r["method"] for r in rows] == ["adam"] * 3 + ["continuation"] * 3 + ["lbfgs"] * 3
    assert all(r["loss_vs_adam"] == 1.0 and r["speed_up"] == 1.0 for r in rows[:3])
    assert all(r["loss"] < 0 and r["seconds"] > 0 for r in rows) and "continuation" in optimiser_table(rows)
    timed = explorer_timings(x, "g", GaussRI(), protocol, cases=(("mse", 0.03),))
    assert [(r["start"], r["started_from"]) for r in timed] == [("warm", 0.05), ("cold", None)]
