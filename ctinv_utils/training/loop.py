"""One training loop for every model ctinv trains: atomic checkpoints, exact resume, progress, NaN stop.

:class:`Trainer` runs a *method object* (the networks, optimizers and one training step of a
method, see :mod:`~ctinv_utils.training.methods`) on batches from a *source* (e.g. the
patient-balanced :class:`~ctinv_utils.data.sampling.PatchSampler`). Checkpoints hold the networks,
optimizers, random states and history; a killed run resumes from the last one and ends on the same
weights as an uninterrupted run (CPU). Under ``torchrun`` the same loop trains data-parallel
(:mod:`~ctinv_utils.training.distributed`); in one process none of that runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import torch
from torch import nn

from ..errors import CTInvError
from ..models.checkpoints import CheckpointError, check_finite, load_file, save_file
from ..progress import progress_bar
from ..settings import SettingsError, check_device
from ..speed import tune_allocator
from . import distributed


class TrainingDiverged(CTInvError):
    """A loss became NaN or infinite."""


class TrainingSettingsError(SettingsError):
    """A training argument that would make a run a no-op or do the wrong thing (e.g. iterations < 1)."""


class Method(Protocol):
    name: str
    config: dict
    generator: torch.Generator

    def modules(self) -> dict[str, nn.Module]: ...
    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...
    def step(self, next_batch, iteration: int) -> dict[str, float]: ...


@contextlib.contextmanager
def seeded_init(seed: int):
    """Build modules from ``seed`` without touching the global RNG. Yields a holder whose
    ``generator`` (set when the block ends) continues the same random stream, for the method's
    later draws (e.g. the gradient penalty's mixing weights). With several ranks the modules are the
    same on every rank and the generator is the rank's own (seeded by
    :func:`~ctinv_utils.training.distributed.rank_seed`)."""
    holder = SimpleNamespace(generator=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield holder
        holder.generator = torch.Generator().set_state(torch.get_rng_state())
    r = distributed.ranks()
    if r.active:
        holder.generator.manual_seed(distributed.rank_seed(seed, r))


#: Why a training argument must be at least 1 (said in the error).
_WHY = {"iterations": "0 would leave the model untrained (and cache it as if finished)",
        "batch_size": "a batch holds at least one patch",
        "checkpoint_every": "checkpoints are written every this many iterations"}


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` when it is an integer >= ``minimum``, else a :class:`TrainingSettingsError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        why = f" ({_WHY[name]})" if name in _WHY and minimum == 1 else ""
        raise TrainingSettingsError(f"{name} must be an integer >= {minimum}, got {value!r}{why}")
    return value


def check_learning_rate(name: str, value: Any, optional: bool = False) -> float | None:
    """``value`` when it is a finite number > 0 (or None when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise TrainingSettingsError(f"{name} must be a finite number > 0{' or None' if optional else ''}, "
                                    f"got {value!r}; typical Adam rates are 1e-5 to 1e-3")
    return float(value)


class Trainer:
    """Train a method object on batches from a source, with checkpoints and exact resume.

    The method object has ``modules()`` and ``optimizers()`` (``{name: nn.Module}``,
    ``{name: Optimizer}``), ``step(next_batch, iteration) -> {loss name: float}`` (one iteration;
    it calls ``next_batch()`` per batch it needs), ``generator`` (its own ``torch.Generator``),
    ``config`` (a JSON-able dict; a checkpoint of another config is refused) and ``name``. The
    source has ``next_batch(batch_size)`` -> a tuple of CPU tensors and ``state_dict()`` /
    ``load_state_dict()``. Under ``torchrun`` each rank draws its share of ``batch_size``.

    Parameters
    ----------
    method : object
        The method object, e.g. ``ctinv_utils.training.methods.CNN10Method``.
    source : object
        The training source, e.g. a :class:`~ctinv_utils.data.sampling.PatchSampler`.
    checkpoint_path : str or pathlib.Path
        The checkpoint file; when it exists, training resumes from it.
    iterations : int
        Training iterations in all (>= 1).
    batch_size : int
        Samples per iteration over all ranks (>= 1).
    checkpoint_every : int
        Write a checkpoint every this many iterations (and at the end).
    device : str
        ``"cpu"``, ``"cuda[:N]"`` or ``"auto"``.

    Raises
    ------
    TrainingSettingsError, DeviceError
        A count that is not an integer >= 1; a device this machine does not have.
    CheckpointError, CTInvError
        A checkpoint that is damaged, foreign, of another number of ranks or of another config.

    Examples
    --------
    >>> from ctinv_utils.training.methods import CNN10Method
    >>> trainer = Trainer(CNN10Method(cfg, "cpu"), PatchSampler(data, cfg.patch_size), "cnn10.ckpt", 200, 16)
    >>> history = trainer.fit()
    """

    def __init__(self, method: Method, source, checkpoint_path: str | Path, iterations: int, batch_size: int,
                 checkpoint_every: int = 250, device: str = "cpu"):
        # every argument is checked before any work (and before a checkpoint is read)
        self.iterations = check_positive_int("iterations", iterations)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
        self.device = check_device(device, "Trainer device")
        self.ranks = distributed.ranks()
        self.local_batch = distributed.local_batch_size(self.batch_size, self.ranks)  # batch_size in one process
        tune_allocator()
        self.method, self.source = method, source
        self.checkpoint_path = Path(checkpoint_path)
        self.history: dict[str, list[float]] = {}
        self.iteration = 0
        self.seconds = 0.0
        self._checkpoint_at: int | None = None  # the iteration of the checkpoint on disk (None: none yet)
        if self.checkpoint_path.exists():
            self._load_checkpoint()
        if self.ranks.active:
            self._check_ranks()

    def _check_ranks(self) -> None:
        """Several ranks: the same start everywhere, a different random source on each."""
        fix = (f"every rank must see the same checkpoint {self.checkpoint_path} (put it, i.e. CTINV_CACHE, on a "
               "filesystem all nodes share)")
        distributed.check_same("the iteration to start from", self.iteration, fix)
        distributed.broadcast_modules(*self.method.modules().values())
        distributed.check_distinct("random state of the training source (they would draw the same patches)",
                                   json.dumps(self.source.state_dict()),
                                   "seed each rank's source with training.distributed.rank_seed(seed)")

    def _next_batch(self):
        return tuple(t.to(self.device) for t in self.source.next_batch(self.local_batch))

    def _save_checkpoint(self) -> None:
        state = {
            "iteration": self.iteration,
            "modules": {k: m.state_dict() for k, m in self.method.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.method.optimizers().items()},
            "generator": self.method.generator.get_state(),
            "source": json.dumps(self.source.state_dict()),  # numpy PCG64 states hold 128-bit ints
            "history": self.history,
            "config": self.method.config,
        }
        if self.ranks.active:  # rank 0 writes every rank's random state; the others wait
            distributed.check_same(f"the weights of {self.method.name} at iteration {self.iteration}",
                                   distributed.fingerprint(*self.method.modules().values()),
                                   "every optimizer step must follow training.distributed.average_gradients")
            per_rank = distributed.gather_to_main({"generator": state["generator"], "source": state["source"]})
            if self.ranks.main:
                save_file(self.checkpoint_path, {**state, "world_size": self.ranks.world, "ranks": per_rank},
                          what=f"training checkpoint of {self.method.name}")
            distributed.barrier()
        else:
            save_file(self.checkpoint_path, state, what=f"training checkpoint of {self.method.name}")
        self._checkpoint_at = self.iteration

    def _load_checkpoint(self) -> None:
        path = self.checkpoint_path
        fix = "delete it to start this training over"
        ck = load_file(path, "training checkpoint", fix, map_location=self.device)
        keys = ("iteration", "modules", "optimizers", "generator", "source", "history", "config")
        if not isinstance(ck, dict) or any(k not in ck for k in keys):
            raise CheckpointError(f"training checkpoint {path} is not a checkpoint of this training loop (it lacks "
                                  f"{[k for k in keys if not isinstance(ck, dict) or k not in ck]}); {fix}")
        if ck["config"] != self.method.config:
            diff = sorted(k for k in set(ck["config"]) | set(self.method.config)
                          if ck["config"].get(k) != self.method.config.get(k))
            raise CTInvError(f"checkpoint {self.checkpoint_path} was written with another config (differs in "
                             f"{diff}); delete it to start over")
        check_finite(ck["modules"], path, "training checkpoint", fix)
        iteration = int(ck["iteration"])
        if iteration < 0:
            raise CheckpointError(f"training checkpoint {path} is at iteration {iteration}; {fix}")
        written = int(ck.get("world_size", 1))
        if written != self.ranks.world:
            by = "one process" if written == 1 else f"{written} ranks"
            raise CheckpointError(f"training checkpoint {path} was written by {by}, this run has "
                                  f"{self.ranks.world} rank(s); resume it with {by} (each rank holds its own random "
                                  f"state), or {fix}")
        own = ck["ranks"][self.ranks.rank] if self.ranks.active else ck
        try:
            for k, m in self.method.modules().items():
                m.load_state_dict(ck["modules"][k])
            for k, o in self.method.optimizers().items():
                o.load_state_dict(ck["optimizers"][k])
            self.method.generator.set_state(own["generator"])
            self.source.load_state_dict(json.loads(own["source"]))
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            detail = (str(exc).strip().splitlines() or [""])[0][:120]
            raise CheckpointError(f"training checkpoint {path} does not fit {self.method.name} "
                                  f"({type(exc).__name__}: {detail}); {fix}") from None
        self.history, self.iteration = ck["history"], iteration
        self._checkpoint_at = iteration

    def fit(self, progress: bool = True) -> dict:
        """Train up to ``iterations`` in all (a resumed run continues where its checkpoint stopped).

        Parameters
        ----------
        progress : bool
            Show a progress bar with the latest losses.

        Returns
        -------
        dict
            The loss history ``{loss name: [float per iteration]}``, from iteration 0.

        Raises
        ------
        TrainingDiverged
            A loss became NaN or infinite (names the last good checkpoint).

        Examples
        --------
        >>> from ctinv_utils import PatchSampler, TrainConfig, load_data
        >>> from ctinv_utils.training.methods import denoiser_trainer
        >>> cfg = TrainConfig.from_dict({"method": "cnn10", "iterations": 20, "batch_size": 4})
        >>> trainer = denoiser_trainer(cfg, load_data(), "/tmp/cnn10.ckpt")
        >>> history = trainer.fit()                  # {"loss": [20 floats]}
        """
        check_positive_int("iterations", self.iterations)  # also when set on the object after __init__
        bar = progress_bar(total=self.iterations, initial=self.iteration, desc=f"training {self.method.name}",
                           disable=not progress or not self.ranks.main, mininterval=1.0)
        t0 = time.perf_counter()
        for m in self.method.modules().values():
            m.train()
        while self.iteration < self.iterations:
            losses = self.method.step(self._next_batch, self.iteration)
            # several ranks: the combined batch's losses, the same on every rank (a NaN stops them all)
            losses = distributed.average_scalars(losses, self.local_batch)
            bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
            if bad:
                bar.close()
                # name a checkpoint only when this run wrote or read it and it is still there
                if self._checkpoint_at is not None and self.checkpoint_path.is_file():
                    where = (f"the last good checkpoint (iteration {self._checkpoint_at}) is kept at "
                             f"{self.checkpoint_path}")
                else:
                    where = "no checkpoint was written yet"
                raise TrainingDiverged(f"{self.method.name}: {bad} at iteration {self.iteration + 1}; {where}; "
                                       "lower the learning rate")
            for k, v in losses.items():
                self.history.setdefault(k, []).append(v)
            self.iteration += 1
            bar.update(1)
            if self.iteration % 10 == 0:
                bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
            if self.iteration % self.checkpoint_every == 0 or self.iteration == self.iterations:
                self._save_checkpoint()
        bar.close()
        self.seconds = time.perf_counter() - t0
        return self.history
