"""Natural invariances (the talk's second half): a conditional generator g(z|x) trained with a critic,

    argmin_phi  d(f(x), f(g(z|x))) - alpha * d(x, g(z|x)) + beta * (-E[C(g(z|x))]),

so that one forward pass gives a new invariance of x that looks like a real low-dose image.

The talk writes ``+ beta * C(g(z|x))`` for a critic that scores generated images high; our
Wasserstein critic scores *real* low-dose patches high (:mod:`~ctinv_utils.training.gan`), hence
``- beta * E[C(g)]``. The generator
(:class:`~ctinv_utils.models.natural_generator.ConditionalGenerator`) works coarse to fine, outputs
``x + delta`` and is fully convolutional: trained on 80 px patches, applied to any size divisible by
16. Training runs through :class:`~ctinv_utils.training.loop.Trainer` (checkpoints, exact resume,
data-parallel under ``torchrun``); the denoiser stays frozen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import secrets
import shutil
import socket
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import atomic, settings
from ..errors import CTInvError, UntrainedError
from ..models.checkpoints import CheckpointError, load_file
from ..settings import check_device
from ..models import WGANCritic, freeze, module_device
from ..models.natural_generator import ConditionalGenerator
from ..provenance import config_hash, versions
from ..speed import channels_last, tune_allocator
from ..units import PHYSICAL_HU_RANGE, hu_to_norm
from ..training import distributed
from ..training.distributed import average_gradients, rank_seed
from ..training.gan import adversarial_loss, critic_step
from ..training.loop import Trainer, seeded_init
from .base import check_denoiser, check_image
from .distances import DISTANCES, get_distance


# Part of every cache key: raised when a change of the training code makes earlier cached generators
# wrong (2: generators cached by a build whose generator step ran without gradients are not reused;
# 3: the (1-SSIM)/2 distance became banded-matrix filtering, equal to pytorch-msssim's to 1e-6, and
# 400 adversarial updates carry that rounding into a different generator: a cache trained before
# gave critic scores of -6.9 where the current code gives -5.3 from the same seed and data;
# 4: (1-SSIM)/2 averages over every pixel, reflect-padded, instead of pytorch-msssim's valid region).
TRAINER_VERSION = 4


@dataclass
class NaturalConfig:
    """Everything that determines a natural-invariance generator (its hash keys the cache)."""

    distance: str = "mse"
    alpha: float = 0.05
    beta: float = 0.01
    patch_size: int = 80
    seed: int = 0
    lr: float = 2e-4
    betas: tuple = (0.5, 0.9)
    critic_lr: float = 2e-4
    critic_steps: int = 1
    lambda_gp: float = 10.0
    channels: tuple = (64, 64, 48, 32, 32)
    z_channels: int = 4
    critic_width: float = 0.25
    margin: int = 8                 # px left out of both distances at the patch border (see _NaturalMethod)
    hu_range: tuple | None = PHYSICAL_HU_RANGE  # g(z|x) is projected (clamped) onto it; None: unconstrained

    def __post_init__(self):
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; choose one of {', '.join(DISTANCES)}")
        for name in ("alpha", "beta", "lr", "critic_lr", "lambda_gp", "critic_width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.lr <= 0 or self.critic_lr <= 0:
            raise ValueError("lr and critic_lr must be > 0")
        self.betas, self.channels = tuple(self.betas), tuple(self.channels)
        if self.hu_range is not None:
            lo, hi = (float(v) for v in self.hu_range) if len(self.hu_range) == 2 else (math.nan, math.nan)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"hu_range must be None or (low, high) in HU with low < high, got {self.hu_range!r}")
            self.hu_range = (lo, hi)
        if isinstance(self.margin, bool) or not isinstance(self.margin, int) or self.margin < 0:
            raise ValueError(f"margin must be an integer >= 0 (px left out of both distances at the patch border), "
                             f"got {self.margin!r}")
        factor = 2 ** (len(self.channels) - 1)
        smallest = min_patch_size(len(self.channels), self.margin)
        if self.patch_size % factor or self.patch_size < smallest:
            raise ValueError(
                f"patch_size {self.patch_size} does not work: with {len(self.channels)} generator stages it must be a "
                f"multiple of {factor}, and at least {smallest} (more than 2 x margin = {2 * self.margin} px, and at "
                f"least {critic_min_patch()} px for the critic's six 3x3 convolutions); use e.g. "
                f"{', '.join(str(v) for v in _examples(smallest, factor))}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def critic_min_patch() -> int:
    """The smallest patch (px) the critic's convolutions leave at least one pixel of."""
    size = 1
    while True:
        n = size
        for _, _, stride in WGANCritic.CHANNELS_STRIDES:
            n = (n - 3) // stride + 1
        if n >= 1:
            return size
        size += 1


def min_patch_size(stages: int, margin: int) -> int:
    """The smallest ``patch_size`` for a generator of ``stages`` scales and a distance ``margin``: a
    multiple of ``2^(stages-1)``, at least twice that, above ``2 * margin`` and large enough for the
    critic."""
    factor = 2 ** (stages - 1)
    need = max(2 * factor, 2 * margin + 1, critic_min_patch())
    return -(-need // factor) * factor


def _examples(smallest: int, factor: int) -> list[int]:
    """Three patch sizes that work: the talk's 80 px and its neighbours where they do, else the smallest."""
    good = [v for v in (80, 96, 128) if v >= smallest and v % factor == 0]
    return good or [smallest, smallest + factor, smallest + 2 * factor]


class TensorPatches:
    """A training source of the user's own low-dose patches ``(N, 1, P, P)`` (network units): random
    batches drawn with a seeded generator, resumable like the patch sampler."""

    def __init__(self, patches: torch.Tensor, seed: int = 0):
        patches = torch.as_tensor(patches, dtype=torch.float32)
        if patches.ndim != 4 or patches.shape[1] != 1 or patches.shape[-1] != patches.shape[-2]:
            raise ValueError(f"patches must have shape (N, 1, P, P), got {tuple(patches.shape)}")
        if not torch.isfinite(patches).all():
            raise ValueError("patches contain NaN or inf values")
        self.patches, self.patch_size = patches, int(patches.shape[-1])
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.patches)

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor]:
        return (self.patches[torch.from_numpy(self.rng.integers(0, len(self.patches), batch_size))],)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def _interior(margin: int):
    """Index of the interior of ``(B, C, H, W)`` tensors without ``margin`` px at each border."""
    cut = slice(margin, -margin) if margin else slice(None)
    return (slice(None), slice(None), cut, cut)


class _NaturalMethod:
    """The training method object of a :class:`NaturalInvariance` (see ``training.loop``)."""

    name = "natural invariance"

    def __init__(self, nat: "NaturalInvariance"):
        self.nat = nat
        self.config = nat.config.to_dict()
        self.generator = nat.rng
        cfg = nat.config
        self.opt_g = torch.optim.Adam(nat.net.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.opt_c = torch.optim.Adam(nat.critic.parameters(), lr=cfg.critic_lr, betas=cfg.betas)

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.nat.net, "critic": self.nat.critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "critic": self.opt_c}

    def step(self, next_batch, iteration: int) -> dict[str, float]:
        nat, cfg = self.nat, self.nat.config
        for _ in range(cfg.critic_steps):
            x = next_batch()[0]
            with torch.no_grad():
                fake = nat.generate(x, nat.net.noise(len(x), *x.shape[-2:], self.generator, x.device))
            critic = critic_step(nat.critic, self.opt_c, x, fake, cfg.lambda_gp, self.generator)
        self.opt_g.zero_grad(set_to_none=True)
        g = nat.generate(x, nat.net.noise(len(x), *x.shape[-2:], self.generator, x.device))
        with torch.no_grad():
            f_x = nat.denoiser(x)
        # Both distances leave out a margin at the patch border: there the denoiser sees its own
        # padding, which it never sees inside a whole slice, and the generator would exploit it.
        # The critic sees the whole patch, so the margin stays natural too.
        inner = _interior(cfg.margin)
        d_out = nat.distance(f_x[inner], nat.denoiser(g)[inner]).mean()
        d_in = nat.distance(x[inner], g[inner]).mean()
        adv = adversarial_loss(nat.critic, g)
        loss = d_out - cfg.alpha * d_in + cfg.beta * adv
        loss.backward()  # the critic's parameters get gradients too: not stepped, zeroed by its next step
        average_gradients(nat.net, batch=len(x))
        self.opt_g.step()
        return {"loss": loss.item(), "output_distance": d_out.item(), "input_distance": d_in.item(),
                "adversarial": adv.item(), **critic}


#: Where a training without ``checkpoint=`` keeps its checkpoints (under the cache's ``natural/``).
TRAINING_DIR = "training"


class _TrainingFolder:
    """A private folder for the checkpoints of one training without ``checkpoint=``:
    ``<cache>/natural/training/<host>-<pid>-<random>``, removed when this object is collected or the
    process exits. Creating one first removes the folders of dead processes on this host (a killed
    training leaves its folder behind; another host's folders are left to that host)."""

    def __init__(self):
        from ..paths import cache_dir

        parent = cache_dir() / "natural" / TRAINING_DIR
        remove_stale_training_folders(parent)
        self.path = parent / f"{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.path.mkdir(parents=True)
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    @property
    def name(self) -> str:
        return str(self.path)

    def cleanup(self) -> None:
        self._finalizer()


def _host() -> str:
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


def remove_stale_training_folders(parent: str | Path) -> list[Path]:
    """Remove the training folders under ``parent`` whose process (on this host) is gone; returns them."""
    parent, removed, host = Path(parent), [], _host()
    for folder in sorted(parent.iterdir()) if parent.is_dir() else []:
        owner, _, pid = folder.name.rpartition("-")[0].rpartition("-")  # <host>-<pid>-<random>
        if owner != host or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


class NaturalInvariance:
    """A conditional generator g(z|x) of natural invariances of a denoiser, trained with a critic.

    Minimises ``d(f(x), f(g)) - alpha * d(x, g) - beta * E[C(g)]`` on low-dose patches
    (:meth:`train`); then one forward pass draws new invariances of a slice (:meth:`sample`).

    ``history`` holds the loss terms per training iteration; :meth:`save` and :meth:`load` keep the
    generator, its critic and their optimizers on disk.
    """

    PROBE_SEED = 12345

    def __init__(self, denoiser: nn.Module, distance: str = "mse", alpha: float = 0.05, beta: float = 0.01,
                 patch_size: int = 80, seed: int = 0, device: str | None = None,
                 distance_module: nn.Module | None = None, vgg_allow_random: bool = False, **settings_):
        """
        Parameters
        ----------
        denoiser : torch.nn.Module
            Maps ``(B, 1, H, W)`` normalized images to the same shape; frozen here.
        distance : {"mse", "dssim", "vgg"}
            The distance of both terms (:func:`~ctinv_utils.synthesis.distances.get_distance`).
        alpha, beta : float
            Weights of the input term and of the critic term (>= 0).
        patch_size : int
            Side of the training patches in px (a multiple of 16 with the default 5 stages; the talk: 80).
        seed : int
            Seeds the networks' initialisation and the training draws.
        device : str, optional
            Where to run; default the denoiser's device.
        distance_module : torch.nn.Module, optional
            A ready distance module to use instead of building ``distance``.
        vgg_allow_random : bool
            For ``"vgg"`` without ImageNet weights: a seeded random VGG16 instead of an error.
        **settings_
            Further fields of ``NaturalConfig``: ``lr``, ``betas``, ``critic_lr``, ``critic_steps``,
            ``lambda_gp``, ``channels``, ``z_channels``, ``critic_width``, ``margin``, ``hu_range``.

        Raises
        ------
        ValueError, SettingsError
            An unknown distance or setting, a value out of range, a patch size that does not fit.

        Examples
        --------
        >>> import torch
        >>> from ctinv_utils import NaturalInvariance, hu_to_norm, load_denoiser
        >>> nat = NaturalInvariance(load_denoiser("gauss_ri"), "mse", alpha=0.05, beta=0.01, patch_size=48,
        ...                         channels=(16, 16, 16))
        >>> patches = hu_to_norm(40 + 20 * torch.randn(32, 1, 48, 48))   # low-dose patches, normalized
        >>> history = nat.train(patches, iterations=3, batch_size=4, progress=False)
        >>> nat.sample(hu_to_norm(torch.full((1, 1, 64, 64), 40.0)), n=3).shape
        torch.Size([3, 1, 64, 64])
        """
        tune_allocator()
        self.config = settings.from_dict(NaturalConfig, dict(distance=distance, alpha=alpha, beta=beta,
                                                              patch_size=patch_size, seed=seed, **settings_),
                                         "natural-invariance settings")
        self.device = check_device(device, "NaturalInvariance device") if device else module_device(denoiser)
        self.denoiser = freeze(denoiser)
        cfg = self.config
        self.distance = (distance_module or get_distance(cfg.distance, vgg_allow_random=vgg_allow_random,
                                                         seed=cfg.seed)).to(self.device)
        with seeded_init(cfg.seed) as holder:
            self.net = channels_last(ConditionalGenerator(cfg.channels, cfg.z_channels).to(self.device))
            self.critic = channels_last(WGANCritic(cfg.patch_size, cfg.critic_width, hidden=256).to(self.device))
        self.rng = holder.generator
        probe = torch.randn(1, 1, cfg.patch_size, cfg.patch_size, generator=torch.Generator().manual_seed(self.PROBE_SEED))
        self.probe = (0.5 + 0.5 * probe).to(self.device)  # a fixed input whose f() identifies the denoiser
        self.probe_output = check_denoiser(self.denoiser, self.probe)
        self.method = _NaturalMethod(self)
        self.history: dict[str, list[float]] = {}
        self.iteration = 0
        self._trainer: Trainer | None = None

    # -- training ------------------------------------------------------------------------------
    def _source(self, source, batch_size: int):
        from ..data.dataset import PairedCTData
        from ..data.sampling import PatchSampler

        # several ranks: each draws its own patches (one process: the config's seed)
        if isinstance(source, PairedCTData):
            return PatchSampler(source, self.config.patch_size, seed=rank_seed(self.config.seed))
        if isinstance(source, (torch.Tensor, np.ndarray)):
            src = TensorPatches(source, rank_seed(self.config.seed))
            if src.patch_size != self.config.patch_size:
                raise ValueError(f"patches are {src.patch_size} px, the generator trains on {self.config.patch_size} px "
                                 "patches; pass patch_size= to NaturalInvariance")
            if len(src) < batch_size:
                raise ValueError(f"{len(src)} patches are fewer than one batch ({batch_size}); give more patches "
                                 "or a smaller batch_size")
            return src
        raise TypeError(f"source must be a PairedCTData or a tensor of low-dose patches (N, 1, P, P), "
                        f"got {type(source).__name__}")

    def train(self, source, iterations: int, batch_size: int = 16, checkpoint: str | Path | None = None,
              checkpoint_every: int = 100, progress: bool = True) -> dict:
        """Train the generator and the critic up to ``iterations`` in all (calling again continues).

        Parameters
        ----------
        source : PairedCTData or torch.Tensor
            Low-dose patches of the patient-balanced sampler of this data, or the user's own
            low-dose patches ``(N, 1, P, P)`` in normalized units (``P`` = ``patch_size``).
        iterations, batch_size : int
            Iterations in all; patches per iteration.
        checkpoint : str or pathlib.Path, optional
            Checkpoint file; a killed run resumes from it to the same weights. Without one,
            checkpoints go to a private folder under ``<cache>/natural/training/``, removed with
            this object (or by the next training, after a killed process).
        checkpoint_every : int
            Iterations between checkpoints.
        progress : bool
            Show a progress bar with every loss term.

        Returns
        -------
        dict
            The history ``{term: [float per iteration]}``: ``loss``, ``output_distance``,
            ``input_distance``, ``adversarial`` and the critic's terms.

        Raises
        ------
        ValueError, TypeError
            Patches of another size, fewer patches than a batch, or a source of another type.
        TrainingDiverged
            A loss became NaN or infinite.

        Examples
        --------
        >>> history = nat.train(data.subset(split["train"]), iterations=400, checkpoint="nat.ckpt")
        >>> history = nat.train(data.subset(split["train"]), iterations=800)  # 400 more
        """
        same = self._trainer is not None and self._trainer._user_source is source and checkpoint is None
        if same:
            trainer = self._trainer
            trainer.iterations = iterations
        else:
            tmp = None
            if checkpoint is None:
                tmp = _TrainingFolder()
                checkpoint = tmp.path / "natural.ckpt"
            trainer = Trainer(self.method, self._source(source, batch_size), checkpoint, iterations, batch_size,
                              checkpoint_every, self.device)
            if trainer.iteration == 0 and self.iteration:  # continue in memory
                trainer.history, trainer.iteration = self.history, self.iteration
            trainer._user_source, trainer._tmp = source, tmp
        self._trainer = trainer
        self.net.train(), self.critic.train()
        trainer.fit(progress)
        self.net.eval(), self.critic.eval()
        self.history, self.iteration = trainer.history, trainer.iteration
        return self.history

    # -- sampling --------------------------------------------------------------------------------
    def generate(self, x: torch.Tensor, z: list[torch.Tensor]) -> torch.Tensor:
        """g(z|x) for a batch ``x`` ``(B, 1, H, W)`` and noise ``z`` (one tensor per stage), normalized,
        projected onto the configured HU range (physically valid, like ``Invariance``)."""
        g = self.net(x, z)
        if self.config.hu_range is not None:
            g = g.clamp(*(float(hu_to_norm(v)) for v in self.config.hu_range))
        return g

    @torch.no_grad()
    def sample(self, x, n: int = 8, seed: int = 0, batch: int = 8, untrained: bool = False) -> torch.Tensor:
        """Draw ``n`` natural invariances of one image; the same seed gives the same samples.

        Parameters
        ----------
        x : torch.Tensor, shape (1, 1, H, W)
            The image, normalized; H and W divisible by 16 (with the default 5 stages).
        n, seed, batch : int
            Samples; seed of their noise (own generator); samples per forward pass.
        untrained : bool
            Allow sampling a generator that was never trained (x plus its initial random texture).

        Returns
        -------
        torch.Tensor, shape (n, 1, H, W)
            The samples g(z|x), normalized.

        Raises
        ------
        UntrainedError
            The generator was never trained and ``untrained`` is False.
        BadArgumentError, ValueError
            A bad image (shape, NaN, in HU), a size the generator cannot take, or ``n < 1``.

        Examples
        --------
        >>> samples = nat.sample(hu_to_norm(slice_hu)[None, None], n=8, seed=0)   # (8, 1, H, W)
        >>> std_hu = norm_to_hu(samples).std(0)[0]       # where the invariances vary, (H, W) in HU
        """
        if self.iteration == 0 and not untrained:
            raise UntrainedError("this NaturalInvariance was never trained (0 iterations): its samples would be x plus "
                                 "the generator's initial random texture, not invariances; call .train(patches, "
                                 "iterations) or train_or_load_natural(nat, data, data_key, iterations) first "
                                 "(or pass untrained=True to see the untrained start)")
        x = check_image(x).to(self.device)
        self.net.check_size(*x.shape[-2:])
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        gen = torch.Generator().manual_seed(int(seed))
        self.net.eval()
        out = []
        for k in range(0, n, batch):
            m = min(batch, n - k)
            xb = x.expand(m, -1, -1, -1)
            out.append(self.generate(xb, self.net.noise(m, *x.shape[-2:], gen, self.device)))
        return torch.cat(out)

    @torch.no_grad()
    def critic_scores(self, images: torch.Tensor, stride: int | None = None) -> torch.Tensor:
        """The critic's score of each image: higher is more like real low-dose patches.

        ``images`` ``(B, 1, H, W)`` normalized, H, W >= ``patch_size``; each score is the mean over
        the image's ``patch_size`` tiles (stride ``patch_size // 2`` unless given). Returns ``(B,)``
        on the CPU; an image smaller than a patch is a ``ValueError``."""
        P = self.config.patch_size
        tiles = F.unfold(images.to(self.device), P, stride=stride or P // 2)  # (B, P*P, T)
        B, _, T = tiles.shape
        if T == 0:
            raise ValueError(f"images of {tuple(images.shape[-2:])} px are smaller than the critic's {P} px patch")
        scores = self.critic(tiles.transpose(1, 2).reshape(B * T, 1, P, P).contiguous())
        return scores.reshape(B, T).mean(1).cpu()

    @torch.no_grad()
    def distances(self, x: torch.Tensor, x_inv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``d(f(x), f(x_inv))`` and ``d(x, x_inv)`` per sample ``(n,)``, on the interior without the
        training margin, with this generator's distance. ``x`` ``(1, 1, H, W)``, ``x_inv`` ``(n, 1, H, W)``."""
        x, x_inv = x.to(self.device), x_inv.to(self.device)
        inner = _interior(self.config.margin)
        xs = x.expand(len(x_inv), -1, -1, -1)
        d_out = self.distance(self.denoiser(xs)[inner], self.denoiser(x_inv)[inner])
        return d_out.cpu(), self.distance(xs[inner], x_inv[inner]).cpu()

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save generator, critic, optimizers, random state and history atomically; returns the path.

        ``NaturalInvariance.load(path, denoiser)`` restores it.
        """
        m = self.method
        return atomic.torch_save(path, {
            "class": type(self).__name__, "config": self.config.to_dict(), "generator": self.net.state_dict(),
            "critic": self.critic.state_dict(), "optimizers": {k: o.state_dict() for k, o in m.optimizers().items()},
            "rng": self.rng.get_state(), "iteration": self.iteration, "history": self.history,
            "probe_output": self.probe_output.cpu(), "versions": versions()})

    @classmethod
    def load(cls, path: str | Path, denoiser: nn.Module, device: str | None = None,
             distance_module: nn.Module | None = None, vgg_allow_random: bool = False) -> "NaturalInvariance":
        """Restore a generator written by :meth:`save`.

        Parameters
        ----------
        path : str or pathlib.Path
            The file :meth:`save` wrote.
        denoiser : torch.nn.Module
            The denoiser it was trained for (checked by its output on a stored probe).
        device : str, optional
            Where to run; default the denoiser's device.
        distance_module : torch.nn.Module, optional
            A ready distance module (e.g. the one the generator was trained with).
        vgg_allow_random : bool
            For ``"vgg"`` without ImageNet weights: a seeded random VGG16.

        Returns
        -------
        NaturalInvariance

        Raises
        ------
        CheckpointError
            A missing, damaged or foreign file.
        CTInvError
            ``denoiser`` is not the one the generator was trained for.
        """
        st = load_file(path, "saved NaturalInvariance", "delete it and train again (train_or_load_natural "
                       "retrains a damaged cache entry by itself)")
        if not isinstance(st, dict) or st.get("class") != cls.__name__:
            raise CheckpointError(f"{path} does not hold a NaturalInvariance (saved by NaturalInvariance.save); "
                                  "pass the file its save() wrote, or delete it and train again")
        cfg = dict(st["config"])
        obj = cls(denoiser, device=device, distance_module=distance_module, vgg_allow_random=vgg_allow_random, **cfg)
        if not torch.allclose(obj.probe_output.cpu(), st["probe_output"], atol=1e-4, rtol=1e-4):
            raise CTInvError(f"{path}: the denoiser given to load() is not the one this generator was trained for "
                             "(its output on the stored probe differs)")
        obj.net.load_state_dict(st["generator"])
        obj.critic.load_state_dict(st["critic"])
        for k, o in obj.method.optimizers().items():
            o.load_state_dict(st["optimizers"][k])
        obj.rng.set_state(st["rng"])
        obj.iteration, obj.history = int(st["iteration"]), st["history"]
        obj.net.eval(), obj.critic.eval()
        return obj

    def cache_key(self, data_key: str, iterations: int, batch_size: int) -> str:
        """Hash of everything that determines the trained generator: settings, the denoiser's output
        on the probe (its identity), the data, iterations and batch size."""
        probe = hashlib.sha256(self.probe_output.cpu().numpy().round(5).tobytes()).hexdigest()
        return config_hash({"config": self.config.to_dict(), "denoiser": probe, "data": data_key,
                            "iterations": iterations, "batch_size": batch_size, "trainer": TRAINER_VERSION})


def train_or_load_natural(nat: NaturalInvariance, data, data_key: str, iterations: int, batch_size: int = 16,
                          progress: bool = True) -> tuple[NaturalInvariance, Path, bool]:
    """Load a natural-invariance generator from the cache, or train it (resuming) and cache it.

    Keyed by the settings, the denoiser (its output on a probe), the data, iterations and batch
    size; a damaged cache entry is reported and trained again. A second run of the same
    configuration waits, then loads. Under ``torchrun`` every rank calls this and they train together.

    Parameters
    ----------
    nat : NaturalInvariance
        The untrained generator with its settings and denoiser.
    data : PairedCTData
        The training data (low-dose patches of its patient-balanced sampler).
    data_key : str
        Identifies the data in the cache (``ctinv_utils.training.model_cache.training_data_key``).
    iterations, batch_size : int
        Training iterations; patches per iteration.
    progress : bool
        Show a progress bar.

    Returns
    -------
    nat : NaturalInvariance
        The trained generator (``nat`` itself, or the one loaded from the cache).
    path : pathlib.Path
        The cache file.
    loaded : bool
        Whether it came from the cache.

    Examples
    --------
    >>> from ctinv_utils import NaturalInvariance, train_or_load_natural
    >>> nat, path, loaded = train_or_load_natural(NaturalInvariance(cnn10), train_data, data_key, 400)
    >>> samples = nat.sample(x, n=8)
    """
    from ..paths import cache_dir

    path = cache_dir() / "natural" / f"{nat.cache_key(data_key, iterations, batch_size)}.pt"
    # a second run of this configuration waits, then loads (one process: the plain writer lock)
    with distributed.main_rank_lock(path.parent, path.stem):
        return _train_or_load_natural(nat, data, path, iterations, batch_size, progress)


def _train_or_load_natural(nat, data, path: Path, iterations, batch_size, progress):
    if path.is_file() and (problem := atomic.checksum_problem(path)):
        warnings.warn(f"cached natural-invariance generator {path}: {problem}; it is deleted and trained again",
                      stacklevel=3)
        if distributed.is_main():
            atomic.remove_checksummed(path)
    if path.is_file():
        try:
            return NaturalInvariance.load(path, nat.denoiser, nat.device, distance_module=nat.distance), path, True
        except CTInvError as exc:
            warnings.warn(f"{exc}; it is deleted and trained again", stacklevel=3)
            if distributed.is_main():
                atomic.remove_checksummed(path)  # a damaged cache entry is retrained, not trusted
    nat.train(data, iterations, batch_size, checkpoint=path.with_suffix(".ckpt"), progress=progress)
    if distributed.is_main():
        nat.save(path)
        atomic.write_checksum(path)
        path.with_suffix(".ckpt").unlink(missing_ok=True)
    distributed.barrier()
    return nat, path, False
