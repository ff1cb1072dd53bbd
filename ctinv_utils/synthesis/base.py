"""The synthesis loop shared by invariances and adversarial attacks (after plenoptic).

A synthesis object holds its state (the image being optimised, optimizer, history) and
``synthesize(max_iter)`` runs or *resumes* the loop. Every iteration records the loss terms, the
gradient norm and the pixel change, shows them in a tqdm bar and raises on a non-finite loss.
``save`` / ``load`` keep tensors and optimizer state (never pickled callables), and ``load`` re-runs
the denoiser on the stored input to check it is the same denoiser. Randomness is owned: a synthesis
draws its start from its own seeded ``torch.Generator`` at construction and never touches the global
RNG, so loading one leaves the process's random state alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import atomic
from ..errors import BadArgumentError, CTInvError
from ..models.checkpoints import load_file
from ..progress import finish, progress_bar
from ..provenance import versions
from ..speed import tune_allocator
from ..units import STD, hu_to_norm


class SynthesisDiverged(CTInvError):
    """The objective became NaN or infinite."""


#: The normalized values a CT slice can take: from -3100 HU (below air at -1000 HU and the -3024 HU
#: padding some scanners write outside the field of view; the DICOM loader's lower bound) up to 20
#: units (about 9,500 HU: far above bone and the 12-bit ceiling of 3071 HU). An image outside is not
#: in normalized units; most often it is in HU.
NORM_RANGE = (float(hu_to_norm(-3100.0)), 20.0)


def check_image(image: torch.Tensor) -> torch.Tensor:
    """A single normalized image ``(1, 1, H, W)``, finite, with values in :data:`NORM_RANGE`
    (an image in HU is refused, naming :func:`ctinv_utils.units.hu_to_norm` as the fix)."""
    if not isinstance(image, torch.Tensor):
        image = torch.as_tensor(np.asarray(image), dtype=torch.float32)
    if image.ndim != 4 or image.shape[:2] != (1, 1):
        raise BadArgumentError(f"image must have shape (1, 1, H, W) (one normalized slice), got "
                               f"{tuple(image.shape)}; use hu_to_norm(slice_hu)[None, None]")
    if not torch.isfinite(image).all():
        raise BadArgumentError("image contains NaN or inf values; check the input slice")
    lo, hi = float(image.min()), float(image.max())
    if lo < NORM_RANGE[0] or hi > NORM_RANGE[1]:
        raise BadArgumentError(
            f"image values span {lo:.4g} to {hi:.4g}, outside the normalized units of a CT slice "
            f"({NORM_RANGE[0]:.2f} to {NORM_RANGE[1]:.0f}; 1 unit = {STD:.0f} HU, air -0.91, water 1.08, "
            f"3071 HU {float(hu_to_norm(3071.0)):.2f}): it looks like HU; convert it with "
            "ctinv_utils.units.hu_to_norm(image_hu)")
    return image.float()


def check_lr(lr, name: str = "lr") -> float:
    """A learning rate: a finite number > 0 (0 would leave the image where it starts)."""
    ok = (isinstance(lr, (int, float, np.integer, np.floating)) and not isinstance(lr, (bool, np.bool_))
          and math.isfinite(float(lr)) and float(lr) > 0)
    if not ok:
        raise BadArgumentError(f"{name} must be a finite number > 0 (Adam's step in normalized units, e.g. 0.01), "
                               f"got {lr!r}; with {name} = 0 no iteration would move the image")
    return lr


@torch.no_grad()
def check_denoiser(denoiser: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Run the denoiser once; it must keep the shape. Returns f(image)."""
    out = denoiser(image)
    if not isinstance(out, torch.Tensor) or out.shape != image.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the denoiser maps {tuple(image.shape)} to {shape}; it must return the input's "
                         "shape (B, 1, H, W)")
    return out


def relative_spread(loss_history, fraction: float = 0.1, lr_history=None, window: int | None = None) -> np.ndarray:
    """Per sample, how much the loss still moved at the end of a run: its relative spread.

    The spread over the last ``w + 1`` values, ``(max - min) / max |L|``, with ``w`` the last
    ``fraction`` of the ``T`` iterations (at least one). The spread, not the change between the two
    endpoints: a loss that is not monotone passes an endpoint test whenever its two ends happen to
    coincide, and an early stop tests every iteration, so it would find such a moment. A run whose
    spread is below a threshold < 1 also changed by less than it between its endpoints.

    With ``lr_history`` the spread is scaled by ``max(lr) / mean(lr over the window)``: a decaying
    rate slows the iterate, so the raw spread of a run still far from its optimum would fall below
    any threshold; scaled, it estimates how fast the loss would still move at the rate that moved it.

    Parameters
    ----------
    loss_history : array_like, shape (T, A) or (T,)
        The loss per iteration and sample (or a list of per-iteration lists); NaN where a sample's run
        had ended (runs of different lengths), each sample then judged over its own iterations.
    fraction : float
        The window, as a fraction of the ``T`` iterations.
    lr_history : array_like, shape (T,), optional
        The learning rate of each iteration.
    window : int, optional
        The window in iterations, instead of ``fraction``.

    Returns
    -------
    numpy.ndarray, shape (A,)
        The relative spread per sample; infinite before 2 iterations.

    Examples
    --------
    >>> from ctinv_utils.synthesis.base import relative_spread
    >>> relative_spread([[1.0], [0.99], [0.995]], window=2)
    array([0.01])
    """
    h = np.asarray(loss_history, dtype=np.float64)
    if h.ndim == 1:
        h = h[:, None]
    if np.isnan(h).any():  # runs of different lengths side by side (NaN after a run ended): each on its own
        rates = None if lr_history is None else np.asarray(lr_history, dtype=np.float64)
        out = []
        for col in h.T:
            keep = ~np.isnan(col)
            out.append(relative_spread(col[keep], fraction, None if rates is None or len(rates) != len(col)
                                       else rates[keep], window)[0])
        return np.asarray(out)
    if len(h) < 2:
        return np.full(h.shape[1] if h.ndim == 2 else 1, np.inf)
    w = max(1, int(round(fraction * len(h)))) if window is None else min(int(window), len(h) - 1)
    last = h[-1 - w:]
    change = (last.max(0) - last.min(0)) / np.maximum(np.abs(last).max(0), 1e-12)
    if lr_history is not None and len(lr_history) == len(h):
        rates = np.asarray(lr_history, dtype=np.float64)
        change = change * (rates.max() / max(rates[-w:].mean(), 1e-30))
    return change


class Synthesis:
    """The optimisation loop of :class:`~ctinv_utils.synthesis.invariances.Invariance` and the attacks.

    Holds the image being optimised (``param``), the optimizer, ``iteration`` and ``history``;
    :meth:`synthesize` runs or resumes the loop, :meth:`save` / ``load`` keep it on disk. A subclass
    defines ``objective() -> (loss per sample (A,), {term: (A,)})`` and ``_make_optimizer(lr)``, and
    optionally ``_project()``, a constraint applied after each step.
    """

    param: torch.Tensor
    history: dict[str, list]

    def _init_state(self, lr: float, *terms: str) -> None:
        """Fresh loop state: no optimizer yet, iteration 0, empty history with the loss, the given
        ``terms``, gradient norm and pixel change."""
        tune_allocator()
        self.lr = lr
        self.optimizer = None
        self.iteration = 0
        self.saved: list = []
        self.history = {k: [] for k in ("loss", *terms, "grad_norm", "pixel_change", "lr")}

    def objective(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # pragma: no cover
        raise NotImplementedError

    def _make_optimizer(self, lr: float) -> torch.optim.Optimizer:  # pragma: no cover
        raise NotImplementedError

    def _desc(self) -> str:
        return type(self).__name__

    def _project(self) -> None:
        """Constraint after each step (e.g. the attack's eps-ball); none by default."""

    def _check_finite(self, total: torch.Tensor, grad: torch.Tensor | None = None) -> None:
        if not torch.isfinite(total):
            raise SynthesisDiverged(f"{type(self).__name__}: loss is {total.item()} at iteration "
                                    f"{self.iteration + 1}; lower lr or check the denoiser for NaN outputs")
        if grad is not None and not torch.isfinite(grad).all():  # would poison the image without a NaN loss first
            raise SynthesisDiverged(f"{type(self).__name__}: the gradient is NaN or inf at iteration "
                                    f"{self.iteration + 1} (loss {total.item():.4g}); lower lr or check the "
                                    "denoiser for NaN/inf outputs")

    def _closure(self, x: torch.Tensor, index: torch.Tensor):  # pragma: no cover
        """The objective of the samples ``index`` at ``x`` (for a closure-driven optimizer)."""
        raise NotImplementedError

    def _step(self, loss: torch.Tensor) -> torch.Tensor:
        grad, = torch.autograd.grad(loss, [self.param])  # only the image: denoiser weights get no .grad
        self._check_finite(loss, grad)
        self.param.grad = grad
        self.optimizer.step()
        return grad

    def _stop(self, stop_criterion: float | None, window: int | None, min_iter: int = 0) -> bool:
        """Every sample's loss spread by at most the criterion (relative, scaled to the full rate as
        in :meth:`convergence`) over the last ``window`` iterations (None: the last 10 % of the run so
        far, exactly :meth:`convergence`'s test), and the run has at least ``min_iter`` iterations."""
        n = len(self.history["loss"])
        if stop_criterion is None or n < max(min_iter, 2) or (window is not None and n <= window):
            return False
        return bool(np.all(relative_spread(self.history["loss"], lr_history=self.history.get("lr"),
                                           window=window) <= stop_criterion))

    def convergence(self, fraction: float = 0.1, tol: float = 0.01) -> list[bool]:
        """Per sample: has the run converged?

        Converged means the loss stayed within ``tol`` (its spread relative to its magnitude, scaled
        to the run's largest learning rate, :func:`relative_spread`) over the last ``fraction`` of
        the iterations run so far, so a decayed rate cannot hide a run that is still moving.

        Parameters
        ----------
        fraction : float
            The window, as a fraction of the iterations run so far.
        tol : float
            The largest relative spread that counts as converged.

        Returns
        -------
        list of bool
            One per sample (per alpha of an :class:`~ctinv_utils.synthesis.invariances.Invariance`).

        Examples
        --------
        >>> x_inv = inv.synthesize(300, progress=False)
        >>> converged = inv.convergence()          # one bool per alpha
        """
        return [bool(c < tol) for c in self.relative_spread(fraction)]

    def relative_spread(self, fraction: float = 0.1, term: str = "loss") -> np.ndarray:
        """Per sample, the rate-scaled relative spread of a history term over the end of the run.

        The input distance can still creep where the loss has settled (the objective is flat along
        the invariance): it is reported next to the loss, not a stop criterion.

        Parameters
        ----------
        fraction : float
            The window, as a fraction of the iterations run so far.
        term : str
            A key of ``history``: ``"loss"`` (what :meth:`convergence` judges) or one of its terms,
            e.g. ``"input_distance"``.

        Returns
        -------
        numpy.ndarray, shape (A,)
            See :func:`relative_spread`.

        Raises
        ------
        KeyError
            ``term`` is not in ``history``.
        """
        if term not in self.history:
            raise KeyError(f"no history of {term!r}; recorded: {', '.join(self.history)}")
        return relative_spread(self.history[term], fraction, self.history.get("lr"))

    def synthesize(self, max_iter: int = 3000, lr: float | None = None, stop_criterion: float | None = None,
                   stop_window: int | None = 50, store_progress: int | None = None, progress: bool = True,
                   lr_schedule: str = "constant", lr_final: float = 0.01, min_iter: int = 0):
        """Run, or continue, the optimisation for up to ``max_iter`` more iterations.

        Each iteration is recorded in ``history``; a later call continues from the same optimizer state.

        Parameters
        ----------
        max_iter : int
            Iterations of this call (>= 0).
        lr : float, optional
            A new learning rate; None keeps the current one.
        stop_criterion : float, optional
            Stop once every sample's loss spread (:func:`relative_spread`) over the last
            ``stop_window`` iterations is at most this; None runs all ``max_iter``.
        stop_window : int, optional
            The stop test's window; None: the last 10 % of the run (then ``stop_criterion=0.01``
            stops when :meth:`convergence` calls the run converged).
        store_progress : int, optional
            Keep the image every this many iterations in ``saved``.
        progress : bool
            Show a progress bar.
        lr_schedule : {"constant", "cosine"}
            The talk's constant rate, or a cosine decay from ``lr`` to ``lr_final * lr``.
        lr_final : float
            The cosine schedule's last rate as a fraction of the first, in (0, 1].
        min_iter : int
            Never stop early before the run has this many iterations in all.

        Returns
        -------
        torch.Tensor
            :attr:`result`, the optimised image(s) in normalized units.

        Raises
        ------
        ValueError, BadArgumentError, SynthesisDiverged
            A bad argument (named); a loss or gradient that became NaN or infinite.

        Examples
        --------
        >>> from ctinv_utils import early_stop
        >>> x_inv = inv.synthesize(1200, **early_stop(min_iter=300))
        """
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
        if not (isinstance(lr_final, (int, float)) and 0 < lr_final <= 1):
            raise ValueError(f"lr_final must be a fraction in (0, 1], got {lr_final!r}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
            raise ValueError(f"max_iter must be an integer >= 0, got {max_iter!r}")
        if stop_window is not None and (isinstance(stop_window, bool) or not isinstance(stop_window, int)
                                        or stop_window < 1):
            raise ValueError(f"stop_window must be an integer >= 1 or None (the last 10 % of the run), got "
                             f"{stop_window!r}")
        if isinstance(min_iter, bool) or not isinstance(min_iter, int) or min_iter < 0:
            raise ValueError(f"min_iter must be an integer >= 0, got {min_iter!r}")
        if lr is not None:
            check_lr(lr)
        if stop_criterion is not None and not (isinstance(stop_criterion, (int, float)) and stop_criterion >= 0):
            raise ValueError(f"stop_criterion must be None or a number >= 0, got {stop_criterion!r}")
        if self.optimizer is None:
            self.optimizer = self._make_optimizer(self.lr if lr is None else lr)
        elif lr is not None:
            for g in self.optimizer.param_groups:
                g["lr"] = lr
        lr0 = [g["lr"] for g in self.optimizer.param_groups]
        bar = progress_bar(total=max_iter, desc=self._desc(), disable=not progress)
        try:
            self._loop(bar, max_iter, lr0, lr_schedule, lr_final, stop_criterion, stop_window, store_progress,
                       min_iter)
        finally:
            bar.close()  # no-op after finish(); after an error the bar keeps the count where it stopped
        for g, base in zip(self.optimizer.param_groups, lr0):  # a later call starts from the base rate
            g["lr"] = base
        return self.result

    def _loop(self, bar, max_iter, lr0, lr_schedule, lr_final, stop_criterion, stop_window, store_progress,
              min_iter) -> None:
        for k in range(max_iter):
            if lr_schedule == "cosine":
                scale = lr_final + (1 - lr_final) * 0.5 * (1 + math.cos(math.pi * k / max(1, max_iter - 1)))
                for g, base in zip(self.optimizer.param_groups, lr0):
                    g["lr"] = base * scale
            prev = self.param.detach().clone()
            if getattr(self.optimizer, "needs_closure", False):
                # a quasi-Newton step (BatchedLBFGS): it evaluates the objective itself, per sample, and
                # records the loss where it lands (Adam records it where it starts)
                loss_per, grad, terms = self.optimizer.step(self._closure)
                self._check_finite(loss_per.sum(), grad)
            else:
                loss_per, terms = self.objective()
                total = loss_per.sum()  # per-sample objectives are summed, never mixed
                self._check_finite(total)
                grad = self._step(total)
                with torch.no_grad():
                    self._project()
            self.iteration += 1
            self.history["loss"].append(loss_per.detach().cpu().tolist())
            self.history.setdefault("lr", []).append(self.optimizer.param_groups[0]["lr"])
            for k, v in terms.items():
                self.history[k].append(v.detach().cpu().tolist())
            self.history["grad_norm"].append(grad.flatten(1).norm(dim=1).cpu().tolist())
            self.history["pixel_change"].append((self.param.detach() - prev).flatten(1).abs().max(1).values.cpu().tolist())
            if store_progress and self.iteration % store_progress == 0:
                self.saved.append((self.iteration, self.param.detach().cpu().clone()))
            if self.iteration % 10 == 0 or self.iteration == 1:
                bar.set_postfix({k: f"{np.mean(v[-1]):.4g}" for k, v in self.history.items()
                                 if k not in ("grad_norm", "pixel_change", "lr")}, refresh=False)
            bar.update(1)
            if self._stop(stop_criterion, stop_window, min_iter):
                # stopped because it converged: a finished bar (100 % of the iterations run), not a broken one
                finish(bar, f"converged at {self.iteration}")
                return
        finish(bar)

    @property
    def result(self) -> torch.Tensor:
        """The current optimised image(s), detached, in normalized units (``(A, 1, H, W)`` for an
        invariance, ``(1, 1, H, W)`` for an attack)."""
        return self.param.detach()

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict:  # pragma: no cover
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Save the run (tensors, optimizer state and history, no pickled callables), atomically.

        ``load(path, denoiser)`` restores it to continue exactly where it stopped; it checks that
        the denoiser it is given reproduces the stored f(x).

        Parameters
        ----------
        path : str or pathlib.Path
            The file to write (a torch file, conventionally ``.pt``).

        Returns
        -------
        pathlib.Path
            The file written.

        Examples
        --------
        >>> path = inv.save("run.pt")
        >>> inv = type(inv).load("run.pt", inv.denoiser)   # e.g. Invariance.load, with the run's denoiser
        """
        state = self._state()
        state.update({
            "class": type(self).__name__, "param": self.param.detach().cpu(), "iteration": self.iteration,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "history": self.history,
            "saved": [(i, t) for i, t in self.saved], "versions": versions(),
        })
        return atomic.torch_save(path, state)

    @staticmethod
    def _read(path: str | Path, cls_name: str) -> dict:
        state = load_file(path, f"saved {cls_name}", "delete it and run the synthesis again")
        if state.get("class") != cls_name:
            raise CTInvError(f"{path} holds a {state.get('class')}, not a {cls_name}")
        return state

    def _restore(self, state: dict, lr: float) -> None:
        with torch.no_grad():
            self.param.copy_(state["param"].to(self.param.device))
        self.iteration = int(state["iteration"])
        self.history = state["history"]
        self.saved = [(int(i), t) for i, t in state["saved"]]
        if state["optimizer"] is not None:
            self.optimizer = self._make_optimizer(lr)
            self.optimizer.load_state_dict(state["optimizer"])

    @staticmethod
    def _check_same_output(stored: torch.Tensor, recomputed: torch.Tensor, path) -> None:
        if stored.shape != recomputed.shape or not torch.allclose(stored, recomputed.cpu(), atol=1e-4, rtol=1e-4):
            err = (stored - recomputed.cpu()).abs().max().item() if stored.shape == recomputed.shape else math.inf
            raise CTInvError(f"{path}: the denoiser given to load() does not reproduce the stored f(x) "
                             f"(max difference {err:.3g}); load it with the denoiser it was computed with")
