"""Wasserstein GAN with gradient penalty (Gulrajani et al. 2017): the pieces WGAN-VGG and the
natural-invariance generator share.

Sign convention: the critic C scores real images high. The critic minimises
``-(E[C(real)] - E[C(fake)]) + lambda_gp * GP``; the generator minimises ``-E[C(fake)]``
(:func:`adversarial_loss`), i.e. it is pushed toward images the critic scores as real.
"""

from __future__ import annotations

import torch
from torch import nn

from .distributed import average_gradients


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``E[(||grad C(mix)||_2 - 1)^2]`` at random mixes of ``real`` and ``fake`` (one weight per
    sample, drawn on the CPU from ``generator``)."""
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real.device, real.dtype)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def critic_step(critic: nn.Module, optimizer: torch.optim.Optimizer, real: torch.Tensor, fake: torch.Tensor,
                lambda_gp: float = 10.0, generator: torch.Generator | None = None) -> dict[str, float]:
    """One critic update. Zeroes the critic's gradients first and detaches ``fake`` (both are easy
    to get wrong: gradients of the generator step would leak into the critic update, and the critic
    step would backpropagate into the generator). Returns the critic loss, the Wasserstein estimate
    ``E[C(real)] - E[C(fake)]`` and the gradient penalty. With several ranks the critic's gradients
    (penalty included) are averaged over the ranks before the step (one process: nothing happens)."""
    optimizer.zero_grad(set_to_none=True)
    fake = fake.detach()
    wdist = critic(real).mean() - critic(fake).mean()
    gp = gradient_penalty(critic, real, fake, generator)
    loss = -wdist + lambda_gp * gp
    loss.backward()
    average_gradients(critic, batch=len(real))
    optimizer.step()
    return {"critic": loss.item(), "wasserstein": wdist.item(), "gradient_penalty": gp.item()}


def adversarial_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """The generator's WGAN loss ``-E[C(fake)]`` (differentiable in ``fake``)."""
    return -critic(fake).mean()
