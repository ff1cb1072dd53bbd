"""Linearised invariances: the input changes a denoiser ignores, to first order, at one image.

Near an image x, ``f(x + v) ~ f(x) + J v``. The changes f ignores are the eigenvectors of
``A = J^T J`` with the smallest eigenvalues, a dimensionless squared gain (f maps normalized units to
normalized units); the largest are the changes it amplifies most. ``A v`` is one jvp and one vjp
(``torch.func``), J is never formed, and a thick-restart Lanczos iteration finds both ends.

Every returned pair is checked with an explicit product and certified only where that check allows:
relative to its own eigenvalue (residual ``+ phi <= tol * lambda``), or as a null direction whose
eigenvalue and residual both lie within the rounding ``phi = NOISE_FACTOR * eps * lambda_max`` of one
product. Below the floor ``2 phi / tol`` a product of that precision cannot certify an eigenvalue: such
pairs are reported as "below the solver's resolution" with their upper bound, never as ignored
directions. :func:`alpha_report` links lambda to the alpha of the bounded-MSE invariance.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import atomic
from ..errors import CTInvError
from ..models import freeze, module_device
from ..progress import finish, progress_bar
from ..provenance import versions
from ..speed import channels_last, tune_allocator
from ..units import norm_to_hu
from .base import Synthesis

#: Relative residual a pair must reach: ``||A v - lambda v|| + phi <= tol * lambda``.
DEFAULT_TOL = 1e-3
DEFAULT_MAX_MATVECS = 3000
#: The rounding of one ``J^T J v`` product, in units of ``eps * lambda_max`` (``eps`` of the product's
#: dtype): ``phi = NOISE_FACTOR * eps * lambda_max``. Against float64 products of the same denoisers
#: (CNN-10, WGAN-VGG, Gauss+RI, an FFT low-pass; random, smooth and checkerboard directions) the float32
#: error was 0.2 to 2.4 ``eps * lambda_max``; 4 leaves a margin.
NOISE_FACTOR = 4.0
#: A certified direction counts as *ignored* when its squared gain is at most this: the output changes
#: by at most 10 % of the input change (f maps normalized units to normalized units, gain 1 = passed).
IGNORED_MAX_EIGENVALUE = 1e-2
#: Rounding of a Ritz vector combined in float64 from a Krylov basis (up to a few hundred columns, Gram-
#: Schmidt twice), in units of ``lambda_max``; it adds to ``phi``, and only matters for float64 products.
BASIS_ROUNDING = 64 * float(np.finfo(np.float64).eps)
WHICH = ("both", "smallest", "largest")


class LinearisedInputError(CTInvError, ValueError):
    """Bad input to a linearised-invariance computation (shape, k, budget, non-finite values)."""


class LinearisationDiverged(CTInvError):
    """The Jacobian product returned NaN or inf."""


# --------------------------------------------------------------------------------------------
# What a residual certifies
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Certificate:
    """What the explicit residuals of ``k`` eigenpairs certify (see :func:`certify`); ``(k,)`` arrays.

    ``converged``: certified (relative or null); ``null``: certified as zero to the product's
    precision (``|lambda| <= noise`` and residual ``<= noise``); ``below_floor``: not certified and
    below ``floor``, where no residual the product can reach would certify it; ``thresholds``: the
    residual each pair had to reach. ``noise`` (``phi``) and ``floor`` share lambda's units."""

    converged: np.ndarray
    null: np.ndarray
    below_floor: np.ndarray
    thresholds: np.ndarray
    noise: float
    floor: float


def certify(eigenvalues, residuals, lambda_max: float, eps: float, tol: float,
            noise_factor: float = NOISE_FACTOR) -> Certificate:
    """Certify eigenpairs of a symmetric PSD operator from their explicit residuals.

    A symmetric ``A`` has an eigenvalue within ``||A v - lambda v||`` of a Rayleigh quotient
    ``lambda``; a product computed in a precision ``eps`` adds up to ``phi = noise_factor * eps *
    lambda_max`` to that residual. A pair is certified when ``r + phi <= tol * lambda`` (its eigenvalue
    to a relative ``tol``: relative to its own scale, not to ``lambda_max``, so a small eigenvalue is
    not passed by a residual larger than itself) or when ``|lambda| <= phi`` and ``r <= phi`` (a null
    direction: zero to the product's precision). Below ``floor = 2 phi / tol`` no pair can be
    certified relatively (its residual cannot fall below the rounding); an uncertified pair there is
    ``below_floor``: all that is known is the upper bound (interlacing of Ritz values) ``lambda_i <=
    lambda + phi``.

    Parameters
    ----------
    eigenvalues, residuals : array_like, shape (k,)
        Rayleigh quotients and explicit residuals ``||A v - lambda v||`` of unit vectors.
    lambda_max : float
        The largest eigenvalue (an estimate), same units.
    eps : float
        Relative precision of one product (``torch.finfo(dtype).eps``).
    tol : float
        Relative residual, in (0, 1).
    noise_factor : float
        ``phi`` in units of ``eps * lambda_max``.

    Returns
    -------
    Certificate
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
    r = np.asarray(residuals, dtype=np.float64).reshape(-1)
    phi = float((noise_factor * eps + BASIS_ROUNDING) * max(float(lambda_max), 0.0))
    at_zero = np.abs(lam) <= phi
    thresholds = np.where(at_zero, phi, tol * lam - phi)
    converged = r <= thresholds
    floor = 2.0 * phi / tol
    return Certificate(converged=converged, null=converged & at_zero, below_floor=~converged & (lam < floor),
                       thresholds=thresholds, noise=phi, floor=floor)


# --------------------------------------------------------------------------------------------
# The eigensolver: Krylov-Schur (thick-restart Lanczos) for both ends of a symmetric operator
# --------------------------------------------------------------------------------------------

@dataclass
class KrylovState:
    """A Krylov-Schur relation ``A V[:, :p] = V[:, :p+1] H`` to resume from: ``V`` ``(n, p + 1)``
    orthonormal float64, ``H`` ``(p + 1, p)`` (diagonal Ritz values over the residual row), ``anorm``
    the largest ``||A v||`` seen (a lower bound on ``||A||``), the products spent so far and the
    relative precision ``eps`` of the products (None before the first)."""

    V: torch.Tensor
    H: torch.Tensor
    anorm: float
    matvecs: int
    eps: float | None = None

    def to_dict(self) -> dict:
        return {"V": self.V.cpu(), "H": self.H.cpu(), "anorm": float(self.anorm), "matvecs": int(self.matvecs),
                "eps": None if self.eps is None else float(self.eps)}

    @classmethod
    def from_dict(cls, d: dict) -> "KrylovState":
        return cls(d["V"].double(), d["H"].double(), float(d["anorm"]), int(d["matvecs"]), d.get("eps"))


@dataclass
class EigenResult:
    """``values_min`` ascending and ``values_max`` descending ``(k,)``; ``vectors_*`` ``(n, k)`` unit
    columns; ``ritz_residuals_*`` the Lanczos estimates of ``||A v - lambda v||``; ``state`` to resume;
    ``history`` one row per restart; ``eps`` the relative precision of the products. Float64 tensors."""

    values_min: torch.Tensor
    vectors_min: torch.Tensor
    values_max: torch.Tensor
    vectors_max: torch.Tensor
    ritz_residuals_min: torch.Tensor
    ritz_residuals_max: torch.Tensor
    state: KrylovState
    history: list[dict] = field(default_factory=list)
    eps: float = float(torch.finfo(torch.float64).eps)


def _orthogonalise(V: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Classical Gram-Schmidt twice ("twice is enough"): ``w`` minus its projection on the columns of
    ``V``; returns (w, coefficients)."""
    h = V.T @ w
    w = w - V @ h
    h2 = V.T @ w
    return w - V @ h2, h + h2


def _random_direction(V: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    for _ in range(5):
        w = torch.randn(V.shape[0], generator=gen, dtype=torch.float64).to(V.device)
        w, _ = _orthogonalise(V, w)
        nrm = float(torch.linalg.vector_norm(w))
        if nrm > 1e-8:
            return w / nrm
    raise CTInvError("could not find a direction orthogonal to the Krylov basis; the basis is as large "
                     "as the image: use a smaller basis_size or k")


def extreme_eigenpairs(matvec: Callable[[torch.Tensor], torch.Tensor], n: int, k: int, tol: float = DEFAULT_TOL,
                       max_matvecs: int = DEFAULT_MAX_MATVECS, basis_size: int | None = None, seed: int = 0,
                       state: KrylovState | None = None, device: str | torch.device = "cpu",
                       on_matvec: Callable[[], None] | None = None,
                       on_restart: Callable[[dict], None] | None = None, which: str = "both",
                       max_seconds: float | None = None, eps: float | None = None,
                       noise_factor: float = NOISE_FACTOR) -> EigenResult:
    """The ``k`` smallest and ``k`` largest eigenpairs of a symmetric positive semi-definite operator.

    Krylov-Schur (thick-restart Lanczos; Stewart 2001) with full reorthogonalisation and both ends from
    one Krylov space. A breakdown (the basis spans an invariant subspace up to the products' rounding:
    an exact null space, a projection) continues with a fresh random direction, so eigenvalues of any
    multiplicity are found. Why not ``scipy.sparse.linalg.eigsh``: on operators with a null space it
    missed zero eigenvalues (see the documentation's performance notes), has no product budget and
    returns no unconverged pairs.

    Parameters
    ----------
    matvec : callable
        ``(n,)`` float64 tensor -> ``(n,)`` ``A v`` (any float dtype; its ``eps`` is the precision).
    n, k : int
        Operator size; pairs per end (``1 <= 2k + 1 <= n``).
    tol : float
        Relative residual: the iteration stops when every wanted pair passes :func:`certify` with
        twice its Lanczos residual estimate (the recurrence does not see the products' rounding).
        Pairs below the floor are never certified: the budget then ends the run.
    max_matvecs : int
        At most this many more products. ``max_seconds``: also stop after this much wall-clock time.
    basis_size : int, optional
        The largest Krylov basis (default ``max(8k, 4k + 32)``, at most ``n - 1``): memory ``n * m``.
    state : KrylovState, optional
        Continue a previous run (its ``result.state``).
    which : {"both", "smallest", "largest"}
        The end(s) whose certification stops the iteration (both ends are always returned).
    eps : float, optional
        Relative precision of the products (default: that of the first product's dtype).

    Returns
    -------
    EigenResult

    Raises
    ------
    LinearisedInputError
        Bad ``k``, ``basis_size``, budget or ``which``.
    LinearisationDiverged
        A product returned NaN or inf.
    """
    if which not in WHICH:
        raise LinearisedInputError(f"which must be one of {WHICH}, got {which!r}")
    if max_seconds is not None and not (np.isfinite(max_seconds) and max_seconds > 0):
        raise LinearisedInputError(f"max_seconds must be a positive number of seconds or None, got {max_seconds!r}")
    t_start = time.perf_counter()

    def out_of_budget() -> bool:
        # the time budget applies once 2k products have built the Ritz vectors to return
        return spent >= max_matvecs or (max_seconds is not None and spent >= 2 * k
                                        and time.perf_counter() - t_start >= max_seconds)

    if k < 1 or 2 * k + 1 > n:
        raise LinearisedInputError(f"k={k} does not fit an operator of size {n}; need 1 <= 2k + 1 <= n")
    if state is None and max_matvecs < 2 * k:
        raise LinearisedInputError(f"max_matvecs={max_matvecs} is too small to build {2 * k} Ritz vectors; "
                                   f"give at least 2k = {2 * k}")
    m = min(basis_size or max(8 * k, 4 * k + 32), n - 1)
    if m < 2 * k + 2:
        raise LinearisedInputError(f"basis_size {m} is too small for k={k}; use at least 2k + 2 = {2 * k + 2}")
    f64 = dict(dtype=torch.float64, device=device)
    V = torch.zeros(n, m + 1, **f64)
    H = torch.zeros(m + 1, m, **f64)
    spent0 = state.matvecs if state is not None else 0
    if eps is None and state is not None:
        eps = state.eps
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + spent0)  # deterministic; fresh on resume
    if state is None:
        V[:, 0] = _random_direction(V[:, :0], gen)
        p, anorm = 0, 0.0
    else:
        p = state.H.shape[1]
        if p >= m:
            raise LinearisedInputError(f"the stored Krylov state keeps {p} vectors, more than basis_size {m}; "
                                       "resume with the basis_size it was computed with")
        V[:, :p + 1], H[:p + 1, :p], anorm = state.V.to(**f64), state.H.to(**f64), state.anorm
    spent = 0
    history: list[dict] = []
    size = p
    while True:
        if size >= 2 * k:  # Ritz step on the current basis (also on a resumed state: maybe done already)
            S = H[:size, :size]
            theta, Y = torch.linalg.eigh(0.5 * (S + S.T))  # ascending
            res = (H[size, :size] @ Y).abs()
            scale = max(float(theta.abs().max()), anorm, 1e-300)
            lo, hi = torch.arange(k), torch.arange(size - 1, size - 1 - k, -1)
            e = eps if eps is not None else float(torch.finfo(torch.float64).eps)
            # the recurrence's estimate misses the products' rounding: ask it for half the null residual
            c_lo = certify(theta[lo].cpu().numpy(), 2 * res[lo].cpu().numpy(), scale, e, tol, noise_factor)
            c_hi = certify(theta[hi].cpu().numpy(), 2 * res[hi].cpu().numpy(), scale, e, tol, noise_factor)
            row = {"matvecs": spent0 + spent, "lambda_min": float(theta[0]), "lambda_max": float(theta[-1]),
                   "converged_min": int(c_lo.converged.sum()), "converged_max": int(c_hi.converged.sum()),
                   "below_floor_min": int(c_lo.below_floor.sum()), "floor": c_lo.floor}
            history.append(row)
            if on_restart is not None:
                on_restart(row)
            done_lo, done_hi = bool(c_lo.converged.all()), bool(c_hi.converged.all())
            # an end not asked for counts as done: the restart gives its room to the wanted end
            done_lo, done_hi = done_lo or which == "largest", done_hi or which == "smallest"
            if (done_lo and done_hi) or out_of_budget():
                break
            # thick restart: keep the wanted Ritz vectors and a margin from each end; a converged end keeps
            # one spare, the rest of the room goes to the end still converging
            room = min(max((m - 2 * k) // 2, 2), m - 2 * k - 1)
            extra_lo = extra_hi = room // 2
            if done_hi:
                extra_lo, extra_hi = room - 1, 1
            elif done_lo:
                extra_lo, extra_hi = 1, room - 1
            n_lo = min(k + extra_lo, size)
            n_hi = min(k + extra_hi, size - n_lo)
            keep = torch.cat([torch.arange(n_lo), torch.arange(size - n_hi, size)])
            b = H[size, :size] @ Y[:, keep]
            p = len(keep)
            V[:, :p] = V[:, :size] @ Y[:, keep]
            V[:, p] = V[:, size]
            V[:, p + 1:] = 0.0
            H.zero_()
            H[:p, :p] = torch.diag(theta[keep])
            H[p, :p] = b
        # grow the basis from p to m columns
        size = p
        for j in range(p, m):
            if out_of_budget():
                break
            w = matvec(V[:, j])
            if eps is None:
                eps = float(torch.finfo(w.dtype).eps)
            w = w.to(**f64)
            spent += 1
            if on_matvec is not None:
                on_matvec()
            if not bool(torch.isfinite(w).all()):
                raise LinearisationDiverged(f"the Jacobian product returned NaN or inf after {spent0 + spent} "
                                            "products; check the denoiser for NaN/inf outputs at this image")
            anorm = max(anorm, float(torch.linalg.vector_norm(w)))
            w, h = _orthogonalise(V[:, :j + 1], w)
            H[:j + 1, j] = h
            beta = float(torch.linalg.vector_norm(w))
            # a residual at the products' rounding: the basis spans an invariant subspace to working precision
            if beta <= noise_factor * eps * anorm:
                H[j + 1, j] = 0.0
                V[:, j + 1] = _random_direction(V[:, :j + 1], gen)
            else:
                H[j + 1, j] = beta
                V[:, j + 1] = w / beta
            size = j + 1
        p = size
    # the state to resume from, compressed to the wanted Ritz vectors and their margin
    n_keep = min(m - 1, max(2 * k, (m + 2 * k) // 2))
    if size > n_keep:
        sel = torch.cat([torch.arange(n_keep // 2), torch.arange(size - (n_keep - n_keep // 2), size)])
        Vs = torch.cat([V[:, :size] @ Y[:, sel], V[:, size:size + 1]], dim=1)
        Hs = torch.zeros(len(sel) + 1, len(sel), **f64)
        Hs[:len(sel)] = torch.diag(theta[sel])
        Hs[len(sel)] = H[size, :size] @ Y[:, sel]
        keep_state = KrylovState(Vs.cpu(), Hs.cpu(), anorm, spent0 + spent, eps)
    else:
        keep_state = KrylovState(V[:, :size + 1].cpu().clone(), H[:size + 1, :size].cpu().clone(), anorm,
                                 spent0 + spent, eps)
    return EigenResult(theta[lo], V[:, :size] @ Y[:, lo], theta[hi], V[:, :size] @ Y[:, hi], res[lo], res[hi],
                       keep_state, history, float(eps if eps is not None else torch.finfo(torch.float64).eps))


def residual_check(matvec: Callable[[torch.Tensor], torch.Tensor], vectors: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicitly, for each column ``v`` of ``vectors`` ``(n, k)``: the Rayleigh quotient
    ``lambda = v^T A v / v^T v`` and the residual ``||A v - lambda v|| / ||v||``. One product per
    column, independent of how the vectors were found. Float64 ``(k,)`` each."""
    lams, res = [], []
    for v in vectors.T.double():
        Av = matvec(v).double()
        vv = float(v @ v)
        lam = float(v @ Av) / vv
        lams.append(lam)
        res.append(float(torch.linalg.vector_norm(Av - lam * v)) / vv ** 0.5)
    return torch.tensor(lams, dtype=torch.float64), torch.tensor(res, dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# alpha
# --------------------------------------------------------------------------------------------

def alpha_report(alphas, eigenvalues_min, eigenvalues_max=None, residual_min: float = 0.0) -> list[dict]:
    """For an alpha grid of the bounded-MSE invariance: which alphas can grow a change.

    The invariance minimises ``d(f(x), f(x + v)) - alpha d(x, x + v)`` with ``d(a, b) =
    tanh(mean((a - b)^2))`` on normalized images. For a small ``v`` in the eigenbasis of ``J^T J``
    (``v = sum_i c_i u_i``) that is ``sum_i (lambda_i - alpha) c_i^2 / N``: x_inv moves away from x
    only along directions with ``lambda_i < alpha`` (lambda and alpha share one scale, with no 502 HU
    or N factor; ``tests/test_linearised.py`` checks it). What lambda does not say: away from ``v = 0``
    the tanh saturates (``sech^2`` of the MSE: 0.94 at 250 HU RMS, 0.42 at 502 HU RMS), so the
    effective alpha shrinks as x_inv grows; a ReLU network's Jacobian changes as x_inv moves; the HU
    range projection can stop a direction, never start one; DSSIM and VGG weigh pixels differently.

    Parameters
    ----------
    alphas : array_like
        The alpha grid (dimensionless).
    eigenvalues_min : array_like, shape (k,)
        The computed smallest eigenvalues (``[0]`` is an upper bound on ``lambda_min``).
    eigenvalues_max : array_like, shape (k,), optional
        The largest eigenvalues.
    residual_min : float
        The explicit residual of the smallest pair (same units).

    Returns
    -------
    list of dict
        Per alpha: ``worth_running`` (``alpha > lambda_min``: certain, lambda_min being the Rayleigh
        quotient of a direction along which the objective decreases), ``held`` (``alpha < lambda_min -
        residual_min``: no direction grows locally, if no smaller eigenvalue was missed),
        ``directions_below`` (computed eigenvalues below alpha; ``k`` means at least ``k``) and
        ``above_lambda_max`` (every direction grows).

    Raises
    ------
    LinearisedInputError
        ``eigenvalues_min`` empty or not finite.
    """
    lam = np.sort(np.asarray(eigenvalues_min, dtype=np.float64))
    if lam.size == 0 or not np.all(np.isfinite(lam)):
        raise LinearisedInputError("eigenvalues_min must be a non-empty array of finite eigenvalues")
    lam_max = None if eigenvalues_max is None else float(np.max(eigenvalues_max))
    rows = []
    for a in np.atleast_1d(np.asarray(alphas, dtype=np.float64)):
        rows.append({"alpha": float(a), "worth_running": bool(a > lam[0]),
                     "held": bool(a < lam[0] - residual_min),
                     "directions_below": int(np.sum(lam < a)),
                     "above_lambda_max": None if lam_max is None else bool(a > lam_max)})
    return rows


def smallest_useful_alpha(eigenvalues_min) -> float:
    """``lambda_min``: an alpha above it grows x_inv along at least one direction (bounded MSE)."""
    lam = np.asarray(eigenvalues_min, dtype=np.float64)
    if lam.size == 0 or not np.all(np.isfinite(lam)):
        raise LinearisedInputError("eigenvalues_min must be a non-empty array of finite eigenvalues")
    return float(lam.min())


def _status(k: int, which: str, converged: dict, below: dict, floor: float) -> str:
    """"converged", or what is missing: pairs below the floor and pairs not converged, per wanted end."""
    ends = {"both": ("min", "max"), "smallest": ("min",), "largest": ("max",)}[which]
    name = {"min": "smallest", "max": "largest"}
    missing = [end for end in ends if not np.all(converged[end])]
    if not missing:
        return "converged"
    below_txt = [f"{int(np.sum(below[end]))}/{k} {name[end]}" for end in missing if np.any(below[end])]
    open_txt = [f"{int(np.sum(~np.asarray(converged[end]) & ~np.asarray(below[end])))}/{k} {name[end]}"
                for end in missing if np.any(~np.asarray(converged[end]) & ~np.asarray(below[end]))]
    parts = []
    if open_txt:
        parts.append(f"not converged ({', '.join(open_txt)})")
    if below_txt:
        parts.append(f"below the solver's resolution (floor {floor:.2g}): {', '.join(below_txt)}")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# The synthesis object
# --------------------------------------------------------------------------------------------

def _check_input(image) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        image = torch.as_tensor(np.asarray(image))
    if image.ndim != 4 or tuple(image.shape[:2]) != (1, 1):
        raise LinearisedInputError(f"image must have shape (1, 1, H, W) (one normalized slice), got "
                                   f"{tuple(image.shape)}; use hu_to_norm(slice_hu)[None, None]")
    if not image.is_floating_point():
        image = image.float()
    if not torch.isfinite(image).all():
        raise LinearisedInputError("image contains NaN or inf values; check the input slice")
    return image


class LinearisedInvariance:
    """The ``k`` smallest and largest eigenpairs of ``J^T J`` of a denoiser at one image, certified
    (see :func:`certify` and :func:`linearised_spectrum`).

    ``image``: ``(1, 1, H, W)`` normalized. ``denoiser``: maps ``(B, 1, H, W)`` to the same shape; it
    is frozen (eval mode, no weight gradients) and converted to channels_last, as ``Invariance`` does.
    ``dtype``: ``torch.float32`` (default) or ``torch.float64`` (then give a float64 denoiser); it sets
    the products' precision and so the floor below which nothing is certified.

    ``LinearisedInvariance(x, denoiser, k=8).compute()`` fills ``eigenvalues_min`` ``(k,)`` ascending,
    ``eigenvectors_min`` ``(k, 1, H, W)`` (unit L2 norm), ``eigenvalues_max`` ``(k,)`` descending,
    ``eigenvectors_max``, ``residuals`` (``{"min": (k,), "max": (k,)}``, explicit
    ``||J^T J v - lambda v|| / ||v||``), ``converged``, ``null`` and ``below_floor`` (per end, ``(k,)``
    bool) and ``noise``, ``floor``. Calling ``compute`` again continues from the stored Krylov basis."""

    def __init__(self, image, denoiser: nn.Module, k: int = 8, seed: int = 0, device: str | None = None,
                 dtype: torch.dtype = torch.float32):
        image = _check_input(image)
        if dtype not in (torch.float32, torch.float64):
            raise LinearisedInputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        H, W = image.shape[-2:]
        self.n = int(H * W)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise LinearisedInputError(f"k must be a positive integer (eigenpairs per end), got {k!r}")
        max_k = (self.n - 2) // 4
        if k > max_k:
            raise LinearisedInputError(f"k={k} is too large for a {H}x{W} image ({self.n} pixels): at most "
                                       f"{max_k} (the Krylov basis needs room beyond 2k); use a smaller k or a "
                                       "larger patch")
        tune_allocator()
        self.k, self.seed, self.dtype = int(k), int(seed), dtype
        self.eps = float(torch.finfo(dtype).eps)
        self.device = device or module_device(denoiser)
        self.image = image.to(self.device, dtype)
        self.denoiser = channels_last(freeze(denoiser))
        with torch.no_grad():
            out = self.denoiser(self.image)
        if not isinstance(out, torch.Tensor) or out.shape != self.image.shape:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise LinearisedInputError(f"the denoiser maps {tuple(self.image.shape)} to {shape}; it must return "
                                       "the input's shape (B, 1, H, W)")
        if out.dtype != dtype:
            raise LinearisedInputError(f"the denoiser returns {out.dtype} for a {dtype} image; give a denoiser "
                                       f"of dtype {dtype} (e.g. a copy with .double()) or use dtype={out.dtype}")
        if not torch.isfinite(out).all():
            raise LinearisedInputError("f(x) contains NaN or inf; check the denoiser and the image")
        self.target = out  # f(x)
        self._vjp_fn = None
        self._state: KrylovState | None = None
        self.tol, self.which = DEFAULT_TOL, "both"
        self.basis_size: int | None = None
        self.history: list[dict] = []
        self.seconds = 0.0
        self.matvecs = 0  # products spent by the iteration (the residual checks come on top: 2k per check)
        self.lambda_max_estimate = 0.0
        self.eigenvalues_min = self.eigenvalues_max = None
        self.eigenvectors_min = self.eigenvectors_max = None
        self.residuals: dict[str, torch.Tensor] = {}
        self._certify_all()

    # -- the operator ------------------------------------------------------------------------
    def _f(self, z: torch.Tensor) -> torch.Tensor:
        return self.denoiser(z)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``J^T J v`` for a flat ``v`` ``(H*W,)`` (any float dtype): one jvp and one vjp, J never formed.
        Returns ``(H*W,)`` in the run's dtype."""
        if self._vjp_fn is None:
            _, self._vjp_fn = torch.func.vjp(self._f, self.image)
        t = v.to(self.device, self.dtype).reshape(self.image.shape)
        _, jv = torch.func.jvp(self._f, (self.image,), (t,))
        jtjv, = self._vjp_fn(jv)
        return jtjv.detach().reshape(-1)

    # -- computing ---------------------------------------------------------------------------
    def compute(self, max_matvecs: int = DEFAULT_MAX_MATVECS, tol: float = DEFAULT_TOL,
                basis_size: int | None = None, progress: bool = True, which: str = "both",
                max_seconds: float | None = None, _stacklevel: int = 2) -> "LinearisedInvariance":
        """Run (or continue) the iteration for up to ``max_matvecs`` more ``J^T J v`` products (and at
        most ``max_seconds`` of wall-clock time, if given), then check every returned pair with one
        explicit product each and certify it (:func:`certify`, relative ``tol``). Where the check does
        not confirm what the Lanczos estimate promised and budget is left, the iteration continues with
        a four times stricter estimate (at most twice). ``which``: the end(s) that must converge
        (``"both"``, ``"smallest"``, ``"largest"``); both ends are returned. Warns when a pair of a wanted
        end is not certified."""
        if which not in WHICH:
            raise LinearisedInputError(f"which must be one of {WHICH}, got {which!r}")
        if isinstance(max_matvecs, bool) or not isinstance(max_matvecs, (int, np.integer)) or max_matvecs < 2 * self.k:
            raise LinearisedInputError(f"max_matvecs must be an integer >= 2k = {2 * self.k}, got {max_matvecs!r}")
        if not np.isfinite(tol) or not 0 < tol < 1:
            raise LinearisedInputError(f"tol is a relative residual and must lie in (0, 1), got {tol}")
        if self._state is not None and basis_size is not None and basis_size != self.basis_size:
            raise LinearisedInputError(f"this run continues a Krylov basis of size {self.basis_size}; "
                                       "leave basis_size out (or start a new LinearisedInvariance)")
        self.tol, self.which = float(tol), which
        self.basis_size = basis_size if self._state is None else self.basis_size
        t0 = time.perf_counter()
        name = getattr(self.denoiser, "display_name", type(self.denoiser).__name__)
        H, W = self.image.shape[-2:]
        bar = progress_bar(total=max_matvecs, desc=f"J^T J eigenpairs {name} {H}x{W} k={self.k}",
                           disable=not progress)

        def on_restart(row):
            bar.set_postfix({"λmin": f"{row['lambda_min']:.3g}", "λmax": f"{row['lambda_max']:.3g}",
                             "conv": f"{row['converged_min']}+{row['converged_max']}/{2 * self.k}",
                             "<floor": row["below_floor_min"]}, refresh=False)

        left, solver_tol = int(max_matvecs), self.tol
        try:
            for _ in range(3):
                before = self._state.matvecs if self._state is not None else 0
                seconds = None if max_seconds is None else max(max_seconds - (time.perf_counter() - t0), 1e-9)
                res = extreme_eigenpairs(self.matvec, self.n, self.k, tol=solver_tol, max_matvecs=left,
                                         basis_size=self.basis_size, seed=self.seed, state=self._state,
                                         device=self.device, on_matvec=lambda: bar.update(1),
                                         on_restart=on_restart, which=which, max_seconds=seconds, eps=self.eps)
                self._state = res.state
                self.matvecs = res.state.matvecs
                self.history.extend(res.history)
                self._set_result(res)
                spent = res.state.matvecs - before
                left -= spent
                timed_out = max_seconds is not None and time.perf_counter() - t0 >= max_seconds
                if self._done() or left < 1 or spent == 0 and solver_tol < self.tol or timed_out:
                    break
                solver_tol /= 4  # the estimate passed, the explicit check did not: ask the recurrence for more
        except BaseException:
            bar.close()  # an error keeps the count where it stopped
            raise
        # the loop ended because its work was done or could go no further: the bar ends, with why
        finish(bar, "converged" if self._done() else "stopped: not every pair certified")
        self.seconds += time.perf_counter() - t0
        if not self._done():
            warnings.warn(f"LinearisedInvariance after {self.matvecs} products: {self.status()} (residual + "
                          f"{self.noise:.2g} must reach tol * lambda, tol = {self.tol:g}, or a null pair's residual "
                          f"{self.noise:.2g}); call compute() again to continue or raise max_matvecs (max_iter of "
                          "linearised_spectrum); below the floor only float64 products (dtype=torch.float64 and a "
                          "float64 denoiser) resolve more", stacklevel=_stacklevel)
        return self

    def _set_result(self, res: EigenResult) -> None:
        H, W = self.image.shape[-2:]
        out = {}
        for end, vecs in (("min", res.vectors_min), ("max", res.vectors_max)):
            vecs = vecs / torch.linalg.vector_norm(vecs, dim=0, keepdim=True)
            # a fixed sign: the largest-magnitude pixel is positive
            idx = vecs.abs().argmax(dim=0)
            vecs = vecs * torch.sign(vecs[idx, torch.arange(vecs.shape[1])])
            lam, r = residual_check(self.matvec, vecs)
            order = torch.argsort(lam, descending=end == "max")
            out[end] = (lam[order], vecs[:, order].T.reshape(self.k, 1, H, W).to("cpu", self.dtype), r[order])
        self.lambda_max_estimate = max(float(out["max"][0][0]), float(res.values_max[0]), 0.0)
        self.eigenvalues_min, self.eigenvectors_min, r_min = out["min"]
        self.eigenvalues_max, self.eigenvectors_max, r_max = out["max"]
        self.residuals = {"min": r_min, "max": r_max}
        self._certify_all()

    def _certify_all(self) -> None:
        """Certificates of both ends from the stored eigenvalues and explicit residuals."""
        self.certificates: dict[str, Certificate] = {}
        if self.eigenvalues_min is None:
            self.converged, self.null, self.below_floor = {}, {}, {}
            self.noise = self.floor = float("nan")
            return
        for end, lam in (("min", self.eigenvalues_min), ("max", self.eigenvalues_max)):
            self.certificates[end] = certify(lam.numpy(), self.residuals[end].numpy(), self.lambda_max_estimate,
                                             self.eps, self.tol)
        self.converged = {end: torch.from_numpy(c.converged) for end, c in self.certificates.items()}
        self.null = {end: torch.from_numpy(c.null) for end, c in self.certificates.items()}
        self.below_floor = {end: torch.from_numpy(c.below_floor) for end, c in self.certificates.items()}
        self.noise, self.floor = self.certificates["min"].noise, self.certificates["min"].floor

    def _wanted(self) -> tuple[str, ...]:
        return {"both": ("min", "max"), "smallest": ("min",), "largest": ("max",)}[self.which]

    def _done(self) -> bool:
        return all(bool(self.converged[end].all()) for end in self._wanted())

    def status(self) -> str:
        """"converged", or which pairs are below the floor and which are not converged."""
        self._require_result()
        return _status(self.k, self.which, {e: c.numpy() for e, c in self.converged.items()},
                       {e: b.numpy() for e, b in self.below_floor.items()}, self.floor)

    def _require_result(self) -> None:
        if self.eigenvalues_min is None:
            raise CTInvError("no eigenpairs yet: call compute() first")

    # -- reading -----------------------------------------------------------------------------
    @property
    def smallest_useful_alpha(self) -> float:
        """``lambda_min``: the smallest alpha of a bounded-MSE invariance that grows anything locally."""
        self._require_result()
        return smallest_useful_alpha(self.eigenvalues_min.numpy())

    def alpha_report(self, alphas) -> list[dict]:
        """:func:`alpha_report` for this image: per alpha, whether it is worth running."""
        self._require_result()
        return alpha_report(alphas, self.eigenvalues_min.numpy(), self.eigenvalues_max.numpy(),
                            float(self.residuals["min"][0]))

    def summary(self) -> dict:
        """Eigenvalues (dimensionless squared gains), explicit residuals, the residual each pair had to
        reach, the certificate per pair, the products' rounding (``noise``) and ``floor``, products
        spent and time."""
        self._require_result()
        H, W = self.image.shape[-2:]
        return {"shape": (int(H), int(W)), "k": self.k, "lambda_min": float(self.eigenvalues_min[0]),
                "lambda_max": float(self.eigenvalues_max[0]),
                "eigenvalues_min": self.eigenvalues_min.tolist(), "eigenvalues_max": self.eigenvalues_max.tolist(),
                "residuals_min": self.residuals["min"].tolist(), "residuals_max": self.residuals["max"].tolist(),
                "residual_thresholds_min": self.certificates["min"].thresholds.tolist(),
                "residual_thresholds_max": self.certificates["max"].thresholds.tolist(),
                "tol": self.tol, "noise": self.noise, "floor": self.floor,
                "precision": str(self.dtype).removeprefix("torch."),
                "converged_min": int(self.converged["min"].sum()), "converged_max": int(self.converged["max"].sum()),
                "null_min": int(self.null["min"].sum()), "below_floor_min": int(self.below_floor["min"].sum()),
                "which": self.which, "converged": self._done(), "status": self.status(),
                "matvecs": self.matvecs, "seconds": self.seconds,
                "smallest_useful_alpha": self.smallest_useful_alpha}

    def result(self) -> "LinearisedSpectrum":
        """The computed eigenpairs as a :class:`LinearisedSpectrum` (numpy, no denoiser): what a notebook
        stores with ``Artifacts.write_arrays("linearised", r.arrays(), r.meta(), ...)``."""
        self._require_result()
        hist = np.asarray([[r["matvecs"], r["lambda_min"], r["lambda_max"]] for r in self.history],
                          dtype=np.float64).reshape(-1, 3)

        def hu(t):
            return norm_to_hu(t.detach().cpu().double().numpy()).astype(np.float32)

        c_min, c_max = self.certificates["min"], self.certificates["max"]
        return LinearisedSpectrum(
            smallest=self.eigenvalues_min.numpy().astype(np.float64),
            largest=self.eigenvalues_max.numpy().astype(np.float64),
            vectors_smallest=self.eigenvectors_min.numpy().astype(np.float32),
            vectors_largest=self.eigenvectors_max.numpy().astype(np.float32),
            residuals_smallest=self.residuals["min"].numpy().astype(np.float64),
            residuals_largest=self.residuals["max"].numpy().astype(np.float64),
            converged_smallest=c_min.converged.copy(), converged_largest=c_max.converged.copy(),
            null_smallest=c_min.null.copy(), null_largest=c_max.null.copy(),
            below_floor_smallest=c_min.below_floor.copy(), below_floor_largest=c_max.below_floor.copy(),
            iterations=int(self.matvecs), seconds=float(self.seconds), tol=float(self.tol), which=self.which,
            lambda_max_estimate=float(self.lambda_max_estimate), noise=float(self.noise), floor=float(self.floor),
            precision=str(self.dtype).removeprefix("torch."), history=hist,
            x_hu=hu(self.image[0, 0]), f_x_hu=hu(self.target[0, 0]))

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the eigenpairs, the Krylov state (to continue) and the history, atomically, as a
        weights-only torch file. Load with :meth:`load`; the certificates are recomputed from the stored
        eigenvalues and residuals."""
        self._require_result()
        state = {"class": type(self).__name__, "image": self.image.cpu(), "target": self.target.cpu(),
                 "k": self.k, "seed": self.seed, "dtype": str(self.dtype).removeprefix("torch."), "tol": self.tol,
                 "which": self.which, "basis_size": self.basis_size, "matvecs": self.matvecs, "seconds": self.seconds,
                 "history": self.history, "lambda_max_estimate": self.lambda_max_estimate,
                 "eigenvalues_min": self.eigenvalues_min, "eigenvalues_max": self.eigenvalues_max,
                 "eigenvectors_min": self.eigenvectors_min, "eigenvectors_max": self.eigenvectors_max,
                 "residuals": self.residuals, "krylov": self._state.to_dict(), "versions": versions()}
        return atomic.torch_save(path, state)

    @classmethod
    def load(cls, path: str | Path, denoiser: nn.Module, device: str | None = None) -> "LinearisedInvariance":
        """Restore a saved computation; ``denoiser`` must reproduce the stored f(x)."""
        st = Synthesis._read(path, cls.__name__)
        dtype = {"float32": torch.float32, "float64": torch.float64}[st["dtype"]]
        obj = cls(st["image"], denoiser, st["k"], st["seed"], device, dtype)
        Synthesis._check_same_output(st["target"].float(), obj.target.float(), path)
        obj.tol, obj.basis_size, obj.matvecs = float(st["tol"]), st["basis_size"], int(st["matvecs"])
        obj.which = st.get("which", "both")
        obj.seconds, obj.history = float(st["seconds"]), list(st["history"])
        obj.lambda_max_estimate = float(st["lambda_max_estimate"])
        for name in ("eigenvalues_min", "eigenvalues_max", "eigenvectors_min", "eigenvectors_max", "residuals"):
            setattr(obj, name, st[name])
        obj._state = KrylovState.from_dict(st["krylov"])
        obj._certify_all()
        return obj


def useful_alphas(alphas: Sequence[float], eigenvalues_min) -> list[float]:
    """The alphas of a grid above ``lambda_min`` (worth running; see :func:`alpha_report`)."""
    lam = smallest_useful_alpha(eigenvalues_min)
    return [float(a) for a in alphas if float(a) > lam]


# --------------------------------------------------------------------------------------------
# The result, as arrays (what notebooks store and figures draw)
# --------------------------------------------------------------------------------------------

_ARRAY_KEYS = ("smallest", "largest", "vectors_smallest", "vectors_largest", "residuals_smallest",
               "residuals_largest", "converged_smallest", "converged_largest", "null_smallest", "null_largest",
               "below_floor_smallest", "below_floor_largest", "history", "x_hu", "f_x_hu")
_BOOL_KEYS = ("converged_smallest", "converged_largest", "null_smallest", "null_largest", "below_floor_smallest",
              "below_floor_largest")
_SCALAR_KEYS = {"iterations": int, "seconds": float, "tol": float, "which": str, "lambda_max_estimate": float,
                "noise": float, "floor": float, "precision": str, "ignored_max": float}

UNITS = ("eigenvalues of J^T J with f in network units (normalized, 1 unit = 502.185 HU in and out): a "
         "dimensionless squared gain, ||f(x + e v) - f(x)||^2 / ||e v||^2 for small e, the same in HU; "
         "comparable with alpha of the bounded MSE for small changes (see ctinv_utils.synthesis.linearised)")

CERTIFICATION = ("a pair is certified when its explicit residual plus the products' rounding (noise) is at most "
                 "tol * lambda, or, as a null direction, when |lambda| and the residual are both at most the "
                 "noise; below the floor 2 * noise / tol nothing is certified and only the upper bound "
                 "lambda_i <= lambda + noise is known")


@dataclass
class LinearisedSpectrum:
    """The ``k`` smallest and largest eigenpairs of ``J^T J`` at one image, as numpy arrays.

    ``smallest`` ``(k,)`` ascending, ``largest`` ``(k,)`` descending: eigenvalues (dimensionless squared
    gains, see :data:`UNITS`; each the Rayleigh quotient of its vector, so ``smallest[i] + noise`` is an
    upper bound on the true i-th smallest eigenvalue, certified or not). ``vectors_*`` ``(k, 1, H, W)``
    float32 unit-L2 directions (no units; a change of RMS ``c`` HU along ``v`` is ``c * sqrt(H W) * v``
    HU). ``residuals_*`` ``(k,)``: the explicit ``||J^T J v - lambda v||`` (lambda's units).
    ``converged_*`` ``(k,)``: certified (:data:`CERTIFICATION`); ``null_*``: certified as zero to the
    products' precision; ``below_floor_*``: not certified and below ``floor``. ``noise``: the rounding
    of one product (``NOISE_FACTOR * eps * lambda_max``); ``floor``: ``2 * noise / tol``; ``precision``:
    the products' dtype. ``iterations``: ``J^T J v`` products spent by the iteration (one jvp + one vjp
    each; the residual checks add ``2k`` each). ``seconds``: wall-clock time. ``history`` ``(R, 3)``:
    (products, smallest Ritz value, largest) per restart. ``x_hu``, ``f_x_hu`` ``(H, W)``: the image and
    its denoised output in HU. ``ignored_max``: the squared gain up to which a certified direction
    counts as ignored.

    ``arrays()`` / ``meta()`` are what ``Artifacts.write_arrays("linearised", ...)`` stores;
    ``LinearisedSpectrum.from_arrays(art.read_arrays("linearised", denoiser=name))`` rebuilds it."""

    smallest: np.ndarray
    largest: np.ndarray
    vectors_smallest: np.ndarray
    vectors_largest: np.ndarray
    residuals_smallest: np.ndarray
    residuals_largest: np.ndarray
    converged_smallest: np.ndarray
    converged_largest: np.ndarray
    null_smallest: np.ndarray
    null_largest: np.ndarray
    below_floor_smallest: np.ndarray
    below_floor_largest: np.ndarray
    iterations: int
    seconds: float
    tol: float
    which: str
    lambda_max_estimate: float
    noise: float
    floor: float
    precision: str
    history: np.ndarray
    x_hu: np.ndarray
    f_x_hu: np.ndarray
    ignored_max: float = IGNORED_MAX_EIGENVALUE

    @property
    def k(self) -> int:
        return int(len(self.smallest))

    @property
    def converged(self) -> bool:
        """Every pair of the wanted end(s) certified (pairs below the floor are not)."""
        ends = {"both": (self.converged_smallest, self.converged_largest), "smallest": (self.converged_smallest,),
                "largest": (self.converged_largest,)}[self.which]
        return all(bool(np.all(c)) for c in ends)

    @property
    def status(self) -> str:
        return _status(self.k, self.which, {"min": self.converged_smallest, "max": self.converged_largest},
                       {"min": self.below_floor_smallest, "max": self.below_floor_largest}, self.floor)

    @property
    def ignored(self) -> np.ndarray:
        """Indices into ``smallest`` of the certified directions the denoiser ignores: squared gain at
        most ``ignored_max`` (:data:`IGNORED_MAX_EIGENVALUE`). The only vectors a figure shows as ignored."""
        return np.flatnonzero(np.asarray(self.converged_smallest, bool) & (self.smallest <= self.ignored_max))

    @property
    def below_floor_bound(self) -> float | None:
        """``floor + noise`` when some smallest pairs are below the floor: at least that many eigenvalues
        lie below it (Ritz values bound eigenvalues from above). None otherwise."""
        return float(self.floor + self.noise) if np.any(self.below_floor_smallest) else None

    @property
    def lambda_min(self) -> float:
        """The smallest computed eigenvalue: ``lambda_min + noise`` bounds the true one from above."""
        return float(self.smallest[0])

    @property
    def lambda_max(self) -> float:
        return float(self.largest[0])

    @property
    def smallest_useful_alpha(self) -> float:
        """``lambda_min``: a bounded-MSE alpha above it grows x_inv along at least one direction."""
        return smallest_useful_alpha(self.smallest)

    def alpha_report(self, alphas) -> list[dict]:
        """:func:`alpha_report` for this image: per alpha, whether it is worth running."""
        return alpha_report(alphas, self.smallest, self.largest, float(self.residuals_smallest[0]))

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything as numpy arrays (scalars as 0-d arrays; no pickles), for ``Artifacts.write_arrays``."""
        out = {key: np.asarray(getattr(self, key)) for key in _ARRAY_KEYS}
        out.update({key: np.asarray(typ(getattr(self, key))) for key, typ in _SCALAR_KEYS.items()})
        return out

    def meta(self) -> dict:
        """JSON-ready facts for a caption or a summary table (the sidecar's ``meta``)."""
        return {"k": self.k, "shape": list(self.x_hu.shape), "which": self.which, "tol": self.tol,
                "noise": self.noise, "floor": self.floor, "precision": self.precision,
                "converged": self.converged, "status": self.status,
                "ignored": len(self.ignored), "ignored_max": self.ignored_max,
                "below_floor_smallest": int(np.sum(self.below_floor_smallest)),
                "null_smallest": int(np.sum(self.null_smallest)),
                "iterations": self.iterations, "seconds": round(self.seconds, 2),
                "lambda_min": self.lambda_min, "lambda_max": self.lambda_max,
                "eigenvalues_smallest": self.smallest.tolist(), "eigenvalues_largest": self.largest.tolist(),
                "residuals_smallest": self.residuals_smallest.tolist(),
                "residuals_largest": self.residuals_largest.tolist(),
                "method": "thick-restart Lanczos (Krylov-Schur) on J^T J via torch.func jvp/vjp",
                "certification": CERTIFICATION, "units": UNITS}

    @classmethod
    def from_arrays(cls, arrays) -> "LinearisedSpectrum":
        """Rebuild from :meth:`arrays` (a dict, an ``np.load`` result, or an ``ArrayArtifact``)."""
        arrays = getattr(arrays, "arrays", arrays)
        missing = [key for key in (*_ARRAY_KEYS, *_SCALAR_KEYS) if key not in arrays]
        if missing:
            raise LinearisedInputError(f"these arrays are not a LinearisedSpectrum: missing {missing}; write them "
                                       "with LinearisedSpectrum.arrays() (rerun notebook 03's linearised cell)")
        fields = {key: np.asarray(arrays[key]) for key in _ARRAY_KEYS}
        for key in _BOOL_KEYS:
            fields[key] = fields[key].astype(bool)
        fields.update({key: typ(np.asarray(arrays[key])[()]) for key, typ in _SCALAR_KEYS.items()})
        return cls(**fields)


def linearised_spectrum(denoiser: nn.Module, x_norm, k: int = 4, which: str = "both", tol: float = DEFAULT_TOL,
                        max_iter: int = 400, max_seconds: float | None = None,
                        progress: bool = True, seed: int = 0, device: str | None = None,
                        dtype: torch.dtype = torch.float32, basis_size: int | None = None) -> LinearisedSpectrum:
    """The ``k`` smallest (ignored to first order) and largest eigenpairs of ``J^T J`` at ``x_norm``.

    Parameters
    ----------
    denoiser : torch.nn.Module
        Maps ``(B, 1, H, W)`` normalized images to the same shape; frozen here.
    x_norm : torch.Tensor or array_like, shape (1, 1, H, W)
        The image, in normalized units.
    k : int
        Eigenpairs per end (at most ``(H W - 2) / 4``).
    which : {"both", "smallest", "largest"}
        The end(s) that must be certified to stop early; both are returned.
    tol : float
        Relative residual in (0, 1) a pair must reach to be certified (:func:`certify`); below the
        floor ``2 * noise / tol`` a pair is reported "below the solver's resolution".
    max_iter : int
        Budget in ``J^T J v`` products (>= ``2k``; the explicit checks add ``2k``).
    max_seconds : float, optional
        Also stop after this much wall-clock time (the result then depends on the machine).
    progress : bool
        Show a progress bar.
    seed : int
        Seeds the start vector and restarts (own generator).
    device : str, optional
        Default: the denoiser's device.
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float64`` (with ``copy.deepcopy(f).double()``): sets the floor.
    basis_size : int, optional
        The largest Krylov basis (memory ``H W * basis_size`` float64).

    Returns
    -------
    LinearisedSpectrum
        Eigenvalues (squared gains), unit vectors ``(k, 1, H, W)``, certificates, ``status``, ``ignored``.

    Raises
    ------
    LinearisedInputError, LinearisationDiverged
        Bad shape, k, budget, tol, which or dtype, or a non-finite image; a NaN or inf product.

    Examples
    --------
    >>> import torch
    >>> from ctinv_utils import GaussRI, hu_to_norm, linearised_spectrum
    >>> spec = linearised_spectrum(GaussRI(), hu_to_norm(torch.zeros(1, 1, 40, 40)), k=2, progress=False)
    >>> print(spec.status)   # Gauss+RI's null space lies below what float32 products resolve
    below the solver's resolution (floor 0.00096): 2/2 smallest
    """
    lin = LinearisedInvariance(x_norm, denoiser, k=k, seed=seed, device=device, dtype=dtype)
    lin.compute(max_matvecs=max_iter, tol=tol, basis_size=basis_size, progress=progress, which=which,
                max_seconds=max_seconds, _stacklevel=3)
    return lin.result()
