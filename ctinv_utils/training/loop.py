"""One training loop for every model we train: atomic checkpoints, exact resume, progress, NaN stop.

``Trainer(method, source, checkpoint_path, iterations, batch_size)`` runs any *method object*:

* ``method.modules()`` -> ``{name: nn.Module}`` and ``method.optimizers()`` -> ``{name: Optimizer}``
  (checkpointed and restored);
* ``method.step(next_batch, iteration)`` -> ``{loss name: float}``, one training iteration; it calls
  ``next_batch()`` as often as it needs a batch (a WGAN critic step takes its own);
* ``method.generator``: the ``torch.Generator`` the method draws its randomness from (owned, never the
  global RNG; checkpointed);
* ``method.config``: a JSON-able dict; a checkpoint written with another config is refused;
* ``method.name``: shown in the progress bar and messages.

``source`` gives the batches: ``next_batch(batch_size)`` -> a tuple of CPU tensors, and
``state_dict()`` / ``load_state_dict()`` for its random state (e.g. the patient-balanced
:class:`~ctinv_utils.data.sampling.PatchSampler`).

Checkpoints hold the networks, optimizers, the method's generator, the source's state and the
history, written to a temporary file and renamed; a killed run resumes from the last one and ends on
the same weights as an uninterrupted run (CPU).
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

from .. import atomic
from ..errors import CTInvError
from ..progress import progress_bar
from ..speed import tune_allocator


class TrainingDiverged(CTInvError):
    """A loss became NaN or infinite."""


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
    later draws (e.g. the gradient penalty's mixing weights)."""
    holder = SimpleNamespace(generator=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield holder
        holder.generator = torch.Generator().set_state(torch.get_rng_state())


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class Trainer:
    """Runs ``method`` for ``iterations`` on batches of ``batch_size`` from ``source``; resumes from
    ``checkpoint_path`` when it exists (and was written with the same config)."""

    def __init__(self, method: Method, source, checkpoint_path: str | Path, iterations: int, batch_size: int,
                 checkpoint_every: int = 250, device: str = "cpu"):
        tune_allocator()
        self.method, self.source = method, source
        self.iterations = check_positive_int("iterations", iterations)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
        self.device = device
        self.checkpoint_path = Path(checkpoint_path)
        self.history: dict[str, list[float]] = {}
        self.iteration = 0
        self.seconds = 0.0
        if self.checkpoint_path.is_file():
            self._load_checkpoint()

    def _next_batch(self):
        return tuple(t.to(self.device) for t in self.source.next_batch(self.batch_size))

    def _save_checkpoint(self) -> None:
        atomic.torch_save(self.checkpoint_path, {
            "iteration": self.iteration,
            "modules": {k: m.state_dict() for k, m in self.method.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.method.optimizers().items()},
            "generator": self.method.generator.get_state(),
            "source": json.dumps(self.source.state_dict()),  # numpy PCG64 states hold 128-bit ints
            "history": self.history,
            "config": self.method.config,
        })

    def _load_checkpoint(self) -> None:
        ck = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        if ck["config"] != self.method.config:
            diff = sorted(k for k in set(ck["config"]) | set(self.method.config)
                          if ck["config"].get(k) != self.method.config.get(k))
            raise CTInvError(f"checkpoint {self.checkpoint_path} was written with another config (differs in "
                             f"{diff}); delete it to start over")
        for k, m in self.method.modules().items():
            m.load_state_dict(ck["modules"][k])
        for k, o in self.method.optimizers().items():
            o.load_state_dict(ck["optimizers"][k])
        self.method.generator.set_state(ck["generator"])
        self.source.load_state_dict(json.loads(ck["source"]))
        self.history, self.iteration = ck["history"], int(ck["iteration"])

    def fit(self, progress: bool = True) -> dict:
        """Train up to ``iterations``; returns the loss history ``{name: [float, ...]}``."""
        last_good = self.iteration
        bar = progress_bar(total=self.iterations, initial=self.iteration, desc=f"training {self.method.name}",
                           disable=not progress, mininterval=1.0)
        t0 = time.perf_counter()
        for m in self.method.modules().values():
            m.train()
        while self.iteration < self.iterations:
            losses = self.method.step(self._next_batch, self.iteration)
            bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
            if bad:
                where = (f"the last good checkpoint (iteration {last_good}) is kept at {self.checkpoint_path}"
                         if self.checkpoint_path.is_file() else "no checkpoint was written yet")
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
                last_good = self.iteration
        bar.close()
        self.seconds = time.perf_counter() - t0
        return self.history
