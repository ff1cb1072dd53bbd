"""The three denoisers and checkpoint loading."""

import argparse

import numpy as np
import pytest
import torch
from scipy import ndimage

from ctinv_utils.models import (CNN10, WGANVGG, CheckpointError, GaussRI, WGANCritic, build_denoiser,
                                   central_square, load_denoiser)

# ldct-benchmark's CNN-10 layout (ldctbench/methods/cnn10/network.py): layers = ModuleList of
# Conv(1,64,9), ReLU, Conv(64,32,3), ReLU, Conv(32,1,5)
LDCT_BENCHMARK_CNN10 = {
    "layers.0.weight": (64, 1, 9, 9), "layers.0.bias": (64,),
    "layers.2.weight": (32, 64, 3, 3), "layers.2.bias": (32,),
    "layers.4.weight": (1, 32, 5, 5), "layers.4.bias": (1,),
}


def test_cnn10_loads_an_ldct_benchmark_checkpoint(tmp_path):
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=gen) * 0.1 for k, s in LDCT_BENCHMARK_CNN10.items()}
    # ldct-benchmark saves {"model_state_dict": ..., "args": Namespace(...)}
    path = tmp_path / "cnn10.pt"
    torch.save({"model_state_dict": state, "args": argparse.Namespace(lr=1e-4)}, path)
    model = load_denoiser("cnn10", path)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == LDCT_BENCHMARK_CNN10
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.randn(2, 1, 24, 24, generator=gen)
    F = torch.nn.functional
    ref = F.conv2d(F.relu(F.conv2d(F.relu(F.conv2d(x, state["layers.0.weight"], state["layers.0.bias"], padding=4)),
                                   state["layers.2.weight"], state["layers.2.bias"], padding=1)),
                   state["layers.4.weight"], state["layers.4.bias"], padding=2)
    assert torch.allclose(model(x), ref, atol=1e-5)


def test_wganvgg_generator_and_critic_layout():
    g = WGANVGG()
    convs = [m for m in g.net if isinstance(m, torch.nn.Conv2d)]
    relus = [m for m in g.net if isinstance(m, torch.nn.ReLU)]
    assert len(convs) == 8 and len(relus) == 7 and isinstance(g.net[-1], torch.nn.Conv2d)
    assert [c.out_channels for c in convs] == [32] * 7 + [1] and all(c.kernel_size == (3, 3) for c in convs)
    assert "net.14.weight" in g.state_dict()  # ldct-benchmark's keys
    c = WGANCritic(64)
    assert [m.stride[0] for m in c.net if isinstance(m, torch.nn.Conv2d)] == [1, 2, 1, 2, 1, 2]
    assert [m.out_channels for m in c.net if isinstance(m, torch.nn.Conv2d)] == [64, 64, 128, 128, 256, 256]
    assert c.fc1.out_features == 1024 and c(torch.randn(3, 1, 64, 64)).shape == (3, 1)
    with pytest.raises(ValueError, match="too small"):
        WGANCritic(20)


@pytest.mark.parametrize("shape", [(64, 64), (65, 80), (30, 30)])
def test_gauss_ri_is_zero_in_square_and_gaussian_elsewhere(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 1, *shape))
    y = GaussRI()(torch.from_numpy(x)).numpy()
    rows, cols = central_square(*shape)
    assert rows.stop - rows.start == 30 and cols.stop - cols.start == 30
    assert abs((rows.start + rows.stop) / 2 - shape[0] / 2) <= 0.5
    inside = np.zeros(shape, bool)
    inside[rows, cols] = True
    assert (y[:, :, inside] == 0).all()
    for b in range(2):
        ref = ndimage.gaussian_filter(x[b, 0], sigma=1.0, mode="mirror")
        assert np.allclose(y[b, 0][~inside], ref[~inside], atol=1e-10)
    with pytest.raises(ValueError, match="smaller than"):
        GaussRI()(torch.zeros(1, 1, 29, 40))


def test_bad_names_and_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="unknown denoiser 'redcnn'"):
        build_denoiser("redcnn")
    wrong = {k: torch.zeros(s) for k, s in LDCT_BENCHMARK_CNN10.items()}
    wrong["layers.2.weight"] = torch.zeros(32, 64, 5, 5)
    torch.save(wrong, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"layers\.2\.weight has shape \(32, 64, 5, 5\)"):
        load_denoiser("cnn10", tmp_path / "shape.pt")
    torch.save(CNN10(), tmp_path / "module.pt")  # a pickled module, not a state dict
    with pytest.raises(CheckpointError, match="weights-only"):
        load_denoiser("cnn10", tmp_path / "module.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_denoiser("cnn10", tmp_path / "list.pt")
    torch.save(WGANVGG().state_dict(), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_denoiser("cnn10", tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_denoiser("cnn10", tmp_path / "nope.pt")
