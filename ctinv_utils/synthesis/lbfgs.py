"""A batched, projected L-BFGS for synthesis objectives that are independent per sample.

An invariance over an alpha grid optimises A independent objectives in one batch (one image per
alpha). :class:`torch.optim.LBFGS` would treat the batch as one vector: one shared line search, one
curvature history mixing the alphas. Here each sample keeps its own curvature pairs, step length and
Armijo backtracking, while every evaluation still runs the whole batch (or the samples still
searching) through the denoiser at once. The HU range is a box: the search direction is restricted to
the pixels that are not held at a bound by their gradient, and every trial point is projected onto the
box (the projected quasi-Newton rule; exact for the box, no penalty).

Written here rather than taken from a library: SciPy's L-BFGS-B is exact for boxes but optimises one
flat vector (no per-sample line search) and needs a round trip through NumPy every evaluation; torch's
LBFGS has neither bounds nor per-sample searches.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..errors import BadArgumentError

#: Armijo's sufficient-decrease constant (the usual 1e-4).
ARMIJO_C1 = 1e-4


class BatchedLBFGS(torch.optim.Optimizer):
    """L-BFGS with a per-sample history and line search over a batch ``(A, ...)`` of independent problems.

    ``step(closure)`` takes ``closure(x, index) -> (loss, terms)`` that evaluates the samples ``index``
    (a LongTensor of k batch positions) at ``x`` ``(k, ...)``: their losses ``(k,)`` with a graph to
    ``x`` and a dict of per-sample terms ``(k,)`` to record. It returns ``(loss (A,), grad (A, ...),
    terms)`` at the accepted point of each sample.

    Parameters
    ----------
    params : list with one tensor, shape (A, ...)
        The batch being optimised (updated in place).
    lr : float
        The first step's largest change of any pixel (normalized units); later steps take the
        quasi-Newton length (step 1 with the Barzilai-Borwein initial scaling).
    history_size : int
        Curvature pairs kept per sample.
    bounds : (float, float) or None
        The box every iterate is projected onto (normalized units), or None.
    max_backtracks : int
        Halvings of a step before a sample takes no step this iteration (its history is reset).
    """

    needs_closure = True

    def __init__(self, params, lr: float = 0.1, history_size: int = 10, bounds=None, max_backtracks: int = 12):
        if not (isinstance(history_size, int) and history_size >= 1):
            raise BadArgumentError(f"history_size must be an integer >= 1, got {history_size!r}")
        super().__init__(params, {"lr": lr, "history_size": history_size, "max_backtracks": max_backtracks})
        if len(self.param_groups) != 1 or len(self.param_groups[0]["params"]) != 1:
            raise BadArgumentError("BatchedLBFGS optimises exactly one tensor (the batch of images)")
        self.bounds = (-math.inf, math.inf) if bounds is None else (float(bounds[0]), float(bounds[1]))

    @property
    def _param(self) -> torch.Tensor:
        return self.param_groups[0]["params"][0]

    def _evaluate(self, closure: Callable, x: torch.Tensor, index: torch.Tensor):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            loss, terms = closure(x, index)
            grad, = torch.autograd.grad(loss.sum(), [x])
        return loss.detach(), grad.detach(), {k: v.detach() for k, v in terms.items()}

    def _direction(self, g: torch.Tensor, free: torch.Tensor, state: dict, lr: float) -> torch.Tensor:
        """The two-loop recursion per sample on the free pixels' gradient ``(A, N)``."""
        S, Y, R = state["s"], state["y"], state["rho"]
        q = g * free
        alphas = []
        for s, y, rho in zip(reversed(S), reversed(Y), reversed(R)):
            a = rho * (s * q).sum(1)
            alphas.append(a)
            q = q - a[:, None] * y
        if S:
            s, y = S[-1], Y[-1]
            yy = (y * y).sum(1)
            gamma = torch.where(yy > 0, (s * y).sum(1) / yy.clamp_min(1e-30), torch.zeros_like(yy))
        else:
            gamma = torch.zeros(g.shape[0], dtype=g.dtype, device=g.device)
        # no curvature yet (first step, or a sample whose history was reset): a gradient step whose
        # largest pixel change is lr
        gamma = torch.where(gamma > 0, gamma, lr / q.abs().amax(1).clamp_min(1e-30))
        q = q * gamma[:, None]
        for (s, y, rho), a in zip(zip(S, Y, R), reversed(alphas)):
            b = rho * (y * q).sum(1)
            q = q + (a - b)[:, None] * s
        d = -q * free
        uphill = (d * g).sum(1) >= 0  # not a descent direction (a bad pair): fall back to the gradient
        if uphill.any():
            steep = -(g * free)[uphill]
            d[uphill] = steep * (lr / steep.abs().amax(1).clamp_min(1e-30))[:, None]
        return d

    @torch.no_grad()
    def step(self, closure: Callable):  # type: ignore[override]
        x = self._param
        group = self.param_groups[0]
        lr, m, max_bt = group["lr"], group["history_size"], group["max_backtracks"]
        state = self.state[x]
        A = x.shape[0]
        every = torch.arange(A, device=x.device)
        if "loss" not in state:  # the first call: the loss and gradient at the start
            state["loss"], state["grad"], state["terms"] = self._evaluate(closure, x, every)
            state["s"], state["y"], state["rho"] = [], [], []
        lo, hi = self.bounds
        L, g = state["loss"], state["grad"]
        xf, gf = x.detach().flatten(1), g.flatten(1)
        held = ((xf <= lo) & (gf > 0)) | ((xf >= hi) & (gf < 0))  # at a bound, pushed against it
        d = self._direction(gf, (~held).to(gf.dtype), state, lr)
        t = torch.ones(A, dtype=xf.dtype, device=xf.device)
        x_new, L_new, g_new = xf.clone(), L.clone(), gf.clone()
        terms = {k: v.clone() for k, v in state["terms"].items()}
        searching = torch.ones(A, dtype=torch.bool, device=xf.device)
        for _ in range(max_bt):
            idx = every[searching]
            trial = (xf[idx] + t[idx, None] * d[idx]).clamp(lo, hi)
            Lt, gt, tt = self._evaluate(closure, trial.view(len(idx), *x.shape[1:]), idx)
            ok = Lt <= L[idx] + ARMIJO_C1 * (gf[idx] * (trial - xf[idx])).sum(1)
            acc = idx[ok]
            x_new[acc], L_new[acc], g_new[acc] = trial[ok], Lt[ok], gt.flatten(1)[ok]
            for k, v in tt.items():
                terms[k][acc] = v[ok]
            searching[acc] = False
            if not searching.any():
                break
            t = torch.where(searching, t * 0.5, t)
        s, y = x_new - xf, g_new - gf
        sy = (s * y).sum(1)
        keep = (sy > 1e-12) & ~searching
        if searching.any():  # no decrease found: no step, and forget the curvature that proposed it
            for key in ("s", "y"):
                for pair in state[key]:
                    pair[searching] = 0
            for rho in state["rho"]:
                rho[searching] = 0
        state["s"].append(s * keep[:, None])
        state["y"].append(y * keep[:, None])
        state["rho"].append(torch.where(keep, 1.0 / sy.clamp_min(1e-30), torch.zeros_like(sy)))
        for key in ("s", "y", "rho"):
            del state[key][:-m]
        x.copy_(x_new.view_as(x))
        state["loss"], state["grad"], state["terms"] = L_new, g_new.view_as(x), terms
        return L_new, state["grad"], terms
