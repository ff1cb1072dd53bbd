"""Data-parallel training with torch.distributed: two gloo ranks on the CPU (``torch.multiprocessing``
with a loopback rendezvous) against one process on the combined batch.

With mean-reduced losses the batch-weighted average of the ranks' gradients is the gradient on the
combined batch, so a 2-rank step on b0 (rank 0) and b1 (rank 1) must give the weights of one process
stepping on cat(b0, b1), up to float32 summation order. All two-rank work runs in one spawn (module
fixture) to keep process start-ups down; each test checks one part of it.
"""

from __future__ import annotations

import datetime

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ctinv_utils.errors import CTInvError
from ctinv_utils.training import distributed
from ctinv_utils.training.distributed import DistributedError, Ranks, local_batch_size, rank_seed

WORLD = 2
B = 2  # per rank; the single process steps on WORLD * B


def _combined(seed: int, shape) -> torch.Tensor:
    return torch.randn(WORLD * B, *shape, generator=torch.Generator().manual_seed(seed))


def _part(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s share of a combined batch; the whole batch in one process."""
    return t if world == 1 else t[rank * B:(rank + 1) * B]


def _eps_generator(rank: int, world: int) -> torch.Generator:
    """A generator whose gradient-penalty mixing weights are the combined run's for this rank's
    samples (rank r skips the r * B weights drawn for the ranks before it)."""
    g = torch.Generator().manual_seed(7)
    if world > 1 and rank:
        torch.rand(rank * B, 1, 1, 1, generator=g)
    return g


def _grads(module) -> dict:
    return {k: p.grad.detach().clone() for k, p in module.named_parameters() if p.grad is not None}


def _state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def denoiser_step(rank: int, world: int) -> dict:
    """One CNN-10 update (L2 loss)."""
    from ctinv_utils.training.methods import CNN10Method, TrainConfig

    m = CNN10Method(TrainConfig(iterations=1, batch_size=WORLD * B, patch_size=24, lr=1e-3), "cpu")
    low, full = _combined(1, (1, 24, 24)), _combined(2, (1, 24, 24))
    m.step(lambda: (_part(low, rank, world), _part(full, rank, world)), 0)
    return {"weights": _state(m.model), "grads": _grads(m.model)}


def critic_gp_step(rank: int, world: int) -> dict:
    """One WGAN critic update with the gradient penalty (double backward)."""
    from ctinv_utils.models import WGANCritic
    from ctinv_utils.training.gan import critic_step
    from ctinv_utils.training.loop import seeded_init

    with seeded_init(3):
        critic = WGANCritic(32, width=0.25, hidden=64)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.5, 0.9))
    real, fake = _combined(4, (1, 32, 32)), _combined(5, (1, 32, 32))
    losses = critic_step(critic, opt, _part(real, rank, world), _part(fake, rank, world), 10.0,
                         _eps_generator(rank, world))
    losses = distributed.average_scalars(losses, B if world > 1 else WORLD * B)
    return {"weights": _state(critic), "grads": _grads(critic), "losses": losses}


def natural_step(rank: int, world: int) -> dict:
    """One natural-invariance update: a critic step and a generator step."""
    from ctinv_utils import GaussRI
    from ctinv_utils.synthesis.natural import NaturalInvariance

    nat = NaturalInvariance(GaussRI(), "mse", alpha=0.5, beta=0.1, patch_size=32, seed=0, channels=(8, 8, 8),
                            z_channels=2, margin=4)
    noise = [nat.net.noise(WORLD * B, 32, 32, torch.Generator().manual_seed(11 + k)) for k in range(2)]
    calls = iter(range(2))
    nat.net.noise = lambda n, h, w, gen=None, device="cpu": [_part(z, rank, world) for z in noise[next(calls)]]
    nat.method.generator = _eps_generator(rank, world)
    x = 1.0 + 0.2 * _combined(6, (1, 32, 32))
    nat.method.step(lambda: (_part(x, rank, world),), 0)
    return {"generator": _state(nat.net), "critic": _state(nat.critic), "grads": _grads(nat.net)}


STEPS = {"denoiser": denoiser_step, "critic_gp": critic_gp_step, "natural": natural_step}


def trainer_run(rank: int, world: int, simulation: dict, folder: str) -> dict:
    """A 2-rank CNN-10 training on patches of the smoke data: checkpoints, resume, what each rank drew."""
    from ctinv_utils.data.dataset import load_data
    from ctinv_utils.training import loop
    from ctinv_utils.training.methods import TrainConfig, denoiser_trainer

    data = load_data(None, simulation, progress=False)
    writes = []
    real_save = loop.save_file
    loop.save_file = lambda path, obj, what: (writes.append(str(path)), real_save(path, obj, what))
    cfg = TrainConfig(iterations=4, batch_size=3, patch_size=24, lr=1e-3, checkpoint_every=2)
    t = denoiser_trainer(cfg, data, f"{folder}/interrupted.ckpt")
    first_batch = t.source.next_batch(t.local_batch)[0].clone()
    t.source = type(t.source)(data, cfg.patch_size, seed=rank_seed(cfg.seed))  # start the stream over
    t.iterations = 2
    t.fit(progress=False)  # "killed" after the checkpoint at iteration 2
    resumed = denoiser_trainer(cfg, data, f"{folder}/interrupted.ckpt")
    resumed_from = resumed.iteration
    resumed.fit(progress=False)
    whole = denoiser_trainer(cfg, data, f"{folder}/uninterrupted.ckpt")
    whole.fit(progress=False)
    loop.save_file = real_save
    return {"writes": writes, "first_batch": first_batch, "local_batch": t.local_batch, "resumed_from": resumed_from,
            "resumed": _state(resumed.method.model), "whole": _state(whole.method.model),
            "history": whole.history}


def _worker(rank: int, world: int, simulation: dict, folder: str) -> None:
    torch.set_num_threads(1)
    # a file rendezvous in the test's own folder: no port to pick (a free port found by binding and
    # closing a socket can be taken by another test worker before the ranks listen on it)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        out = {name: step(rank, world) for name, step in STEPS.items()}
        out["trainer"] = trainer_run(rank, world, simulation, folder)
        torch.save(out, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(smoke_data, tmp_path_factory):
    """What each of two gloo ranks computed (one spawn for every test of this module)."""
    from conftest import SMOKE_SIMULATION

    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(WORLD, SMOKE_SIMULATION, str(folder)), nprocs=WORLD, join=True)
    return folder, [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.fixture(scope="module")
def one_process():
    """The same steps in one process on the combined batches (no process group)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: step(0, 1) for name, step in STEPS.items()}
    finally:
        torch.set_num_threads(threads)


def assert_close(a: dict, b: dict, rtol: float, what: str) -> None:
    assert a.keys() == b.keys()
    for k in a:
        err = float((a[k].double() - b[k].double()).norm() / b[k].double().norm().clamp_min(1e-30))
        assert err <= rtol, f"{what} {k}: relative difference {err:.3g} > {rtol}"


@pytest.mark.parametrize("step", ["denoiser", "critic_gp", "natural"])
def test_two_rank_step_equals_one_process_on_the_combined_batch(two_ranks, one_process, step):
    _, ranks = two_ranks
    single = one_process[step]
    for key in single:
        if key == "losses":
            continue
        # the ranks hold bitwise the same weights (the all-reduce result is the same everywhere) ...
        for r in range(1, WORLD):
            assert all(torch.equal(ranks[0][step][key][k], ranks[r][step][key][k]) for k in single[key]), key
        # ... and those of one process on cat(b0, b1): averaged gradients, then the same Adam step
        assert_close(ranks[0][step][key], single[key], 1e-5 if key == "grads" else 1e-6, f"{step} {key}")
    if step == "critic_gp":  # reported losses: the combined batch's
        for k, v in single["losses"].items():
            assert ranks[0][step]["losses"][k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


def test_gradient_average_is_not_a_sum(two_ranks, one_process):
    """The comparison above can fail: doubling the gradients (a sum instead of a mean) is caught."""
    _, ranks = two_ranks
    doubled = {k: 2 * v for k, v in ranks[0]["denoiser"]["grads"].items()}
    with pytest.raises(AssertionError, match="relative difference"):
        assert_close(doubled, one_process["denoiser"]["grads"], 1e-5, "doubled")


def test_two_rank_training_writes_on_rank_0_and_resumes_exactly(two_ranks):
    folder, ranks = two_ranks
    t0, t1 = ranks[0]["trainer"], ranks[1]["trainer"]
    # global batch 3 over 2 ranks: 2 + 1 patches; each rank its own patient-balanced stream
    assert (t0["local_batch"], t1["local_batch"]) == (2, 1)
    assert not torch.equal(t0["first_batch"][:1], t1["first_batch"])
    # checkpoints: rank 0 writes (iterations 2 and 4, twice: interrupted + resumed, uninterrupted), rank 1 never
    assert len(t0["writes"]) == 4 and t1["writes"] == []
    # the interrupted run resumed from iteration 2 and ended on the uninterrupted run's weights, on both ranks
    assert t0["resumed_from"] == 2
    for t in (t0, t1):
        assert all(torch.equal(t["resumed"][k], t0["whole"][k]) for k in t0["whole"])
    assert t0["history"] == t1["history"]  # losses are the combined batch's, the same on every rank
    ck = torch.load(folder / "uninterrupted.ckpt", weights_only=True)
    assert ck["world_size"] == WORLD and len(ck["ranks"]) == WORLD
    assert ck["ranks"][0]["source"] != ck["ranks"][1]["source"]


def test_a_two_rank_checkpoint_does_not_resume_in_one_process(two_ranks, smoke_data):
    from ctinv_utils.training.methods import TrainConfig, denoiser_trainer

    folder, _ = two_ranks
    cfg = TrainConfig(iterations=4, batch_size=3, patch_size=24, lr=1e-3, checkpoint_every=2)
    with pytest.raises(CTInvError, match="written by 2 ranks, this run has 1 rank"):
        denoiser_trainer(cfg, smoke_data, folder / "uninterrupted.ckpt")


def test_one_process_is_untouched():
    """Without a process group every helper is a no-op: seeds, batch sizes, values."""
    assert distributed.ranks() == Ranks(0, 1) and not distributed.ranks().active
    assert rank_seed(5) == 5 and local_batch_size(7) == 7
    losses = {"loss": 0.25}
    assert distributed.average_scalars(losses, 3) is losses
    assert distributed.all_gather("x") == ["x"] and distributed.gather_to_main(1) == [1]
    assert distributed.broadcast_from_main("y") == "y"
    m = torch.nn.Linear(2, 1)
    m(torch.ones(1, 2)).sum().backward()
    before = m.weight.grad.clone()
    distributed.average_gradients(m, batch=4)
    assert torch.equal(m.weight.grad, before)


def test_rank_shares_and_seeds():
    shares = [local_batch_size(68, Ranks(r, 8)) for r in range(8)]
    assert sum(shares) == 68 and shares == [9, 9, 9, 9, 8, 8, 8, 8]
    seeds = {rank_seed(0, Ranks(r, 4)) for r in range(4)}
    assert len(seeds) == 4
    with pytest.raises(DistributedError, match="batch_size 2 is smaller than the 4 ranks"):
        local_batch_size(2, Ranks(0, 4))
