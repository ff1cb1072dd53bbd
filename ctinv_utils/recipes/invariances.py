"""How an invariance is optimised, once: the protocol (alpha grid per distance, Adam, learning
rate per distance, iterations, HU range, stop rule) and the run itself. Notebook 03, notebook 05,
the sweep and the convergence benchmark all optimise through :func:`optimise_invariance`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from ..data.dataset import pick_slice
from ..data.ldctbench_split import evaluation_patients
from ..names import display_name
from ..synthesis.adversarial import BIM, FGSM
from ..synthesis.grid import alphas_for, early_stop, rate_for
from ..synthesis.invariances import Invariance, stack_runs
from ..synthesis.linearised import linearised_spectrum
from ..synthesis.tolerance import at_tolerance
from ..units import PHYSICAL_HU_RANGE, hu_to_norm

#: The talk's Adam: PyTorch's default betas.
TALK_BETAS = (0.9, 0.999)


@dataclass(frozen=True)
class InvarianceProtocol:
    """How every invariance of a study is optimised.

    Parameters
    ----------
    alphas : list of float
        The alpha grid (every distance's, unless ``alphas_dssim``/``alphas_vgg`` give their own).
    max_iter, max_iter_vgg : int
        Adam iterations at most (VGG16: its own cap).
    lr : float or dict
        Adam's learning rate in normalized units per step: one number, or ``{distance: rate}``.
    lr_schedule : {"constant", "cosine"}
    adam_betas : (float, float)
    hu_range : (float, float) or None
        x_inv is projected onto this HU range after each step; None: unconstrained (the talk).
    stop_early : bool
        Stop once every alpha converged (loss within 1 % over the last 10 % of the run), not
        before ``min_iter`` iterations.
    init_noise_std : float
        Standard deviation of the start's noise, normalized units.
    continuation : bool
        False (the talk): every alpha starts from x + noise, all in one batch. True: the largest alpha
        starts from x + noise and each smaller one from its neighbour's result, one after the other,
        stopping early from ``warm_min_iter`` iterations on (the performance notes measure both).
    warm_min_iter : int
        The early stop's minimum for a run that starts from its neighbour's result.
    optimizer : {"adam", "lbfgs"}
        The talk's Adam, or the batched projected L-BFGS (measured, not used by a preset).
    """

    alphas: tuple
    max_iter: int
    lr: Any
    alphas_dssim: tuple | None = None
    alphas_vgg: tuple | None = None
    max_iter_vgg: int | None = None
    lr_schedule: str = "constant"
    adam_betas: tuple = TALK_BETAS
    hu_range: tuple | None = PHYSICAL_HU_RANGE
    stop_early: bool = False
    min_iter: int = 0
    init_noise_std: float = 0.1
    continuation: bool = False
    warm_min_iter: int = 50
    optimizer: str = "adam"

    @classmethod
    def from_settings(cls, s, **overrides) -> "InvarianceProtocol":
        """The protocol of notebook 03's settings ``s`` (an ``InvarianceSettings`` or a mapping of
        its parameters); ``overrides`` replace single fields (e.g. ``alphas=...`` from a command line)."""
        get = s.get if isinstance(s, dict) else (lambda k, d=None: getattr(s, k, d))
        hu = get("hu_range")
        fields = dict(alphas=list(get("alphas")), alphas_dssim=get("alphas_dssim"), alphas_vgg=get("alphas_vgg"),
                      max_iter=int(get("max_iter")), max_iter_vgg=get("max_iter_vgg"), lr=get("lr"),
                      lr_schedule=get("lr_schedule", "constant"), adam_betas=list(get("adam_betas") or TALK_BETAS),
                      hu_range=None if hu is None else list(hu), stop_early=bool(get("stop_early", False)),
                      min_iter=int(get("min_iter", 0) or 0), continuation=bool(get("continuation", False)),
                      warm_min_iter=int(get("warm_min_iter", 50) or 50))
        fields.update(overrides)
        return cls(**fields)

    def grid(self, distance: str) -> list[float]:
        """The alpha grid of ``distance``."""
        return alphas_for(distance, self.alphas, self.alphas_dssim, self.alphas_vgg)

    def rate(self, distance: str) -> float:
        """Adam's learning rate for ``distance``."""
        return rate_for(self.lr, distance)

    def iterations(self, distance: str) -> int:
        """The iteration cap of ``distance``."""
        return int(self.max_iter_vgg if distance == "vgg" and self.max_iter_vgg else self.max_iter)

    def stop(self, warm: bool = False) -> dict:
        """``synthesize()``'s stop arguments (none when every iteration runs); ``warm``: of a run that
        starts from a neighbouring alpha's result."""
        return early_stop(self.stop_early, self.warm_min_iter if warm else self.min_iter)

    def describe(self) -> str:
        """How the runs were optimised, for captions: e.g. "Adam, every alpha from x + noise"."""
        method = "L-BFGS" if self.optimizer == "lbfgs" else "Adam"
        if self.continuation:
            return f"{method}, continuation (largest alpha from x + noise, each smaller from its neighbour)"
        return f"{method}, every alpha from x + noise"

    def replace(self, **changes) -> "InvarianceProtocol":
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)


def optimise_invariance(x: torch.Tensor, denoiser: nn.Module, distance: str, protocol: InvarianceProtocol,
                        seed: int, *, distance_module: nn.Module | None = None, device: str | None = None,
                        progress: bool = False) -> Invariance:
    """Every alpha of ``protocol``'s grid for ``distance`` optimised in one batch from one start.

    Parameters
    ----------
    x : torch.Tensor, shape (1, 1, H, W)
        The low-dose image in normalized units.
    denoiser : nn.Module
    distance : {"mse", "dssim", "vgg"}
    protocol : InvarianceProtocol
    seed : int
        Seed of the start's noise.
    distance_module : nn.Module, optional
        A distance built once and shared (the VGG16 distance).

    Returns
    -------
    Invariance
        The finished run (``history``, ``summary()``, ``convergence()``, ``figure_arrays()``).
    """
    grid = protocol.grid(distance)

    def run(alphas, start=None) -> Invariance:
        inv = Invariance(x, denoiser, distance, alpha=alphas, init_noise_std=protocol.init_noise_std, seed=seed,
                         lr=protocol.rate(distance), device=device, hu_range=protocol.hu_range,
                         adam_betas=protocol.adam_betas, distance_module=distance_module,
                         optimizer=protocol.optimizer, start=start)
        inv.synthesize(protocol.iterations(distance), progress=progress, lr_schedule=protocol.lr_schedule,
                       **protocol.stop(warm=start is not None))
        return inv

    if not protocol.continuation or len(grid) == 1:
        return run(grid)
    # continuation: the largest alpha (the fastest to converge from x + noise) first, then down the grid,
    # each from its neighbour's result
    runs: dict[int, Invariance] = {}
    start = None
    for i in sorted(range(len(grid)), key=lambda i: -grid[i]):
        runs[i] = run(grid[i], start)
        start = runs[i].result
    return stack_runs([runs[i] for i in range(len(grid))])


def invariance_rows(inv: Invariance, **keys) -> list[dict]:
    """One row per alpha: ``keys``, the iterations, whether it converged, the loss's and the input
    distance's spread over the last 10 % of the run (%), and :meth:`Invariance.summary`'s HU changes."""
    iterations = inv.iterations_per_alpha
    return [dict(**keys, iterations=n, converged=c, loss_spread_pct=100 * float(spread),
                 input_spread_pct=100 * float(creep), **row)
            for row, n, c, spread, creep in zip(inv.summary(), iterations, inv.convergence(), inv.relative_spread(),
                                                inv.relative_spread(term="input_distance"))]


def invariance_study(x: torch.Tensor, denoisers: dict, distances, protocol: InvarianceProtocol, seed: int, art, *,
                     tol_hu: float, refine_steps: int, refine_steps_vgg: int, candidates: int,
                     vgg_distance: nn.Module | None = None, vgg_note: str = "", progress: bool = True) -> dict:
    """Notebook 03's study of one slice: every (denoiser, distance) run, saved with its optimizer
    state and figure arrays, then the same question at an output tolerance of ``tol_hu`` HU RMS.

    Writes the artifacts ``invariance`` (per run), ``tolerance_arrays``, ``invariances_summary`` and
    ``tolerance_summary``; returns ``{"rows", "tolerance", "converged", "runs"}``.
    """
    summary, tolerance = [], []
    for name, f in denoisers.items():
        for dist in distances:
            inv = optimise_invariance(x, f, dist, protocol, seed, distance_module=vgg_distance if dist == "vgg" else None,
                                      progress=progress)
            meta = {"denoiser": name, "distance": dist, "iterations": inv.iteration, "optimiser": protocol.describe(),
                    "lr": protocol.rate(dist),
                    "lr_schedule": protocol.lr_schedule, "hu_range": protocol.hu_range,
                    "converged": inv.convergence(), "vgg": vgg_note if dist == "vgg" else ""}
            art.save_synthesis("invariance", inv, meta, {"denoiser": name, "distance": dist})
            summary += invariance_rows(inv, denoiser=name, distance=dist)
            # the same question at a stated output tolerance: refine alpha where the grid is too coarse,
            # each refinement at least as long as this run, then until converged
            tol = at_tolerance(inv, tol_hu, refine_steps=refine_steps_vgg if dist == "vgg" else refine_steps,
                               candidates=candidates, max_iter=protocol.iterations(dist),
                               lr_schedule=protocol.lr_schedule, warm_start=protocol.continuation,
                               **protocol.stop(warm=protocol.continuation))
            art.write_arrays("tolerance_arrays", tol.figure_arrays(), {**meta, **tol.summary(), "alpha": tol.alpha,
                             "input_rms_hu": tol.input_rms_hu, "output_rms_hu": tol.output_rms_hu},
                             {"denoiser": name, "distance": dist})
            tolerance.append(dict(denoiser=name, distance=dist, **tol.summary()))
    art.write_json("invariances_summary", {"rows": summary, "vgg": vgg_note, "hu_range": protocol.hu_range,
                                           "lr_schedule": protocol.lr_schedule, "optimiser": protocol.describe()})
    art.write_json("tolerance_summary", {"rows": tolerance, "tol_hu": tol_hu})
    return {"rows": summary, "tolerance": tolerance, "converged": sum(r["converged"] for r in summary)}


def analysis_slice(data, art, names, region: str, crop: int | None, device: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The slice notebook 03 analyses: a ``region`` slice of a test patient none of ``names`` was
    trained on (ldct-benchmark's test patients for its networks on TCIA), centre-cropped to ``crop``
    px, written as the ``analysis_slice`` artifact. Returns (x, x_full) ``(1, 1, H, W)`` in normalized
    units and where the slice lies (patient, slice)."""
    test_ids = evaluation_patients(data, art.data_split(data)["test"], names)
    low_hu, full_hu, where = pick_slice(data, test_ids, region, crop)
    art.write_arrays("analysis_slice", {"low": low_hu, "full": full_hu}, where)
    x, x_full = (torch.from_numpy(hu_to_norm(a))[None, None].float().to(device) for a in (low_hu, full_hu))
    return x, x_full, where


def unconstrained_study(x, denoisers: dict, protocol: InvarianceProtocol, alphas, seed: int, art,
                        progress: bool = True) -> list[dict]:
    """Bounded MSE at ``alphas`` without the HU range (the talk's form), for the side-by-side with the
    physically valid runs; writes ``unconstrained_arrays`` and ``unconstrained_summary``."""
    free_protocol = protocol.replace(alphas=list(alphas), alphas_dssim=None, alphas_vgg=None, hu_range=None)
    rows = []
    for name, f in denoisers.items():
        free = optimise_invariance(x, f, "mse", free_protocol, seed, progress=progress)
        art.write_arrays("unconstrained_arrays", free.figure_arrays(),
                         {"denoiser": name, "distance": "mse", "iterations": free.iteration, "hu_range": None},
                         {"denoiser": name, "distance": "mse"})
        rows += [dict(denoiser=name, distance="mse", iterations=free.iteration, converged=c, **row)
                 for row, c in zip(free.summary(), free.convergence())]
    art.write_json("unconstrained_summary", {"rows": rows})
    return rows


def linearised_study(x, denoisers: dict, crop: int | None, k: int, max_products: int, seed: int, art,
                     progress: bool = True) -> None:
    """The Jacobian spectrum (J^T J's smallest and largest eigenpairs) of each denoiser on a ``crop``
    px centre crop of ``x``; writes the ``linearised`` artifacts. A network that takes one input size
    only (its ``SIZE``: TransCT's 512) is linearised at that size, the crop recorded as such."""
    for name, f in denoisers.items():
        fixed = getattr(f, "SIZE", None)
        c = x.shape[-1] if crop is None else min(crop, x.shape[-1])
        c = int(fixed) if fixed and fixed <= min(x.shape[-2:]) else c
        r0, c0 = (x.shape[-2] - c) // 2, (x.shape[-1] - c) // 2
        spec = linearised_spectrum(f, x[..., r0:r0 + c, c0:c0 + c], k=k, max_iter=max_products, progress=progress,
                                   seed=seed)
        art.write_arrays("linearised", spec.arrays(), {**spec.meta(), "denoiser": display_name(name), "crop": c},
                         keys={"denoiser": name})


def adversarial_study(x, x_full, denoisers: dict, eps_hu: float, steps: int, seed: int, device: str, art) -> list[dict]:
    """FGSM and BIM at an L-infinity budget of ``eps_hu`` HU, pushing f(x_adv) away from f(x)
    ("output", random start) and from the full-dose image ("target"), and BIM at the input budget of
    the bounded-MSE invariance at the output tolerance ("BIM-matched": needs :func:`invariance_study`'s
    ``tolerance_arrays``); writes the ``attack`` runs and ``adversarial_summary``."""
    rows = []
    for name, f in denoisers.items():
        for loss in ("output", "target"):
            for cls in (FGSM, BIM):
                kw = {} if cls is FGSM else {"step_hu": 2.5 * eps_hu / steps}
                atk = cls(x, f, eps_hu=eps_hu, loss=loss, target=x_full if loss == "target" else None, seed=seed,
                          device=device, **kw)
                atk.synthesize(1 if cls is FGSM else steps, progress=False)
                art.save_synthesis("attack", atk, {"eps_hu": eps_hu, "iterations": atk.iteration},
                                   {"denoiser": name, "loss": loss, "attack": cls.__name__})
                rows.append(dict(denoiser=name, attack=cls.__name__, loss=loss, eps_hu=eps_hu, **atk.summary()))
        # like with like: BIM at the input budget of the bounded-MSE invariance at the output tolerance
        # (L-infinity eps = that invariance's RMS input change), so the two output changes compare directly
        tol = art.read_arrays("tolerance_arrays", denoiser=name, distance="mse").meta
        matched_eps = max(float(tol["input_rms_hu"]), 1.0)
        atk = BIM(x, f, eps_hu=matched_eps, loss="output", seed=seed, device=device, step_hu=2.5 * matched_eps / steps)
        atk.synthesize(steps, progress=False)
        art.save_synthesis("attack", atk, {"eps_hu": matched_eps, "iterations": atk.iteration, "matched_to": "tolerance",
                                           "invariance_input_rms_hu": tol["input_rms_hu"],
                                           "invariance_output_rms_hu": tol["output_rms_hu"], "tol_hu": tol.get("tol_hu")},
                           {"denoiser": name, "loss": "output", "attack": "BIM-matched"})
        rows.append(dict(denoiser=name, attack="BIM-matched", loss="output", eps_hu=matched_eps, **atk.summary()))
    art.write_json("adversarial_summary", {"rows": rows})
    return rows
