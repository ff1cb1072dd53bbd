"""One training loop for the learned denoisers, with atomic checkpoints and exact resume.

Each method (``CNN10Method``, ``WGANVGGMethod``) owns its networks, optimizers and ``step``; the
loop (``Trainer.fit``) draws patient-balanced patch batches, shows a tqdm bar with the current
losses, checkpoints every ``checkpoint_every`` iterations (networks, optimizers, torch and sampler
RNG states, history; written to a temporary file, then renamed) and resumes from the last
checkpoint, ending on the same weights as an uninterrupted run with the same seed (CPU).
Finished models are cached by config hash, so re-running a notebook loads instead of retraining.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import atomic
from ..data.dataset import PairedCTData
from ..data.sampling import PatchSampler
from ..errors import CTInvError
from ..models import WGANCritic, build_denoiser, freeze, load_denoiser
from ..models.vgg import ct_to_vgg_input, load_vgg
from ..paths import cache_dir
from ..progress import progress_bar
from ..provenance import config_hash, provenance


class TrainingDiverged(CTInvError):
    """A loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Settings of one training run. ``vgg_weights``: 'imagenet' (never falls back) or
    'imagenet_or_random' (a seeded random VGG when the ImageNet file is unavailable; quick preset)."""

    method: str
    iterations: int = 1000
    batch_size: int = 16
    patch_size: int = 64
    lr: float = 1e-4
    adam_betas: tuple = (0.9, 0.999)
    checkpoint_every: int = 250
    seed: int = 0
    # WGAN-VGG only
    lambda_gp: float = 10.0
    lambda_perceptual: float = 0.1
    critic_steps: int = 1
    vgg_layer: str = "relu5_4"      # Yang et al.: VGG19 conv5_4 (after its ReLU)
    vgg_weights: str = "imagenet"
    pretrain_iterations: int = 0    # generator warm start with the L2 loss before the GAN phase

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}")
        if "adam_betas" in d:
            d["adam_betas"] = tuple(d["adam_betas"])
        return cls(**d)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d


# ---------------------------------------------------------------------------------------------
class CNN10Method:
    """CNN-10 with the L2 loss."""

    def __init__(self, cfg: TrainConfig, device: str):
        self.model = build_denoiser("cnn10").to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=tuple(cfg.adam_betas))
        self.notes: dict = {}

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.opt}

    def step(self, next_batch, iteration: int) -> dict[str, float]:
        low, full = next_batch()
        self.opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(self.model(low), full)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}


class WGANVGGMethod:
    """WGAN-VGG: Wasserstein critic with gradient penalty plus a VGG19 perceptual loss.

    Each critic step zeroes the critic's gradients and sees the generator output detached (both
    are easy to get wrong: gradients from the generator step would otherwise leak into the critic
    update, and the critic step would backpropagate into the generator)."""

    def __init__(self, cfg: TrainConfig, device: str):
        self.cfg = cfg
        self.model = build_denoiser("wganvgg").to(device)
        self.critic = WGANCritic(cfg.patch_size).to(device)
        betas = tuple(cfg.adam_betas)
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, betas=betas)
        if cfg.vgg_weights not in ("imagenet", "imagenet_or_random"):
            raise ValueError(f"vgg_weights must be 'imagenet' or 'imagenet_or_random', not {cfg.vgg_weights!r}")
        self.vgg = load_vgg("vgg19", allow_random=cfg.vgg_weights == "imagenet_or_random", seed=cfg.seed,
                            device=device)
        self.notes = {"vgg": self.vgg.weights_source}

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "critic": self.critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.opt_g, "critic": self.opt_d}

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.vgg(ct_to_vgg_input(x), layers=(self.cfg.vgg_layer,))[self.cfg.vgg_layer]

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        grad, = torch.autograd.grad(self.critic(mix).sum(), mix, create_graph=True)
        return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    def step(self, next_batch, iteration: int) -> dict[str, float]:
        if iteration < self.cfg.pretrain_iterations:  # L2 warm start (as SRGAN pretrains SRResNet)
            low, full = next_batch()
            self.opt_g.zero_grad(set_to_none=True)
            mse = F.mse_loss(self.model(low), full)
            mse.backward()
            self.opt_g.step()
            return {"mse": mse.item()}
        for _ in range(self.cfg.critic_steps):
            low, full = next_batch()
            self.opt_d.zero_grad(set_to_none=True)
            with torch.no_grad():
                fake = self.model(low)
            wdist = self.critic(full).mean() - self.critic(fake).mean()
            gp = self._gradient_penalty(full, fake)
            d_loss = -wdist + self.cfg.lambda_gp * gp
            d_loss.backward()
            self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        fake = self.model(low)
        adv = -self.critic(fake).mean()
        perc = F.mse_loss(self._features(fake), self._features(full))
        g_loss = adv + self.cfg.lambda_perceptual * perc
        g_loss.backward()
        self.opt_g.step()
        return {"loss": g_loss.item(), "critic": d_loss.item(), "wasserstein": wdist.item(),
                "perceptual": perc.item(), "mse": F.mse_loss(fake.detach(), full).item()}


METHODS = {"cnn10": CNN10Method, "wganvgg": WGANVGGMethod}


# ---------------------------------------------------------------------------------------------
@dataclass
class Trainer:
    """Runs a method for ``cfg.iterations`` on ``data``; resumes from ``checkpoint_path``."""

    cfg: TrainConfig
    data: PairedCTData
    checkpoint_path: Path
    device: str = "cpu"
    history: dict = field(default_factory=dict)
    iteration: int = 0

    def __post_init__(self):
        if self.cfg.method not in METHODS:
            raise ValueError(f"unknown training method {self.cfg.method!r}; choose one of {sorted(METHODS)}"
                             " (Gauss+RI needs no training)")
        self.checkpoint_path = Path(self.checkpoint_path)
        torch.manual_seed(self.cfg.seed)
        self.method = METHODS[self.cfg.method](self.cfg, self.device)
        self.sampler = PatchSampler(self.data, self.cfg.patch_size, seed=self.cfg.seed)
        if self.checkpoint_path.is_file():
            self._load_checkpoint()

    def _next_batch(self):
        low, full = self.sampler.next_batch(self.cfg.batch_size)
        return low.to(self.device), full.to(self.device)

    def _save_checkpoint(self) -> None:
        atomic.torch_save(self.checkpoint_path, {
            "iteration": self.iteration,
            "modules": {k: m.state_dict() for k, m in self.method.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.method.optimizers().items()},
            "torch_rng": torch.get_rng_state(),
            "sampler": json.dumps(self.sampler.state_dict()),  # PCG64 states hold 128-bit ints
            "history": self.history,
            "config": self.cfg.to_dict(),
        })

    def _load_checkpoint(self) -> None:
        ck = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        if ck["config"] != self.cfg.to_dict():
            raise CTInvError(f"checkpoint {self.checkpoint_path} was written with another config; "
                             "delete it to start over")
        for k, m in self.method.modules().items():
            m.load_state_dict(ck["modules"][k])
        for k, o in self.method.optimizers().items():
            o.load_state_dict(ck["optimizers"][k])
        torch.set_rng_state(ck["torch_rng"])
        self.sampler.load_state_dict(json.loads(ck["sampler"]))
        self.history, self.iteration = ck["history"], int(ck["iteration"])

    def fit(self, progress: bool = True) -> dict:
        """Train up to ``cfg.iterations``; returns the loss history ``{name: [float, ...]}``."""
        last_good = self.iteration
        bar = progress_bar(total=self.cfg.iterations, initial=self.iteration, desc=f"training {self.cfg.method}",
                   disable=not progress, mininterval=1.0)
        t0 = time.perf_counter()
        for m in self.method.modules().values():
            m.train()
        while self.iteration < self.cfg.iterations:
            losses = self.method.step(self._next_batch, self.iteration)
            bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
            if bad:
                raise TrainingDiverged(
                    f"{self.cfg.method}: {bad} at iteration {self.iteration + 1}; the last good checkpoint "
                    f"(iteration {last_good}) is kept at {self.checkpoint_path}; lower the learning rate")
            for k, v in losses.items():
                self.history.setdefault(k, []).append(v)
            self.iteration += 1
            bar.update(1)
            if self.iteration % 10 == 0:
                bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
            if self.iteration % self.cfg.checkpoint_every == 0 or self.iteration == self.cfg.iterations:
                self._save_checkpoint()
                last_good = self.iteration
        bar.close()
        self.seconds = time.perf_counter() - t0
        return self.history

    def denoiser(self) -> nn.Module:
        return self.method.model


def model_cache_path(cfg: TrainConfig, data_key: str) -> Path:
    """Where the finished model of ``cfg`` trained on the data set ``data_key`` is cached."""
    return cache_dir() / "models" / f"{cfg.method}-{config_hash({'train': cfg.to_dict(), 'data': data_key})}.pt"


def train_or_load(cfg: TrainConfig, data: PairedCTData, data_key: str, device: str = "cpu",
                  progress: bool = True) -> tuple[nn.Module, dict, Path]:
    """The frozen denoiser for ``cfg``: loaded from the model cache, else trained (resuming an
    interrupted run) and cached. Returns (model, record with history and provenance, path)."""
    final = model_cache_path(cfg, data_key)
    if final.is_file():
        rec = torch.load(final, map_location="cpu", weights_only=True)
        return load_denoiser(cfg.method, final, device), rec, final
    trainer = Trainer(cfg, data, final.with_suffix(".ckpt"), device)
    history = trainer.fit(progress)
    rec = {"model": {k: v.detach().cpu() for k, v in trainer.denoiser().state_dict().items()},
           "history": history, "config": cfg.to_dict(), "data_key": data_key,
           "notes": trainer.method.notes,
           "provenance": json.dumps(provenance(seed=cfg.seed, config=cfg.to_dict(), device=device,
                                               train_seconds=round(trainer.seconds, 1)))}
    atomic.torch_save(final, rec)
    final.with_suffix(".ckpt").unlink(missing_ok=True)
    return freeze(trainer.denoiser()), rec, final
