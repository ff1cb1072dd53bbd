"""The settings of a sweep over (distance, alpha): an alpha grid and a learning rate per distance,
the early stop, and checks that an alpha a panel shows was optimised. Each bad value is one
``ValueError`` naming it and the fix."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ..settings import value_index
from .distances import DISTANCES


def rate_for(lr, distance: str) -> float:
    """Adam's learning rate for one distance, from one rate or a rate per distance.

    A rate per distance because the distances weigh a step differently: (1-SSIM)/2 weighs a few HU
    in flat tissue, so it needs a smaller rate than bounded MSE (the quick preset's rates are
    discussed in the documentation's performance notes).

    Parameters
    ----------
    lr : float or mapping
        One rate for every distance, or ``{distance: rate}``.
    distance : {"mse", "dssim", "vgg"}
        The distance whose rate is wanted.

    Returns
    -------
    float
        The rate, finite and > 0.

    Raises
    ------
    ValueError
        A mapping that names an unknown distance or lacks ``distance``, or a rate that is not a
        finite number > 0.

    Examples
    --------
    >>> from ctinv_utils import rate_for
    >>> rate_for({"mse": 0.1, "dssim": 0.01}, "dssim"), rate_for(0.05, "vgg")
    (0.01, 0.05)
    """
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
    """The alpha grid of one distance: its own grid when given, else the common one.

    A grid per distance, because one alpha means different things for each: bounded MSE saturates,
    so its grid reaches down to 0.002, where (1-SSIM)/2 runs do not converge.

    Parameters
    ----------
    distance : {"mse", "dssim", "vgg"}
        The distance whose grid is wanted.
    alphas : sequence of float
        The common grid (bounded MSE's, and any distance without its own).
    alphas_dssim, alphas_vgg : sequence of float, optional
        The grids of (1-SSIM)/2 and VGG16.

    Returns
    -------
    list of float

    Raises
    ------
    ValueError
        The chosen grid is empty or holds a value that is not a finite number > 0.

    Examples
    --------
    >>> from ctinv_utils import alphas_for
    >>> alphas_for("dssim", [0.002, 0.01, 0.05], alphas_dssim=[0.005, 0.02])
    [0.005, 0.02]
    """
    own = {"dssim": alphas_dssim, "vgg": alphas_vgg}.get(distance)
    grid = alphas if own is None else own
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence) or not grid or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) and a > 0 for a in grid):
        raise ValueError(f"the alpha grid of the {distance!r} distance must be a non-empty list of finite numbers "
                         f"> 0, got {grid!r}")
    return [float(a) for a in grid]


def nearest_alpha(alpha: float, grid: Sequence[float]) -> float:
    """The value of ``grid`` nearest to ``alpha`` on a log scale (all > 0), e.g. the start of a warm run."""
    return min(grid, key=lambda a: abs(math.log(a / alpha)))


def in_grid(alpha: float, grid: Sequence[float]) -> bool:
    """Is ``alpha`` one of ``grid`` (to a relative 1e-9: values read back from YAML or JSON)?"""
    return value_index(grid, alpha) is not None


def require_in_grid(alpha: float, grids: Mapping[str, Sequence[float]], name: str = "panel_alpha",
                    fix: str = "add it to every grid or pick one of them") -> None:
    """Check that an alpha is in every grid, so that a panel shows a run that exists.

    Parameters
    ----------
    alpha : float
        The alpha a panel shows.
    grids : mapping
        ``{what: alphas}``, e.g. ``{"the mse grid": [...], "the dssim grid": [...]}``; equality to a
        relative 1e-9 (values read back from YAML or JSON).
    name, fix : str
        How the alpha is called in the message, and the fix it suggests.

    Raises
    ------
    ValueError
        ``alpha`` is missing from one of the grids (names it and its values).

    Examples
    --------
    >>> from ctinv_utils import require_in_grid
    >>> require_in_grid(0.05, {"mse": [0.01, 0.05], "dssim": [0.02, 0.05]})
    """
    for what, grid in grids.items():
        if not in_grid(alpha, grid):
            raise ValueError(f"{name} {alpha:g} must be one of the alphas of {what} ({list(grid)}); {fix}")


def early_stop(enabled: bool = True, min_iter: int = 0, tol: float = 0.01) -> dict:
    """The ``synthesize()`` arguments of an early stop at convergence.

    The run stops once every alpha passes
    :meth:`~ctinv_utils.synthesis.base.Synthesis.convergence`'s own test (loss spread below ``tol``
    over the last 10 % of the run), so a stopped run is one that test calls converged.

    Parameters
    ----------
    enabled : bool
        False gives ``{}``: the run takes all its iterations.
    min_iter : int
        Never stop before this many iterations (a 10 % window of a short run is a few steps).
    tol : float
        The relative loss spread that counts as converged.

    Returns
    -------
    dict
        Keyword arguments for :meth:`~ctinv_utils.synthesis.base.Synthesis.synthesize`.

    Examples
    --------
    >>> from ctinv_utils import early_stop
    >>> early_stop(min_iter=300)
    {'stop_criterion': 0.01, 'stop_window': None, 'min_iter': 300}
    """
    return {"stop_criterion": tol, "stop_window": None, "min_iter": int(min_iter)} if enabled else {}
