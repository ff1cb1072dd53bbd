"""The denoisers' training methods (after ldct-benchmark: each method keeps its networks,
optimizers and step together) and their settings.

* :class:`CNN10Method`: CNN-10 with the L2 loss (Chen et al. 2017).
* :class:`WGANVGGMethod`: WGAN-VGG (Yang et al. 2018), a Wasserstein critic with gradient penalty
  plus a VGG19 perceptual loss; optionally an L2 warm start of the generator.

Both are method objects for :class:`~ctinv_utils.training.loop.Trainer`; :func:`denoiser_trainer`
wires one to patient-balanced patches of a data set. Under ``torchrun`` they train data-parallel
(:mod:`~ctinv_utils.training.distributed`): every update averages its gradients over the ranks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import settings
from ..settings import check_device
from ..data.dataset import PairedCTData
from ..data.sampling import PatchSampler
from ..models import WGANCritic, build_denoiser
from ..models.vgg import ct_to_vgg_input, load_vgg
from ..speed import channels_last
from .distributed import average_gradients, rank_seed, ranks
from .gan import adversarial_loss, critic_step
from .loop import Trainer, TrainingSettingsError, check_learning_rate, check_positive_int, seeded_init

VGG_WEIGHT_CHOICES = ("imagenet", "imagenet_or_random")


@dataclass
class TrainConfig:
    """The settings of a denoiser training (the fields every method has).

    ``TrainConfig.from_dict({"method": ..., ...})`` returns the method's own config class
    (:data:`CONFIGS`: ``"cnn10"`` this one, ``"wganvgg"`` ``WGANVGGConfig`` with the GAN's settings).
    Every value is checked when the config is made.

    Parameters
    ----------
    method : str
        ``"cnn10"`` (L2 loss) or ``"wganvgg"``; Gauss+RI needs no training.
    iterations : int
        Training iterations (>= 1).
    batch_size : int
        Patches per iteration (>= 1).
    patch_size : int
        Side of the training patches, in pixels (>= 8).
    lr : float
        Adam's learning rate (> 0).
    adam_betas : tuple of float
        Adam's (beta1, beta2), each in [0, 1).
    checkpoint_every : int
        Iterations between checkpoints.
    seed : int
        Seeds the networks' initialisation and the patch draws (>= 0).

    Raises
    ------
    TrainingSettingsError
        An unknown method, key or a value out of range (a ``SettingsError``, also a ``ValueError``).

    Examples
    --------
    >>> from ctinv_utils import TrainConfig
    >>> cfg = TrainConfig.from_dict({"method": "cnn10", "iterations": 200, "lr": 1e-3})
    >>> cfg.to_dict()["batch_size"]
    16
    """

    method: str = "cnn10"
    iterations: int = 1000
    batch_size: int = 16
    patch_size: int = 64
    lr: float = 1e-4
    adam_betas: tuple = (0.9, 0.999)
    checkpoint_every: int = 250
    seed: int = 0

    def __post_init__(self):
        if self.method not in CONFIGS or not isinstance(self, CONFIGS[self.method]):
            raise TrainingSettingsError(f"method {self.method!r} does not fit {type(self).__name__}; use "
                                        "TrainConfig.from_dict({'method': ..., ...}) "
                                        f"(methods: {sorted(CONFIGS)})")
        for name in ("iterations", "batch_size", "checkpoint_every"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("patch_size", self.patch_size, 8)
        check_positive_int("seed", self.seed, 0)
        check_learning_rate("lr", self.lr)
        self.adam_betas = _check_betas("adam_betas", self.adam_betas)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The config of ``d["method"]`` from a dict of settings (e.g. a preset's ``training`` entry).

        Raises
        ------
        TrainingSettingsError
            ``d`` not a mapping, or an unknown method.
        SettingsError
            An unknown key, a wrong type or a value out of range.
        """
        if not isinstance(d, dict):
            raise TrainingSettingsError(f"training settings must be a mapping of names to values, got "
                                        f"{type(d).__name__} {d!r}")
        method = d.get("method")
        if method not in CONFIGS:
            raise TrainingSettingsError(f"unknown training method {method!r}; choose one of {sorted(CONFIGS)}"
                                        " (Gauss+RI needs no training)")
        return settings.from_dict(CONFIGS[method], d, f"{method} training settings")

    def to_dict(self) -> dict:
        """The settings as a JSON-able dict (tuples as lists); ``from_dict`` reads it back."""
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


@dataclass
class WGANVGGConfig(TrainConfig):
    """WGAN-VGG's settings. ``vgg_weights``: 'imagenet' (never falls back) or 'imagenet_or_random'
    (a seeded random VGG when the ImageNet file is unavailable; quick preset)."""

    method: str = "wganvgg"
    lambda_gp: float = 10.0
    lambda_perceptual: float = 0.1
    critic_steps: int = 1
    vgg_layer: str = "relu5_4"      # Yang et al.: VGG19 conv5_4 (after its ReLU)
    vgg_weights: str = "imagenet"
    pretrain_iterations: int = 0    # generator warm start with the L2 loss before the GAN phase
    gan_lr: float | None = None     # GAN-phase learning rate of the generator (None: lr)
    critic_lr: float | None = None  # learning rate of the critic (None: gan_lr)
    gan_betas: tuple | None = None  # GAN-phase Adam betas (None: adam_betas); Yang et al.: 1e-5, (0.5, 0.9)
    critic_warmup: int = 0          # critic-only iterations when the GAN phase starts

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("critic_steps", self.critic_steps)
        check_positive_int("pretrain_iterations", self.pretrain_iterations, 0)
        check_positive_int("critic_warmup", self.critic_warmup, 0)
        for name in ("gan_lr", "critic_lr"):
            check_learning_rate(name, getattr(self, name), optional=True)
        for name in ("lambda_gp", "lambda_perceptual"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise TrainingSettingsError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.gan_betas is not None:
            self.gan_betas = _check_betas("gan_betas", self.gan_betas)
        if self.vgg_weights not in VGG_WEIGHT_CHOICES:
            raise TrainingSettingsError(f"vgg_weights must be one of {VGG_WEIGHT_CHOICES}, not {self.vgg_weights!r}")
        if self.iterations <= self.pretrain_iterations + self.critic_warmup:
            # the generator would never get an adversarial update: a WGAN-VGG in name only
            raise TrainingSettingsError(
                f"iterations ({self.iterations}) must exceed pretrain_iterations + critic_warmup "
                f"({self.pretrain_iterations} + {self.critic_warmup}), or WGAN-VGG never trains its generator "
                "adversarially; raise iterations or lower pretrain_iterations")


CONFIGS: dict[str, type[TrainConfig]] = {"cnn10": TrainConfig, "wganvgg": WGANVGGConfig}


def _check_betas(name: str, betas) -> tuple:
    """Adam's (beta1, beta2), each in [0, 1)."""
    ok = (isinstance(betas, (list, tuple)) and len(betas) == 2
          and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas))
    if not ok:
        raise TrainingSettingsError(f"{name} must be two numbers in [0, 1) (Adam's beta1, beta2), got {betas!r}")
    return tuple(float(b) for b in betas)


class CNN10Method:
    """CNN-10 with the L2 loss."""

    name = "cnn10"

    def __init__(self, cfg: TrainConfig, device: str):
        self.config = cfg.to_dict()
        with seeded_init(cfg.seed) as rng:
            self.model = channels_last(build_denoiser("cnn10").to(device))
        self.generator = rng.generator
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=tuple(cfg.adam_betas))
        self.notes: dict = _parallel_notes()

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.opt}

    def step(self, next_batch, iteration: int) -> dict[str, float]:
        low, full = next_batch()
        self.opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(self.model(low), full)
        loss.backward()
        average_gradients(self.model, batch=len(low))
        self.opt.step()
        return {"loss": loss.item()}


class WGANVGGMethod:
    """WGAN-VGG: Wasserstein critic with gradient penalty (:mod:`~ctinv_utils.training.gan`) plus a
    VGG19 perceptual loss on the generator."""

    name = "wganvgg"

    def __init__(self, cfg: WGANVGGConfig, device: str):
        self.cfg = cfg
        self.config = cfg.to_dict()
        with seeded_init(cfg.seed) as rng:
            self.model = channels_last(build_denoiser("wganvgg").to(device))
            self.critic = channels_last(WGANCritic(cfg.patch_size).to(device))
            # built inside the seeded block: its default init draws from the stream, like the networks'
            self.vgg = channels_last(load_vgg("vgg19", allow_random=cfg.vgg_weights == "imagenet_or_random",
                                              seed=cfg.seed, device=device))
        self.generator = rng.generator
        self.gan_lr = cfg.lr if cfg.gan_lr is None else cfg.gan_lr
        self.gan_betas = tuple(cfg.adam_betas if cfg.gan_betas is None else cfg.gan_betas)
        self.separate_gan_optimizer = cfg.gan_lr is not None or cfg.gan_betas is not None
        lr, betas = (cfg.lr, tuple(cfg.adam_betas)) if cfg.pretrain_iterations else (self.gan_lr, self.gan_betas)
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=lr, betas=betas)
        critic_lr = self.gan_lr if cfg.critic_lr is None else cfg.critic_lr
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=critic_lr, betas=self.gan_betas)
        self.notes = {"vgg": self.vgg.weights_source, **_parallel_notes()}

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "critic": self.critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.opt_g, "critic": self.opt_d}

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.vgg(ct_to_vgg_input(x), layers=(self.cfg.vgg_layer,))[self.cfg.vgg_layer]

    def step(self, next_batch, iteration: int) -> dict[str, float]:
        if iteration < self.cfg.pretrain_iterations:  # L2 warm start (as SRGAN pretrains SRResNet)
            low, full = next_batch()
            self.opt_g.zero_grad(set_to_none=True)
            mse = F.mse_loss(self.model(low), full)
            mse.backward()
            average_gradients(self.model, batch=len(low))
            self.opt_g.step()
            return {"mse": mse.item()}
        if iteration == self.cfg.pretrain_iterations > 0 and self.separate_gan_optimizer:
            # the GAN phase gets a fresh optimizer with its own settings: Adam's moments of the L2 phase
            # are calibrated to gradients hundreds of times smaller than the adversarial ones
            self.opt_g = torch.optim.Adam(self.model.parameters(), lr=self.gan_lr, betas=self.gan_betas)
        gan_iteration = iteration - self.cfg.pretrain_iterations
        for _ in range(self.cfg.critic_steps):
            low, full = next_batch()
            with torch.no_grad():
                fake = self.model(low)
            critic = critic_step(self.critic, self.opt_d, full, fake, self.cfg.lambda_gp, self.generator)
        if gan_iteration < self.cfg.critic_warmup:  # the critic learns before it steers the generator
            return {**critic, "mse": F.mse_loss(fake, full).item()}
        self.opt_g.zero_grad(set_to_none=True)
        fake = self.model(low)
        adv = adversarial_loss(self.critic, fake)
        perc = F.mse_loss(self._features(fake), self._features(full))
        g_loss = adv + self.cfg.lambda_perceptual * perc
        g_loss.backward()  # the critic's parameters get gradients too: not stepped, zeroed by its next step
        average_gradients(self.model, batch=len(low))
        self.opt_g.step()
        return {"loss": g_loss.item(), **critic, "perceptual": perc.item(),
                "mse": F.mse_loss(fake.detach(), full).item()}


METHODS = {"cnn10": CNN10Method, "wganvgg": WGANVGGMethod}


def _parallel_notes() -> dict:
    """What a trained model's record says about data parallelism (nothing in one process)."""
    r = ranks()
    return {"data_parallel_ranks": r.world} if r.active else {}


def build_method(cfg: TrainConfig, device: str = "cpu"):
    """The method object of ``cfg`` (networks initialised from ``cfg.seed``). ``device`` is checked
    first: ``"cuda"`` without a GPU is one :class:`~ctinv_utils.settings.DeviceError`."""
    device = check_device(device, "training device")
    if cfg.method not in METHODS:
        raise TrainingSettingsError(f"unknown training method {cfg.method!r}; choose one of {sorted(METHODS)}")
    return METHODS[cfg.method](cfg, device)


def denoiser_trainer(cfg: TrainConfig, data: PairedCTData, checkpoint_path: str | Path,
                     device: str = "cpu") -> Trainer:
    """A :class:`Trainer` of the denoiser ``cfg`` on patient-balanced paired patches of ``data``."""
    if not isinstance(cfg, TrainConfig):
        cfg = TrainConfig.from_dict(cfg)
    else:  # a config changed after it was made (cfg.iterations = 0) is checked again
        type(cfg).__post_init__(cfg)
    device = check_device(device, "training device")
    # several ranks: each its own patient-balanced stream (one process: seed=cfg.seed)
    return Trainer(build_method(cfg, device), PatchSampler(data, cfg.patch_size, seed=rank_seed(cfg.seed)),
                   checkpoint_path, cfg.iterations, cfg.batch_size, cfg.checkpoint_every, device)
