"""Several processes, one result: data-parallel training and sharded work under ``torch.distributed``.

Launched by ``torchrun`` (alone, or under SLURM's ``srun``), each process is one *rank* of a process
group: ``nccl`` on a GPU (``cuda:LOCAL_RANK``), ``gloo`` on the CPU (:func:`init_from_env`). In one
process every helper here returns at once without touching a tensor or a random stream, so a
single-process run computes exactly what it would without this module.

Data-parallel training: each rank draws its share of the batch (:func:`local_batch_size`) from its
own patient-balanced sampler (:func:`rank_seed`); every update averages the gradients over the ranks
(:func:`average_gradients`), which equals a one-process step on the combined batch (tested to 1e-6);
the networks start equal and a fingerprint at every checkpoint checks they stay so; rank 0 alone
writes checkpoints. Why not ``DistributedDataParallel``: a WGAN's critic runs several times per
update and its gradient penalty needs a double backward, which DDP's hooks do not support; one
explicit all-reduce before each ``optimizer.step()`` is correct for every step and costs the same.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import pickle
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..atomic import writer_lock
from ..errors import CTInvError
from ..settings import check_device


class DistributedError(CTInvError):
    """A distributed run that cannot work as set up (a batch smaller than the ranks, ranks that
    disagree on their state, a checkpoint of another number of ranks)."""


@dataclass(frozen=True)
class Ranks:
    """This process's ``rank`` among ``world`` processes."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        """More than one rank: the distributed code paths run."""
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def ranks() -> Ranks:
    """This process's place in the initialised process group; ``Ranks(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes shared files."""
    return ranks().main


def init_from_env(device: str = "auto", timeout_minutes: float = 60.0) -> tuple[Ranks, str]:
    """Join the process group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and pick this rank's device.

    ``device``: ``"auto"`` (a GPU when torch sees one, else the CPU), ``"cpu"`` or ``"cuda"``. On GPUs
    each rank takes ``cuda:LOCAL_RANK`` and the backend is ``nccl``; on the CPU it is ``gloo``.
    Without torchrun (no ``WORLD_SIZE``, or 1) no process group is made: one plain process.
    ``timeout_minutes``: how long a collective (a barrier at the end, say) waits for the slowest rank
    before the run fails. Returns (ranks, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device not in ("auto", "cpu", "cuda"):
        raise DistributedError(f"device {device!r}: pass 'auto', 'cpu' or 'cuda' (each rank takes cuda:LOCAL_RANK "
                               "by itself)")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = check_device(f"cuda:{local}" if cuda else "cpu", f"device of rank {os.environ.get('RANK', 0)}")
    if cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=timeout_minutes))
    return ranks(), dev


def shutdown() -> None:
    """Leave the process group (when there is one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Where tensors of a collective must live: this rank's GPU for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if not ranks().active:
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


# -- seeds and batches ---------------------------------------------------------------------------
def rank_seed(seed: int, r: Ranks | None = None) -> int:
    """The seed of this rank's random streams: ``seed`` itself in one process, else a seed derived
    from (``seed``, rank), so that ranks draw different patches (and mixing weights, noise)."""
    r = r or ranks()
    if not r.active:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), r.rank]).generate_state(1, dtype=np.uint32)[0])


def local_batch_size(batch_size: int, r: Ranks | None = None) -> int:
    """This rank's share of a global batch of ``batch_size`` (the first ``batch_size % world`` ranks
    take one more); ``batch_size`` itself in one process."""
    r = r or ranks()
    if not r.active:
        return batch_size
    if batch_size < r.world:
        raise DistributedError(f"batch_size {batch_size} is smaller than the {r.world} ranks: every rank needs at "
                               f"least one patch; use at most {batch_size} ranks or a batch of >= {r.world}")
    return batch_size // r.world + (1 if r.rank < batch_size % r.world else 0)


# -- gradients, losses, parameters -----------------------------------------------------------------
@torch.no_grad()
def average_gradients(*modules: nn.Module, batch: int) -> None:
    """Replace each parameter's gradient by the batch-weighted mean over the ranks,
    ``sum_r batch_r * grad_r / sum_r batch_r`` (``batch``: the samples this rank's mean-reduced loss
    was taken over): the gradient of the loss on the combined batch. One all-reduce per dtype. A
    no-op in one process. Parameters without a gradient are left out (every rank runs the same step,
    so they are the same parameters on every rank)."""
    if not ranks().active:
        return
    groups: dict[torch.dtype, list[torch.Tensor]] = defaultdict(list)
    for m in modules:
        for p in m.parameters():
            if p.grad is not None:
                groups[p.grad.dtype].append(p.grad)
    dev = _comm_device()
    for dtype, grads in sorted(groups.items(), key=lambda kv: str(kv[0])):
        flat = torch.cat([g.reshape(-1).to(dev) for g in grads] + [torch.ones(1, dtype=dtype, device=dev)])
        flat.mul_(float(batch))
        dist.all_reduce(flat)
        flat = flat[:-1] / flat[-1]
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def average_scalars(values: dict[str, float], batch: int) -> dict[str, float]:
    """The batch-weighted mean over the ranks of each value (e.g. the losses of a step): what one
    process would report on the combined batch, the same on every rank (so a NaN stops every rank at
    the same iteration). ``values`` itself in one process."""
    if not ranks().active:
        return values
    keys = list(values)
    t = torch.tensor([float(values[k]) * batch for k in keys] + [float(batch)], dtype=torch.float64,
                     device=_comm_device())
    dist.all_reduce(t)
    mean = (t[:-1] / t[-1]).tolist()
    return dict(zip(keys, mean))


@torch.no_grad()
def broadcast_modules(*modules: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (no-op in one process)."""
    if not ranks().active:
        return
    dev = _comm_device()
    for m in modules:
        for t in [*m.parameters(), *m.buffers()]:
            buf = t.data.to(dev)
            dist.broadcast(buf, src=0)
            t.data.copy_(buf)


def fingerprint(*modules: nn.Module) -> str:
    """SHA-256 of the modules' parameters and buffers (names, dtypes, values)."""
    h = hashlib.sha256()
    for m in modules:
        for k, v in m.state_dict().items():
            h.update(f"{k}:{v.dtype}:{tuple(v.shape)}".encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes() if v.dtype != torch.bfloat16
                     else v.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


# -- objects --------------------------------------------------------------------------------------
def all_gather(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` in one process."""
    r = ranks()
    if not r.active:
        return [obj]
    out = [None] * r.world
    dist.all_gather_object(out, obj)
    return out


def gather_to_main(obj) -> list | None:
    """Every rank's ``obj`` in rank order on rank 0 (None on the others); ``[obj]`` in one process."""
    r = ranks()
    if not r.active:
        return [obj]
    out = [None] * r.world if r.main else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast_from_main(obj):
    """Rank 0's ``obj`` on every rank; ``obj`` in one process."""
    if not ranks().active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _digest(obj) -> str:
    return hashlib.sha256(pickle.dumps(obj, protocol=4)).hexdigest()


def check_same(what: str, obj, fix: str) -> None:
    """Raise :class:`DistributedError` on every rank unless ``obj`` is the same on all of them."""
    digests = all_gather(_digest(obj))
    if len(set(digests)) > 1:
        groups = defaultdict(list)
        for rank, d in enumerate(digests):
            groups[d].append(rank)
        raise DistributedError(f"the ranks disagree on {what} (groups of ranks: {sorted(groups.values())}); {fix}")


def check_distinct(what: str, obj, fix: str) -> None:
    """Raise :class:`DistributedError` on every rank when two ranks hold the same ``obj``."""
    digests = all_gather(_digest(obj))
    if len(set(digests)) < len(digests):
        raise DistributedError(f"two or more ranks have the same {what}; {fix}")


# -- files ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def main_rank_lock(parent: str | Path, key: str):
    """:func:`~ctinv_utils.atomic.writer_lock` for a group of ranks making one result together: rank 0
    holds the lock (so another job making the same result waits), the others wait for it at a
    barrier, and all leave the block together. The plain writer lock in one process."""
    r = ranks()
    if not r.active:
        with writer_lock(parent, key):
            yield
        return
    if r.main:
        with writer_lock(parent, key):
            barrier()
            yield
            barrier()  # not on an exception: the failing rank ends and torchrun stops the others
    else:
        barrier()
        yield
        barrier()
