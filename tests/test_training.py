"""Training: exact resume after a kill, divergence handling, model cache, and that CNN-10 learns."""

import pytest
import torch

from ctinv_utils.training import loop, model_cache
from ctinv_utils.training.loop import TrainingDiverged
from ctinv_utils.training.methods import TrainConfig, denoiser_trainer
from ctinv_utils.training.evaluation import worse_than_input
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
    # the GAN phase with its own fresh optimizer (created at iteration 2) and a critic warm-up
    ("wganvgg", {"pretrain_iterations": 2, "vgg_weights": "imagenet_or_random", "gan_lr": 2e-5, "critic_lr": 1e-4,
                 "gan_betas": [0.5, 0.9], "critic_warmup": 2}),
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


def test_damaged_cached_model_is_retrained_not_reused(smoke_data):
    """Bytes flipped in the middle of a cached model keep the zip readable (a weight of 1e28 would
    load silently): the checksum recorded at the write finds it, and the model is trained again."""
    cfg = TrainConfig(method="cnn10", iterations=3, batch_size=2, patch_size=40, seed=11)
    m1, _, path = train_or_load(cfg, smoke_data, "damage-key", progress=False)
    assert path.with_name(path.name + ".sha256").is_file()
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 40] = bytes(b ^ 0xFF for b in raw[mid:mid + 40])
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match=r"cached model .*differs from the one recorded.*trained again"):
        m2, _, path2 = train_or_load(cfg, smoke_data, "damage-key", progress=False)
    assert path2 == path and path.with_name(path.name + ".sha256").is_file()
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    path.with_name(path.name + ".sha256").unlink()  # an entry without its checksum is not trusted either
    with pytest.warns(UserWarning, match="no checksum recorded"):
        train_or_load(cfg, smoke_data, "damage-key", progress=False)


@pytest.mark.reproduction
@pytest.mark.filterwarnings("ignore:VGG. random init")
def test_quick_preset_denoisers_beat_low_dose_on_test_patients():
    """Train CNN-10 and WGAN-VGG with the quick preset's settings on the quick data: each must beat the
    low-dose input in PSNR and in SSIM on the test patients of every region (an invariance of a network
    that does not denoise answers nothing)."""
    from ctinv_utils.data.dataset import load_data
    from ctinv_utils.data.sampling import split_patients
    from ctinv_utils.pipeline.presets import load_preset, notebook_settings
    from ctinv_utils.recipes import train_denoisers
    from ctinv_utils.training.evaluation import evaluate, worse_than_input
    from ctinv_utils.training.model_cache import training_data_key

    nb02 = notebook_settings(load_preset("quick"), "02_denoiser_training")  # what notebook 02 runs with
    data = load_data(None, nb02.simulation, progress=False)
    split = split_patients(data, seed=nb02.seed)
    models, _, _ = train_denoisers(nb02, data.subset(split["train"]), training_data_key(data, split), progress=False)
    models.pop("gauss_ri")
    rows = evaluate(models, data, split["test"], progress=False)
    assert {r["region"] for r in rows} == {"head", "chest", "abdomen"}
    assert worse_than_input(rows, models) == [], rows


def test_worse_than_input_flags_a_non_denoiser():
    rows = [{"method": "low dose", "region": "head", "psnr": 20.0, "ssim": 0.80},
            {"method": "a", "region": "head", "psnr": 22.0, "ssim": 0.79},
            {"method": "b", "region": "head", "psnr": 21.0, "ssim": 0.85}]
    bad = worse_than_input(rows, ["a", "b"])
    assert [r["method"] for r in bad] == ["a"] and bad[0]["ssim_gain"] == pytest.approx(-0.01)


def test_two_runs_of_one_config_at_once_train_once(smoke_data, tmp_path, monkeypatch):
    """Issue 14: a second run of the same configuration waits for the first (a lock per cache entry)
    and loads its model; it never trains beside it (and deletes its checkpoint)."""
    import threading
    import time

    monkeypatch.setenv("CTINV_CACHE", str(tmp_path))
    calls, real = [], model_cache.denoiser_trainer

    def counted(*a, **k):
        calls.append(threading.get_ident())
        time.sleep(0.5)  # both threads are inside train_or_load by now
        return real(*a, **k)

    monkeypatch.setattr(model_cache, "denoiser_trainer", counted)
    cfg = TrainConfig(method="cnn10", iterations=3, batch_size=2, patch_size=40)
    out = []
    threads = [threading.Thread(target=lambda: out.append(model_cache.train_or_load(cfg, smoke_data, "k", progress=False)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(out) == 2 and len(calls) == 1
    a, b = (dict(m.state_dict()) for m, _, _ in out)
    assert all(torch.equal(a[k], b[k]) for k in a)
