"""Linearised invariances: the directions a denoiser ignores locally at an image.

Near an image ``x`` a denoiser is ``f(x + v) ~ f(x) + J v`` with the Jacobian ``J = df/dx``
(``N x N`` for an image of ``N = H * W`` pixels). The input changes it ignores are the right singular
vectors of ``J`` with the smallest singular values, i.e. the eigenvectors of ``A = J^T J`` with the
smallest eigenvalues; the largest ones are the changes it amplifies most. ``f`` maps normalized units
to normalized units, so an eigenvalue ``lambda`` is a dimensionless *squared gain*: a change ``v``
along its eigenvector changes the output by ``sqrt(lambda) * ||v||`` (in HU as in normalized units,
the 502.185 HU scale cancels). Eigenvectors are *directions* (unit L2 norm, no units).

**Matrix-free.** ``A v = J^T (J v)`` is one forward-mode product (``torch.func.jvp``) followed by one
reverse-mode product (``torch.func.vjp``, its closure built once at ``x``); ``J`` is never formed.
Memory is the Krylov basis (``N x m`` float64, ``m`` = ``basis_size``, by default ``max(8k, 4k + 32)``:
48 for k = 4, i.e. 6 MiB at 128 x 128 and 100 MiB at 512 x 512) plus one forward graph of the denoiser:
O(k * pixels).

**Method.** Krylov-Schur, i.e. thick-restart Lanczos (Stewart 2001; Wu & Simon 2000) on ``A``, with
full reorthogonalisation (classical Gram-Schmidt applied twice) and both ends of the spectrum from one
Krylov space. The basis grows to ``m`` vectors; the projected matrix is diagonalised; the ``k``
smallest and ``k`` largest Ritz pairs (plus a margin) are kept and the basis grows again. A breakdown
(the basis spans an invariant subspace: exact multiplicities, as in the projection of an ideal
low-pass filter or the null space of a zeroed square) continues with a fresh random direction, so
repeated eigenvalues are found, which plain Lanczos cannot do.

**Stop criterion: relative.** A Ritz pair counts as converged when its residual
``||A v - lambda v||`` (``||v|| = 1``) is at most ``tol * lambda_max`` (the largest Ritz value, an
estimate of ``||A||``). The residual bounds the error directly: a symmetric ``A`` has an eigenvalue
within ``||r||`` of ``lambda``, and the Rayleigh quotient of the returned smallest vector is always an
upper bound on the true ``lambda_min``. After the iteration every returned pair is checked by one more
explicit ``A v`` (not the Lanczos recurrence): ``residuals`` and ``converged`` report that check, so a
run stopped by its budget says "not converged" instead of returning a number that looks final.
The ``float32`` operator has a noise floor near ``1e-6 * lambda_max``; ``tol`` (default ``1e-4``) sits
above it, ``dtype=torch.float64`` (with a float64 denoiser) goes lower.

**Compared with plenoptic 2.1 ``Eigendistortion``** (read from its source, version 2.1.1):
``method="power"`` runs orthogonal (power) iteration on ``A`` and on ``A - lambda_max I`` and stops
when the eigenvalue estimates change by less than an *absolute* ``1e-7`` between two steps. For the
smallest eigenvalues that iteration converges at the rate ``1 - gap / lambda_max``: the estimates then
change by little per step precisely because they are far from converged, so the run stops early with
a wrong smallest eigenvector (seen on a random-init CNN-10 at 64 x 64). Here the criterion is the
residual itself, relative to ``lambda_max``, and Lanczos needs about the square root of the power
method's number of products for the same gap. ``method="exact"`` builds the full Jacobian with one
``create_graph=True`` backward pass per output pixel (each keeping its graph) and ``eigh`` of the
dense ``N x N`` ``J^T J``: 7 GB and 236 s at 64 x 64 (N = 4096), growing as ``N^2`` in memory
(about 16x, i.e. > 100 GB, at 128 x 128). Here memory grows as ``N * m``.

**Measured here** (2-core AMD EPYC, torch CPU, one thread, the cores shared with other jobs at load
1-6; 128 x 128, k = 4, ``which="both"``; peak RSS of the whole process about 380-480 MB, of which
about 130 MB appear during the computation; a dense ``J^T J`` would be 2 GiB in float64):
* random-init CNN-10 (``torch.manual_seed(0)``, a random image): 0.074 s per ``J^T J v`` at load 1,
  0.13-0.19 s under load. The 4 largest converge within about 110 products; the smallest do not form a
  gap (lambda_min keeps falling: <= 2.6e-7 after 300 products, <= 2.7e-8 after 1097), so at
  ``tol=1e-4`` 3 of 4 converged after 1097 products (150 s); a 300-product run at load 1 (21 s) passed
  ``1e-3 * lambda_max`` for all 4 smallest at about 250 products; under load the 35 s cap of the
  quick-preset call stopped it at 181 products, 2 of 4 smallest converged (status says so).
* quick-preset trained denoisers on the quick analysis slice, ``tol=1e-3, max_iter=400,
  max_seconds=35``: CNN-10 converged in 228 products (23 s, lambda_min 2.0e-5, lambda_max 2.23);
  Gauss+RI converged in 228 products (3.7 s); WGAN-VGG (8 conv layers, ~2.6x CNN-10's cost) was
  stopped by the cap after 142 products (38 s in all), 2 of 4 smallest converged.

**Which alphas are worth running (units checked).** The image-domain invariance
(``invariances.Invariance`` with the bounded MSE of ``distances.py``) minimises
``d(f(x), f(x + v)) - alpha d(x, x + v)`` with ``d(a, b) = tanh(mean((a - b)^2))`` on *normalized*
images, and ``f`` here is the same network on the same normalized images: so ``lambda`` and ``alpha``
are on one scale, with no 502 HU or N factor between them. For a small ``v``: ``d(x, x + v) ~ v^T v / N``
and ``d(f(x), f(x + v)) ~ ||J v||^2 / N = v^T A v / N``, so in the eigenbasis of ``A``
(``v = sum_i c_i u_i``) the objective is ``sum_i (lambda_i - alpha) c_i^2 / N``: it decreases, and x_inv
moves away from x, only along directions with ``lambda_i < alpha`` (whatever the optimiser: with every
``lambda_i > alpha`` the quadratic has its minimum at ``v = 0``). ``tests/test_linearised.py`` checks
that ``bounded_mse(f(x + e u), f(x)) / bounded_mse(x + e u, x)`` equals the reported ``lambda`` for the
project's own ``bounded_mse``. So ``lambda_min`` is the smallest alpha worth running (:func:`alpha_report`):
with ``alpha < lambda_min`` the 0.1-unit (50 HU RMS) start noise only shrinks back to x.

Where the linear picture stops (be honest about what lambda_min does *not* say):
* tanh saturation. Away from ``v = 0`` the gradient of ``d`` carries ``sech^2`` of each MSE, so a
  direction keeps growing only while ``lambda * sech^2(MSE_out) < alpha * sech^2(MSE_in)``. With
  ``MSE_in`` in normalized units squared, ``sech^2`` is 0.9999 at the 50 HU start noise, 0.94 at
  250 HU RMS, 0.42 at 502 HU RMS and 0.0013 at 1004 HU RMS: the effective alpha shrinks as x_inv
  moves, which is why bounded MSE saturates near 500 HU RMS. ``alpha > lambda_min`` says a change
  *starts* to grow, not how large it gets.
* The Jacobian is taken at x. A ReLU network's Jacobian changes as x_inv moves (ReLUs flip), so a
  larger change can still be found with ``alpha < lambda_min`` (beyond the linear regime).
* ``hu_range`` (the default projection onto -1024..3071 HU) can stop a growing direction, never start
  one; the spectrum ignores it.
* It holds for the (bounded) MSE only; DSSIM and VGG weigh pixels differently.
With ``alpha > lambda_max`` no direction is held locally: the output term restrains nothing.

**Defaults for notebooks.** :func:`linearised_spectrum` defaults to ``k=4``, ``tol=1e-3`` and
``max_iter=400``: a residual ``<= 1e-3 * lambda_max`` (about 2e-3 for the trained quick denoisers,
whose ``lambda_max`` is 1-2.3) resolves eigenvalues far below the smallest alpha of the grids (0.005,
0.01). ``max_seconds`` adds a wall-clock cap (the quick preset: 35 s, so that one denoiser costs at
most ~40 s with the final residual check); a run it stops says "not converged" and its
``smallest[0]`` is still an upper bound on ``lambda_min``.
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
from ..progress import progress_bar
from ..provenance import versions
from ..speed import channels_last, tune_allocator
from ..units import norm_to_hu
from .base import Synthesis

DEFAULT_TOL = 1e-4
DEFAULT_MAX_MATVECS = 3000
WHICH = ("both", "smallest", "largest")


class LinearisedInputError(CTInvError, ValueError):
    """Bad input to a linearised-invariance computation (shape, k, budget, non-finite values)."""


class LinearisationDiverged(CTInvError):
    """The Jacobian product returned NaN or inf."""


# --------------------------------------------------------------------------------------------
# The eigensolver: Krylov-Schur (thick-restart Lanczos) for both ends of a symmetric operator
# --------------------------------------------------------------------------------------------

@dataclass
class KrylovState:
    """A Krylov-Schur relation ``A V[:, :p] = V[:, :p+1] H`` to resume from: ``V`` ``(n, p + 1)``
    orthonormal float64, ``H`` ``(p + 1, p)`` (diagonal Ritz values over the residual row), ``anorm``
    the largest ``||A v||`` seen (a lower bound on ``||A||``) and the products spent so far."""

    V: torch.Tensor
    H: torch.Tensor
    anorm: float
    matvecs: int

    def to_dict(self) -> dict:
        return {"V": self.V.cpu(), "H": self.H.cpu(), "anorm": float(self.anorm), "matvecs": int(self.matvecs)}

    @classmethod
    def from_dict(cls, d: dict) -> "KrylovState":
        return cls(d["V"].double(), d["H"].double(), float(d["anorm"]), int(d["matvecs"]))


@dataclass
class EigenResult:
    """``values_min`` ascending and ``values_max`` descending ``(k,)``; ``vectors_*`` ``(n, k)`` unit
    columns; ``ritz_residuals_*`` the Lanczos estimates of ``||A v - lambda v||``; ``state`` to resume;
    ``history`` one row per restart. All float64 tensors."""

    values_min: torch.Tensor
    vectors_min: torch.Tensor
    values_max: torch.Tensor
    vectors_max: torch.Tensor
    ritz_residuals_min: torch.Tensor
    ritz_residuals_max: torch.Tensor
    state: KrylovState
    history: list[dict] = field(default_factory=list)


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
                       max_seconds: float | None = None) -> EigenResult:
    """The ``k`` smallest and ``k`` largest eigenpairs of a symmetric positive semi-definite operator.

    ``matvec``: ``(n,)`` float64 tensor -> ``(n,)`` ``A v`` (any float dtype, same device). Stops when
    the Lanczos residual estimate of all ``2k`` wanted Ritz pairs is at most ``tol * lambda_max``
    (relative), or after ``max_matvecs`` more products (then the pairs are returned unconverged; check
    them with :func:`residual_check`). ``basis_size``: the largest Krylov basis (default
    ``max(8k, 4k + 32)``, at most ``n - 1``). ``state``: continue a previous run (its ``result.state``).
    The basis lives on ``device`` in float64. ``which``: ``"both"``, ``"smallest"`` or ``"largest"``,
    the end(s) whose convergence stops the iteration (both ends are always returned, from the same
    Krylov space; the other end is then an estimate). ``max_seconds``: also stop once this much time
    has passed (checked before each product; a wall-clock budget, so the result depends on the machine).
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
    # relative to anorm: the basis spans an invariant subspace (up to rounding); dropping a residual this
    # small changes no Ritz residual by more than tol / 100
    breakdown = 1e-2 * tol
    history: list[dict] = []
    size = p
    while True:
        if size >= 2 * k:  # Ritz step on the current basis (also on a resumed state: maybe done already)
            S = H[:size, :size]
            theta, Y = torch.linalg.eigh(0.5 * (S + S.T))  # ascending
            res = (H[size, :size] @ Y).abs()
            scale = max(float(theta.abs().max()), anorm, 1e-300)
            lo, hi = torch.arange(k), torch.arange(size - 1, size - 1 - k, -1)
            conv = res <= tol * scale
            row = {"matvecs": spent0 + spent, "lambda_min": float(theta[0]), "lambda_max": float(theta[-1]),
                   "converged_min": int(conv[lo].sum()), "converged_max": int(conv[hi].sum()),
                   "residual_min": float(res[lo].max()) / scale, "residual_max": float(res[hi].max()) / scale}
            history.append(row)
            if on_restart is not None:
                on_restart(row)
            done_lo, done_hi = bool(conv[lo].all()), bool(conv[hi].all())
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
            w = matvec(V[:, j]).to(**f64)
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
            if beta <= breakdown * anorm:
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
        keep_state = KrylovState(Vs.cpu(), Hs.cpu(), anorm, spent0 + spent)
    else:
        keep_state = KrylovState(V[:, :size + 1].cpu().clone(), H[:size + 1, :size].cpu().clone(), anorm,
                                 spent0 + spent)
    return EigenResult(theta[lo], V[:, :size] @ Y[:, lo], theta[hi], V[:, :size] @ Y[:, hi], res[lo], res[hi],
                       keep_state, history)


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
    """For an alpha grid of the bounded-MSE invariance: which alphas can grow a change (see the module
    docstring: locally only directions with ``lambda_i < alpha`` grow).

    ``eigenvalues_min``: the k smallest eigenvalues of ``J^T J`` (ascending; ``eigenvalues_min[0]`` is
    ``lambda_min``), ``eigenvalues_max`` the largest, ``residual_min`` the residual of the smallest pair.
    Per alpha: ``worth_running`` (``alpha > lambda_min``: certain, since ``lambda_min`` here is the
    Rayleigh quotient of a direction along which the objective then decreases), ``held``
    (``alpha < lambda_min - residual_min``: no direction grows locally, if no smaller eigenvalue was
    missed), ``directions_below`` (how many of the computed smallest eigenvalues lie below alpha;
    ``k`` means at least ``k``) and ``above_lambda_max`` (every direction grows, none is held)."""
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
    """The ``k`` smallest and largest eigenpairs of ``J^T J`` of a denoiser at one image (see the module
    docstring for the method, the stop criterion and the link to alpha).

    ``image``: ``(1, 1, H, W)`` normalized. ``denoiser``: maps ``(B, 1, H, W)`` to the same shape; it
    is frozen (eval mode, no weight gradients) and converted to channels_last, as ``Invariance`` does.
    ``dtype``: ``torch.float32`` (default) or ``torch.float64`` (then give a float64 denoiser).

    ``LinearisedInvariance(x, denoiser, k=8).compute()`` fills ``eigenvalues_min`` ``(k,)`` ascending,
    ``eigenvectors_min`` ``(k, 1, H, W)`` (unit L2 norm), ``eigenvalues_max`` ``(k,)`` descending,
    ``eigenvectors_max``, ``residuals`` (``{"min": (k,), "max": (k,)}``, explicit
    ``||J^T J v - lambda v|| / ||v||``) and ``converged`` (residual <= ``tol * lambda_max``).
    Calling ``compute`` again continues from the stored Krylov basis."""

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
        self.matvecs = 0  # products spent by the iteration (the residual checks come on top: 2k per call)
        self.eigenvalues_min = self.eigenvalues_max = None
        self.eigenvectors_min = self.eigenvectors_max = None
        self.residuals: dict[str, torch.Tensor] = {}
        self.converged: dict[str, torch.Tensor] = {}

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
        explicit product each. ``tol``: relative residual (``||A v - lambda v|| <= tol * lambda_max``).
        ``which``: the end(s) that must converge (``"both"``, ``"smallest"``, ``"largest"``); both ends
        are returned. Warns when a pair of a wanted end did not converge."""
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
                             "conv": f"{row['converged_min']}+{row['converged_max']}/{2 * self.k}"}, refresh=False)

        try:
            res = extreme_eigenpairs(self.matvec, self.n, self.k, tol=self.tol, max_matvecs=max_matvecs,
                                     basis_size=self.basis_size, seed=self.seed, state=self._state,
                                     device=self.device, on_matvec=lambda: bar.update(1), on_restart=on_restart,
                                     which=which, max_seconds=max_seconds)
        finally:
            bar.close()
        self._state = res.state
        self.matvecs = res.state.matvecs
        self.history.extend(res.history)
        self._set_result(res)
        self.seconds += time.perf_counter() - t0
        bad = [f"{int((~c).sum())}/{self.k} {end}" for end, c in self.converged.items()
               if not c.all() and end in self._wanted()]
        if bad:
            warnings.warn(f"LinearisedInvariance: {', '.join(bad)} eigenpairs not converged after {self.matvecs} "
                          f"products (residual > tol * lambda_max = {self.tol:.1e} * {self.lambda_max_estimate:.3g});"
                          " call compute() again to continue, or raise max_matvecs (max_iter of linearised_spectrum)",
                          stacklevel=_stacklevel)
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
        threshold = self.tol * self.lambda_max_estimate
        self.eigenvalues_min, self.eigenvectors_min, r_min = out["min"]
        self.eigenvalues_max, self.eigenvectors_max, r_max = out["max"]
        self.residuals = {"min": r_min, "max": r_max}
        self.converged = {end: r <= threshold for end, r in self.residuals.items()}

    def _wanted(self) -> tuple[str, ...]:
        return {"both": ("min", "max"), "smallest": ("min",), "largest": ("max",)}[self.which]

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
        """Eigenvalues (dimensionless squared gains), explicit residuals, the tolerance they were
        checked against, convergence, products spent and time."""
        self._require_result()
        H, W = self.image.shape[-2:]
        threshold = self.tol * self.lambda_max_estimate
        conv_min, conv_max = int(self.converged["min"].sum()), int(self.converged["max"].sum())
        done = all(bool(self.converged[end].all()) for end in self._wanted())
        return {"shape": (int(H), int(W)), "k": self.k, "lambda_min": float(self.eigenvalues_min[0]),
                "lambda_max": float(self.eigenvalues_max[0]),
                "eigenvalues_min": self.eigenvalues_min.tolist(), "eigenvalues_max": self.eigenvalues_max.tolist(),
                "residuals_min": self.residuals["min"].tolist(), "residuals_max": self.residuals["max"].tolist(),
                "tol": self.tol, "residual_threshold": threshold,
                "converged_min": conv_min, "converged_max": conv_max,
                "which": self.which, "converged": done,
                "status": ("converged" if done else
                           f"not converged ({conv_min}/{self.k} smallest, {conv_max}/{self.k} largest)"),
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

        return LinearisedSpectrum(
            smallest=self.eigenvalues_min.numpy().astype(np.float64),
            largest=self.eigenvalues_max.numpy().astype(np.float64),
            vectors_smallest=self.eigenvectors_min.numpy().astype(np.float32),
            vectors_largest=self.eigenvectors_max.numpy().astype(np.float32),
            residuals_smallest=self.residuals["min"].numpy().astype(np.float64),
            residuals_largest=self.residuals["max"].numpy().astype(np.float64),
            converged_smallest=self.converged["min"].numpy().astype(bool),
            converged_largest=self.converged["max"].numpy().astype(bool),
            iterations=int(self.matvecs), seconds=float(self.seconds), tol=float(self.tol), which=self.which,
            lambda_max_estimate=float(self.lambda_max_estimate), history=hist,
            x_hu=hu(self.image[0, 0]), f_x_hu=hu(self.target[0, 0]))

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the eigenpairs, the Krylov state (to continue) and the history, atomically, as a
        weights-only torch file. Load with :meth:`load`."""
        self._require_result()
        state = {"class": type(self).__name__, "image": self.image.cpu(), "target": self.target.cpu(),
                 "k": self.k, "seed": self.seed, "dtype": str(self.dtype).removeprefix("torch."), "tol": self.tol, "which": self.which,
                 "basis_size": self.basis_size, "matvecs": self.matvecs, "seconds": self.seconds,
                 "history": self.history, "lambda_max_estimate": self.lambda_max_estimate,
                 "eigenvalues_min": self.eigenvalues_min, "eigenvalues_max": self.eigenvalues_max,
                 "eigenvectors_min": self.eigenvectors_min, "eigenvectors_max": self.eigenvectors_max,
                 "residuals": self.residuals, "converged": self.converged,
                 "krylov": self._state.to_dict(), "versions": versions()}
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
        for name in ("eigenvalues_min", "eigenvalues_max", "eigenvectors_min", "eigenvectors_max",
                     "residuals", "converged"):
            setattr(obj, name, st[name])
        obj._state = KrylovState.from_dict(st["krylov"])
        return obj


def useful_alphas(alphas: Sequence[float], eigenvalues_min) -> list[float]:
    """The alphas of a grid above ``lambda_min`` (worth running; see :func:`alpha_report`)."""
    lam = smallest_useful_alpha(eigenvalues_min)
    return [float(a) for a in alphas if float(a) > lam]


# --------------------------------------------------------------------------------------------
# The result, as arrays (what notebooks store and figures draw)
# --------------------------------------------------------------------------------------------

_ARRAY_KEYS = ("smallest", "largest", "vectors_smallest", "vectors_largest", "residuals_smallest",
               "residuals_largest", "converged_smallest", "converged_largest", "history", "x_hu", "f_x_hu")
_SCALAR_KEYS = {"iterations": int, "seconds": float, "tol": float, "which": str, "lambda_max_estimate": float}

UNITS = ("eigenvalues of J^T J with f in network units (normalized, 1 unit = 502.185 HU in and out): a "
         "dimensionless squared gain, ||f(x + e v) - f(x)||^2 / ||e v||^2 for small e, the same in HU; "
         "comparable with alpha of the bounded MSE for small changes (see ctinv_utils.synthesis.linearised)")


@dataclass
class LinearisedSpectrum:
    """The ``k`` smallest and largest eigenpairs of ``J^T J`` at one image, as numpy arrays.

    ``smallest`` ``(k,)`` ascending, ``largest`` ``(k,)`` descending: eigenvalues (dimensionless squared
    gains, see :data:`UNITS`; each the Rayleigh quotient of its vector, so ``smallest[0]`` is an upper
    bound on the true ``lambda_min`` even when not converged). ``vectors_*`` ``(k, 1, H, W)`` float32
    unit-L2 directions (no units; a change of RMS ``c`` HU along ``v`` is ``c * sqrt(H W) * v`` HU).
    ``residuals_*`` ``(k,)``: the explicit ``||J^T J v - lambda v||`` (same units as lambda).
    ``converged_*`` ``(k,)``: residual ``<= tol * lambda_max_estimate``; ``converged`` is True when every
    pair of the wanted end(s) (``which``) converged. ``iterations``: ``J^T J v`` products spent by the
    iteration (one jvp + one vjp each; the residual check adds ``2k``). ``seconds``: wall-clock time of
    the whole computation. ``history`` ``(R, 3)``: (products, smallest Ritz value, largest) per restart.
    ``x_hu``, ``f_x_hu`` ``(H, W)``: the image and its denoised output in HU.

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
    iterations: int
    seconds: float
    tol: float
    which: str
    lambda_max_estimate: float
    history: np.ndarray
    x_hu: np.ndarray
    f_x_hu: np.ndarray

    @property
    def k(self) -> int:
        return int(len(self.smallest))

    @property
    def residual_threshold(self) -> float:
        """``tol * lambda_max_estimate``: a pair with a residual at most this counts as converged."""
        return float(self.tol * self.lambda_max_estimate)

    @property
    def converged(self) -> bool:
        ends = {"both": (self.converged_smallest, self.converged_largest), "smallest": (self.converged_smallest,),
                "largest": (self.converged_largest,)}[self.which]
        return all(bool(np.all(c)) for c in ends)

    @property
    def status(self) -> str:
        if self.converged:
            return "converged"
        return (f"not converged ({int(np.sum(self.converged_smallest))}/{self.k} smallest, "
                f"{int(np.sum(self.converged_largest))}/{self.k} largest)")

    @property
    def lambda_min(self) -> float:
        """The smallest computed eigenvalue: an upper bound on the true one (a Rayleigh quotient)."""
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
                "residual_threshold": self.residual_threshold, "converged": self.converged, "status": self.status,
                "iterations": self.iterations, "seconds": round(self.seconds, 2),
                "lambda_min": self.lambda_min, "lambda_max": self.lambda_max,
                "eigenvalues_smallest": self.smallest.tolist(), "eigenvalues_largest": self.largest.tolist(),
                "residuals_smallest": self.residuals_smallest.tolist(),
                "residuals_largest": self.residuals_largest.tolist(),
                "method": "thick-restart Lanczos (Krylov-Schur) on J^T J via torch.func jvp/vjp", "units": UNITS}

    @classmethod
    def from_arrays(cls, arrays) -> "LinearisedSpectrum":
        """Rebuild from :meth:`arrays` (a dict, an ``np.load`` result, or an ``ArrayArtifact``)."""
        arrays = getattr(arrays, "arrays", arrays)
        missing = [key for key in (*_ARRAY_KEYS, *_SCALAR_KEYS) if key not in arrays]
        if missing:
            raise LinearisedInputError(f"these arrays are not a LinearisedSpectrum: missing {missing}; write them "
                                       "with LinearisedSpectrum.arrays()")
        fields = {key: np.asarray(arrays[key]) for key in _ARRAY_KEYS}
        fields["converged_smallest"] = fields["converged_smallest"].astype(bool)
        fields["converged_largest"] = fields["converged_largest"].astype(bool)
        fields.update({key: typ(np.asarray(arrays[key])[()]) for key, typ in _SCALAR_KEYS.items()})
        return cls(**fields)


def linearised_spectrum(denoiser: nn.Module, x_norm, k: int = 4, which: str = "both", tol: float = 1e-3,
                        max_iter: int = 400, max_seconds: float | None = None,
                        progress: bool = True, seed: int = 0, device: str | None = None,
                        dtype: torch.dtype = torch.float32, basis_size: int | None = None) -> LinearisedSpectrum:
    """The ``k`` smallest and largest eigenpairs of ``J^T J`` of ``denoiser`` at ``x_norm``
    ``(1, 1, H, W)`` (normalized units), matrix-free (see the module docstring).

    ``which``: the end(s) that must converge (``"both"``, ``"smallest"``, ``"largest"``; both are
    returned). ``tol``: relative residual, ``||J^T J v - lambda v|| <= tol * lambda_max``. ``max_iter``:
    at most this many ``J^T J v`` products (one jvp + one vjp each); ``max_seconds``: and at most this
    much wall-clock time (then the result depends on the machine). Whatever stops the iteration, every
    returned pair is checked with an explicit product and ``.converged`` / ``.status`` say whether the
    tolerance was met; a warning says so too. Returns a :class:`LinearisedSpectrum`."""
    lin = LinearisedInvariance(x_norm, denoiser, k=k, seed=seed, device=device, dtype=dtype)
    lin.compute(max_matvecs=max_iter, tol=tol, basis_size=basis_size, progress=progress, which=which,
                max_seconds=max_seconds, _stacklevel=3)
    return lin.result()
