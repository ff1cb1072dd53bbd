"""Training: exact resume after a kill, divergence handling, model cache, and that CNN-10 learns."""

import pytest
import torch

from ctinv_utils.training import loop, model_cache
from ctinv_utils.training.loop import TrainingDiverged
from ctinv_utils.training.methods import TrainConfig, denoiser_trainer
from ctinv_utils.training.model_cache import train_or_load


class Killed(Exception):
    pass


def _kill_at(trainer, iteration):
    """Make the trainer's sampler die when it would start ``iteration`` (as a kill would)."""
    orig = trainer._next_batch

    def next_batch():
        if trainer.iteration >= iteration:
            raise Killed
        return orig()

    trainer._next_batch = next_batch


@pytest.mark.parametrize("method,extra", [
    ("cnn10", {}),
    ("wganvgg", {"pretrain_iterations": 2, "vgg_weights": "imagenet_or_random", "critic_steps": 2}),
])
@pytest.mark.filterwarnings("ignore:VGG. random init")
def test_resume_after_kill_gives_identical_weights(smoke_data, tmp_path, method, extra):
    cfg = TrainConfig.from_dict(dict(method=method, iterations=8, batch_size=2, patch_size=40, checkpoint_every=3, **extra))
    straight = denoiser_trainer(cfg, smoke_data, tmp_path / "a.ckpt")
    straight.fit(progress=False)

    first = denoiser_trainer(cfg, smoke_data, tmp_path / "b.ckpt")
    _kill_at(first, 5)  # dies after the checkpoint at 3, mid-way to 6
    with pytest.raises(Killed):
        first.fit(progress=False)
    resumed = denoiser_trainer(cfg, smoke_data, tmp_path / "b.ckpt")
    assert resumed.iteration == 3
    resumed.fit(progress=False)
    for name, module in straight.method.modules().items():
        other = resumed.method.modules()[name].state_dict()
        for k, v in module.state_dict().items():
            assert torch.equal(v, other[k]), f"{name}.{k} differs after resume"
    assert resumed.history["loss" if method == "cnn10" else "mse"] == \
        straight.history["loss" if method == "cnn10" else "mse"]


def test_non_finite_loss_stops_and_keeps_last_checkpoint(smoke_data, tmp_path):
    cfg = TrainConfig(method="cnn10", iterations=10, batch_size=2, patch_size=40, checkpoint_every=4)
    t = denoiser_trainer(cfg, smoke_data, tmp_path / "c.ckpt")
    orig = t._next_batch

    def poisoned():
        low, full = orig()
        return (low * float("nan"), full) if t.iteration == 6 else (low, full)

    t._next_batch = poisoned
    with pytest.raises(TrainingDiverged, match=r"iteration 7.*last good checkpoint \(iteration 4\)"):
        t.fit(progress=False)
    assert torch.load(tmp_path / "c.ckpt", weights_only=True)["iteration"] == 4
    with pytest.raises(ValueError, match="unknown training method"):
        TrainConfig.from_dict({"method": "gauss_ri"})


def test_finished_model_is_cached(smoke_data, monkeypatch):
    cfg = TrainConfig(method="cnn10", iterations=3, batch_size=2, patch_size=40)
    m1, rec, path = train_or_load(cfg, smoke_data, "smoke-key", progress=False)
    assert path.is_file() and not path.with_suffix(".ckpt").exists() and len(rec["history"]["loss"]) == 3
    monkeypatch.setattr(loop.Trainer, "fit", lambda *a, **k: pytest.fail("retrained a cached model"))
    m2, _, path2 = train_or_load(cfg, smoke_data, "smoke-key", progress=False)
    assert path2 == path
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


@pytest.mark.slow
def test_quick_preset_cnn10_beats_low_dose_on_test_patients():
    """Train CNN-10 with the quick preset's settings on the quick data; it must beat the low-dose
    input in PSNR on the test patients of every region."""
    from ctinv_utils.data.dataset import load_data
    from ctinv_utils.training.evaluation import evaluate
    from ctinv_utils.presets import load_preset
    from ctinv_utils.data.sampling import split_patients

    preset = load_preset("quick")
    data = load_data(None, preset["common"]["simulation"], progress=False)
    split = split_patients(data, seed=preset["seed"])
    cfg = TrainConfig.from_dict({"method": "cnn10", "seed": preset["seed"],
                                 **preset["notebooks"]["02_denoiser_training"]["cnn10"]})
    model, _, _ = train_or_load(cfg, data.subset(split["train"]), "quick-test", progress=False)
    rows = evaluate({"cnn10": model}, data, split["test"], progress=False)
    for region in ("head", "chest", "abdomen"):
        psnr = {r["method"]: r["psnr"] for r in rows if r["region"] == region}
        assert psnr["cnn10"] > psnr["low dose"] + 0.5, (region, psnr)
