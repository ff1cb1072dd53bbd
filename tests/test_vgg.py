"""VGG without torchvision: key names, loading by path, hash check, offline errors, fallback."""

import pytest
import torch

from ctinv_utils.models.vgg import RANDOM_INIT_LABEL, VGGFeatures, VGGWeightsError, ct_to_vgg_input, load_vgg

# torchvision.models.vgg16().state_dict() / vgg19(): features.* keys (classifier.* left out)
TORCHVISION_VGG16_FEATURES = [f"features.{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
                              for p in ("weight", "bias")]
TORCHVISION_VGG19_FEATURES = [f"features.{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
                              for p in ("weight", "bias")]
TORCHVISION_CLASSIFIER = [f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]


@pytest.fixture(autouse=True)
def empty_hub(tmp_path, monkeypatch):
    """No cached weights and no environment overrides: what a fresh offline machine sees."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("CTINV_VGG16_WEIGHTS", raising=False)
    monkeypatch.delenv("CTINV_VGG19_WEIGHTS", raising=False)


def test_keys_match_torchvision():
    assert sorted(VGGFeatures("vgg16").state_dict()) == sorted(TORCHVISION_VGG16_FEATURES)
    assert sorted(VGGFeatures("vgg19").state_dict()) == sorted(TORCHVISION_VGG19_FEATURES)
    m = VGGFeatures("vgg19")
    assert m.names[34] == "conv5_4" and m.names[35] == "relu5_4"
    out = m(torch.randn(1, 3, 32, 32), layers=("relu2_2", "relu5_4"))
    assert out["relu2_2"].shape == (1, 128, 16, 16) and out["relu5_4"].shape == (1, 512, 2, 2)


def _torchvision_like_file(path, arch, seed=1):
    gen = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=gen) for k, v in VGGFeatures(arch).state_dict().items()}
    state.update({k: torch.zeros(2) for k in TORCHVISION_CLASSIFIER})
    torch.save(state, path)
    return state


def test_loads_by_path_and_by_environment(tmp_path, monkeypatch):
    state = _torchvision_like_file(tmp_path / "my_vgg16.pth", "vgg16")
    m = load_vgg("vgg16", path=tmp_path / "my_vgg16.pth")
    assert torch.equal(m.features[28].weight, state["features.28.weight"])
    assert not any(p.requires_grad for p in m.parameters()) and "ImageNet" in m.weights_source
    monkeypatch.setenv("CTINV_VGG16_WEIGHTS", str(tmp_path / "my_vgg16.pth"))
    assert torch.equal(load_vgg("vgg16").features[0].bias, state["features.0.bias"])


def test_missing_weights_offline_is_one_clear_error(tmp_path):
    with pytest.raises(VGGWeightsError, match=r"VGG16 weights not found.*python -m ctinv_utils vgg download vgg16"):
        load_vgg("vgg16")
    with pytest.raises(VGGWeightsError, match="does not exist"):
        load_vgg("vgg16", path=tmp_path / "nope.pth")


def test_hash_and_architecture_checks(tmp_path):
    bad = tmp_path / "vgg16-397923af.pth"  # torchvision's name, other content
    _torchvision_like_file(bad, "vgg16")
    with pytest.raises(VGGWeightsError, match="SHA-256"):
        load_vgg("vgg16", path=bad)
    _torchvision_like_file(tmp_path / "v19.pth", "vgg19")
    with pytest.raises(VGGWeightsError, match="another architecture"):
        load_vgg("vgg16", path=tmp_path / "v19.pth")


def test_random_fallback_only_when_allowed_and_labelled():
    with pytest.warns(UserWarning, match="random init"):
        a = load_vgg("vgg16", allow_random=True, seed=3)
    with pytest.warns(UserWarning):
        b = load_vgg("vgg16", allow_random=True, seed=3)
    assert a.weights_source == RANDOM_INIT_LABEL
    assert torch.equal(a.features[0].weight, b.features[0].weight)  # seeded


def test_ct_to_vgg_input_scaling():
    from ctinv_utils.units import hu_to_norm

    x = hu_to_norm(torch.tensor([-1024.0, 0.0, 1024.0]).view(1, 1, 1, 3))
    v = ct_to_vgg_input(x)
    assert v.shape == (1, 3, 1, 3)
    # [-1024, 1024] HU -> [0, 1], then ImageNet standardisation (red channel shown)
    assert torch.allclose(v[0, 0, 0], (torch.tensor([0.0, 0.5, 1.0]) - 0.485) / 0.229, atol=1e-5)
