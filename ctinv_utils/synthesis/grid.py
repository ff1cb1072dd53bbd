"""The settings of a sweep over (distance, alpha): an alpha grid and a learning rate per distance,
the early stop, and checks that an alpha a panel shows was optimised. Each bad value is one
``ValueError`` naming it and the fix."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ..settings import value_index
from .distances import DISTANCES


def rate_for(lr, distance: str) -> float:
    """Adam's learning rate for ``distance``: ``lr`` itself (a number, every distance), or
    ``lr[distance]`` (a mapping {distance: rate}). Measured on the quick preset's CNN-10 slice with a
    constant rate: bounded MSE gets furthest with 0.1 (0.03 is slower), (1-SSIM)/2 with 0.01 (at 0.1
    its small-alpha runs jitter above the loss of x itself: SSIM weighs a few HU in flat tissue)."""
    if isinstance(lr, Mapping):
        unknown = sorted(set(lr) - set(DISTANCES))
        if unknown:
            raise ValueError(f"lr names unknown distances {unknown}; use a subset of {list(DISTANCES)}")
        if distance not in lr:
            raise ValueError(f"lr gives no rate for the {distance!r} distance (it has {sorted(lr)}); add "
                             f"{distance!r}: <rate> or give one number for all distances")
        value = lr[distance]
    else:
        value = lr
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"lr must be a finite number > 0 (or a mapping {{distance: rate}}), got {value!r} for "
                         f"{distance!r}")
    return float(value)


def alphas_for(distance: str, alphas: Sequence[float], alphas_dssim: Sequence[float] | None = None,
               alphas_vgg: Sequence[float] | None = None) -> list[float]:
    """The alpha grid of ``distance``: its own (``alphas_dssim``, ``alphas_vgg``) when given, else
    ``alphas``. A grid per distance, because one alpha means different things for each: bounded MSE
    saturates, so its grid reaches down to 0.002; (1-SSIM)/2 at alpha = 0.002 did not converge in 3000
    steps on CNN-10 (quick preset, spread 1.1-1.4 %), at 0.005 in 419-578 steps (measured)."""
    own = {"dssim": alphas_dssim, "vgg": alphas_vgg}.get(distance)
    grid = alphas if own is None else own
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence) or not grid or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) and a > 0 for a in grid):
        raise ValueError(f"the alpha grid of the {distance!r} distance must be a non-empty list of finite numbers "
                         f"> 0, got {grid!r}")
    return [float(a) for a in grid]


def in_grid(alpha: float, grid: Sequence[float]) -> bool:
    """Is ``alpha`` one of ``grid`` (to a relative 1e-9: values read back from YAML or JSON)?"""
    return value_index(grid, alpha) is not None


def require_in_grid(alpha: float, grids: Mapping[str, Sequence[float]], name: str = "panel_alpha",
                    fix: str = "add it to every grid or pick one of them") -> None:
    """``alpha`` must be in each of ``grids`` ({what: alphas}): a panel shows a run that exists."""
    for what, grid in grids.items():
        if not in_grid(alpha, grid):
            raise ValueError(f"{name} {alpha:g} must be one of the alphas of {what} ({list(grid)}); {fix}")


def early_stop(enabled: bool = True, min_iter: int = 0, tol: float = 0.01) -> dict:
    """``synthesize()`` arguments that stop a run once every alpha converged by
    :meth:`~ctinv_utils.synthesis.base.Synthesis.convergence`'s own test (loss spread < ``tol`` over
    the last 10 % of the run), not before ``min_iter`` iterations; ``{}`` when not ``enabled``."""
    return {"stop_criterion": tol, "stop_window": None, "min_iter": int(min_iter)} if enabled else {}
