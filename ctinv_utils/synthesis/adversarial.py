"""Adversarial perturbations of a denoiser (the contrast to invariances): FGSM and BIM.

Small input change, large output change. Budgets are in HU (an L-infinity ball of radius ``eps_hu``
around x). The attacked loss is chosen by name:

* ``"output"``: MSE between f(x_adv) and f(x). Its gradient at x_adv = x is exactly zero, so the
  attack starts from a random point in the eps-ball (``random_start=True``, the default for it).
* ``"target"``: MSE between f(x_adv) and a reference image (the full-dose target).

``FGSM`` is one step of size eps; ``BIM`` iterates steps of ``step_hu``, clipping to the eps-ball
after each: ``x_{i+1} = Clip_{x, eps}(x_i + step * sign(grad))``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..units import hu_difference_to_norm, norm_difference_to_hu, norm_to_hu
from ..settings import check_device
from ..models import freeze, module_device
from ..speed import channels_last
from .base import Synthesis, check_denoiser, check_image

ATTACK_LOSSES = ("output", "target")


class _SignStep(torch.optim.Optimizer):
    """Signed-gradient descent on the synthesis loss (= ascent on the attacked loss, which the
    objective returns negated): the FGSM/BIM update as an optimizer."""

    def __init__(self, params, step: float):
        super().__init__(params, {"lr": step})

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p.sub_(g["lr"] * p.grad.sign())


class BIM(Synthesis):
    """The basic iterative method (BIM): the largest output change within an L-infinity input budget.

    Signed-gradient steps, each clipped to the eps-ball: ``x_{i+1} = Clip_{x, eps}(x_i + step *
    sign(grad))``. ``result``: x_adv ``(1, 1, H, W)`` normalized; ``history`` per iteration: ``loss``
    (the negated attacked loss), ``output_change_hu`` (RMS of f(x_adv) - f(x)), ``input_change_hu``.

    Parameters
    ----------
    image : torch.Tensor, shape (1, 1, H, W)
        The image x, in normalized units.
    denoiser : torch.nn.Module
        Maps ``(B, 1, H, W)`` to the same shape; frozen here.
    eps_hu, step_hu : float
        The budget (radius of the L-infinity ball around x) and the step, in HU (>= 0).
    loss : {"output", "target"}
        ``"output"``: MSE between f(x_adv) and f(x); ``"target"``: MSE between f(x_adv) and ``target``.
    target : torch.Tensor, shape (1, 1, H, W), optional
        The reference for ``loss="target"`` (e.g. the full-dose image), normalized.
    random_start : bool, optional
        Start from a random point in the eps-ball (default: for ``"output"``, whose gradient at x is 0).
    seed : int
        Seed of the random start.
    device : str, optional
        Where to run; default the denoiser's device.

    Raises
    ------
    ValueError
        An unknown loss, a negative budget, or ``loss="target"`` without ``target``.
    BadArgumentError
        An image of the wrong shape, with NaN, or in HU.

    Examples
    --------
    >>> import torch
    >>> from ctinv_utils import BIM, hu_to_norm, load_denoiser
    >>> atk = BIM(hu_to_norm(torch.full((1, 1, 48, 48), 40.0)), load_denoiser("gauss_ri"), eps_hu=10.0)
    >>> x_adv = atk.synthesize(10, progress=False)
    >>> round(atk.summary()["input_max_hu"], 3)
    10.0
    """

    def __init__(self, image, denoiser: nn.Module, eps_hu: float = 10.0, step_hu: float = 1.0,
                 loss: str = "output", target=None, random_start: bool | None = None, seed: int = 0,
                 device: str | None = None):
        if loss not in ATTACK_LOSSES:
            raise ValueError(f"unknown attack loss {loss!r}; choose one of {ATTACK_LOSSES}")
        if not (eps_hu >= 0 and step_hu >= 0):
            raise ValueError(f"eps_hu and step_hu must be >= 0 HU, got {eps_hu}, {step_hu}")
        image = check_image(image)
        self.device = check_device(device, "attack device") if device else module_device(denoiser)
        self.image = image.to(self.device)
        self.denoiser = channels_last(freeze(denoiser))
        self.clean_output = check_denoiser(self.denoiser, self.image)
        if loss == "target":
            if target is None:
                raise ValueError("loss='target' needs target= (e.g. the full-dose image, normalized)")
            self.reference = check_image(target).to(self.device)
        else:
            self.reference = self.clean_output
        self.loss_name, self.eps_hu, self.step_hu, self.seed = loss, float(eps_hu), float(step_hu), int(seed)
        self.eps = hu_difference_to_norm(self.eps_hu)
        self.random_start = (loss == "output") if random_start is None else bool(random_start)
        start = self.image.clone()
        if self.random_start:
            gen = torch.Generator().manual_seed(self.seed)
            start += ((torch.rand(self.image.shape, generator=gen) * 2 - 1) * self.eps).to(self.device)
        self.param = start.requires_grad_(True)
        self._init_state(hu_difference_to_norm(self.step_hu), "output_change_hu", "input_change_hu")

    def _make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return _SignStep([self.param], lr)

    def objective(self):
        out = self.denoiser(self.param)
        attacked = ((out - self.reference) ** 2).flatten(1).mean(1)
        with torch.no_grad():
            out_change = norm_difference_to_hu(out - self.clean_output).flatten(1).pow(2).mean(1).sqrt()
            in_change = norm_difference_to_hu(self.param - self.image).flatten(1).abs().max(1).values
        return -attacked, {"output_change_hu": out_change, "input_change_hu": in_change}

    def _project(self) -> None:
        self.param.copy_(torch.max(torch.min(self.param, self.image + self.eps), self.image - self.eps))

    def synthesize(self, max_iter: int = 10, progress: bool = True, **kw):
        """Run, or continue, the attack for ``max_iter`` steps (see :meth:`Synthesis.synthesize`).

        Returns
        -------
        torch.Tensor, shape (1, 1, H, W)
            x_adv in normalized units.
        """
        return super().synthesize(max_iter, progress=progress, **kw)

    @torch.no_grad()
    def output(self) -> torch.Tensor:
        """f(x_adv), ``(1, 1, H, W)`` in normalized units."""
        return self.denoiser(self.param.detach())

    @torch.no_grad()
    def summary(self) -> dict:
        """What the current x_adv changed, in HU.

        Returns
        -------
        dict
            ``input_max_hu`` and ``input_rms_hu`` (x_adv - x), ``output_rms_hu`` (f(x_adv) - f(x)).
        """
        dx = norm_difference_to_hu(self.result - self.image)
        dy = norm_difference_to_hu(self.output() - self.clean_output)
        return {"input_max_hu": float(dx.abs().max()), "input_rms_hu": float(dx.pow(2).mean().sqrt()),
                "output_rms_hu": float(dy.pow(2).mean().sqrt())}

    @torch.no_grad()
    def figure_arrays(self) -> dict[str, np.ndarray]:
        """Everything a figure needs, in HU, so that it can be drawn without the denoiser.

        Returns
        -------
        dict of numpy.ndarray
            ``x``, ``x_adv``, ``f_x``, ``f_x_adv`` ``(H, W)`` float32 in HU;
            ``history_input_change_hu`` (max) and ``history_output_change_hu`` (RMS) ``(T,)``.
        """
        def hu(t):
            return norm_to_hu(t.detach().cpu().double().numpy()).astype(np.float32)

        return {"x": hu(self.image[0, 0]), "x_adv": hu(self.result[0, 0]), "f_x": hu(self.clean_output[0, 0]),
                "f_x_adv": hu(self.output()[0, 0]),
                "history_input_change_hu": np.asarray(self.history["input_change_hu"], dtype=np.float64).ravel(),
                "history_output_change_hu": np.asarray(self.history["output_change_hu"], dtype=np.float64).ravel()}

    def _state(self) -> dict:
        return {"image": self.image.cpu(), "reference": self.reference.cpu(), "clean_output": self.clean_output.cpu(),
                "loss_name": self.loss_name, "eps_hu": self.eps_hu, "step_hu": self.step_hu, "seed": self.seed,
                "random_start": self.random_start}

    @classmethod
    def load(cls, path: str | Path, denoiser: nn.Module, device: str | None = None):
        """Restore an attack written by :meth:`save`; ``denoiser`` must reproduce the stored f(x).

        Raises
        ------
        CheckpointError
            A missing, damaged or foreign file.
        CTInvError
            The file holds another kind of run, or ``denoiser`` does not reproduce its f(x).
        """
        st = cls._read(path, cls.__name__)
        obj = cls(st["image"], denoiser, st["eps_hu"], st["step_hu"], st["loss_name"],
                  st["reference"] if st["loss_name"] == "target" else None, st["random_start"], st["seed"], device)
        cls._check_same_output(st["clean_output"], obj.clean_output, path)
        obj._restore(st, obj.lr)
        return obj


class FGSM(BIM):
    """The fast gradient sign method (FGSM): one signed-gradient step of size ``eps_hu``.

    A :class:`BIM` with one step of the full budget; after the optional random start the result is
    clipped to the eps-ball. :meth:`synthesize` runs the one step (a second call changes nothing).

    Parameters
    ----------
    image : torch.Tensor, shape (1, 1, H, W)
        The image x, in normalized units.
    denoiser : torch.nn.Module
        Maps ``(B, 1, H, W)`` to the same shape; frozen here.
    eps_hu : float
        The budget and the step, in HU (>= 0).
    loss : {"output", "target"}
        MSE of f(x_adv) against f(x), or against ``target``.
    target : torch.Tensor, shape (1, 1, H, W), optional
        The reference for ``loss="target"``, normalized.
    random_start : bool, optional
        Start from a random point in the eps-ball (default: for ``"output"``).
    seed : int
        Seed of the random start.
    device : str, optional
        Where to run; default the denoiser's device.

    Examples
    --------
    >>> import torch
    >>> from ctinv_utils import FGSM, hu_to_norm, load_denoiser
    >>> atk = FGSM(hu_to_norm(torch.full((1, 1, 48, 48), 40.0)), load_denoiser("gauss_ri"), eps_hu=5.0)
    >>> x_adv = atk.synthesize()
    >>> atk.iteration
    1
    """

    def __init__(self, image, denoiser: nn.Module, eps_hu: float = 10.0, loss: str = "output", target=None,
                 random_start: bool | None = None, seed: int = 0, device: str | None = None):
        super().__init__(image, denoiser, eps_hu, eps_hu, loss, target, random_start, seed, device)

    def synthesize(self, max_iter: int = 1, progress: bool = False, **kw):
        """Take the one FGSM step (``max_iter`` is ignored); returns x_adv ``(1, 1, H, W)`` normalized."""
        if self.iteration >= 1:
            return self.result
        return super().synthesize(1, progress=progress, **kw)
