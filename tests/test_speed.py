"""The speed-ups that must keep results: frozen convolutions with one input or one output channel in
an input-gradient pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctinv_utils.models import CNN10, WGANVGG, freeze
from ctinv_utils.speed import channels_last, fast_input_gradients


def _input_grad(model, x, g):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x), x, g)
    return grad


@pytest.mark.parametrize("build", [CNN10, WGANVGG])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_fast_input_gradient_equals_autograd(build, layout):
    torch.manual_seed(0)
    model = freeze(build())
    if layout == "channels_last":
        channels_last(model)
    x, g = torch.randn(3, 1, 37, 41), torch.randn(3, 1, 37, 41)  # odd sizes: padding and fold agree
    ref = _input_grad(model, x, g)
    with fast_input_gradients(model) as m:
        fast = _input_grad(m, x, g)
        assert any("forward" in vars(c) for c in model.modules())  # the first conv is swapped in the block
    assert torch.allclose(fast, ref, rtol=1e-4, atol=1e-5 * ref.abs().max())
    with fast_input_gradients(model) as m:  # the forward of the last (one-output-channel) conv too
        y = m(x.clone().requires_grad_(True))
    assert torch.allclose(y, model(x), rtol=1e-5, atol=1e-6)
    assert not any("forward" in vars(c) for c in model.modules())  # restored on exit


@pytest.mark.parametrize("conv", [nn.Conv2d(1, 6, (5, 3), padding=(2, 0)), nn.Conv2d(5, 1, (3, 5), padding=(0, 2)),
                                  nn.Conv2d(1, 3, 3, padding=0, bias=False), nn.Conv2d(4, 1, 1, padding=1)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_single_channel_convolutions_equal_conv2d_in_value_and_input_gradient(conv, layout):
    """Ground truth is PyTorch's own conv2d, for kernels, paddings and output sizes other than
    'same' (the shifted sums must place every plane where the convolution puts it)."""
    torch.manual_seed(0)
    conv = freeze(conv)
    x = torch.randn(2, conv.in_channels, 11, 9)
    if layout == "channels_last":
        channels_last(conv)
        x = x.contiguous(memory_format=torch.channels_last)
    ref_x, fast_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ref = conv(ref_x)
    with fast_input_gradients(conv):
        assert "forward" in vars(conv)
        fast = conv(fast_x)
    assert fast.shape == ref.shape
    assert torch.allclose(fast, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ref)
    (g_ref,), (g_fast,) = torch.autograd.grad(ref, ref_x, g), torch.autograd.grad(fast, fast_x, g)
    assert torch.allclose(g_fast, g_ref, rtol=1e-5, atol=1e-5)


def test_fast_input_gradients_leave_trainable_layers_and_forward_mode_alone():
    torch.manual_seed(0)
    model = CNN10()  # trainable: weight gradients must flow as usual
    x = torch.randn(2, 1, 16, 16)
    with fast_input_gradients(model):
        model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    frozen = freeze(CNN10())
    with fast_input_gradients(frozen):
        with torch.no_grad():
            y = frozen(x)
    assert torch.equal(y, frozen(x))  # forward values unchanged
    # outside the block, forward-mode AD (the linearised invariances) works as before
    _, jvp = torch.func.jvp(frozen, (x,), (torch.ones_like(x),))
    assert torch.isfinite(jvp).all()


def test_other_convolutions_are_not_swapped():
    net = freeze(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 1, 3, stride=2, padding=1)))
    with fast_input_gradients(net):
        assert not any("forward" in vars(c) for c in net.modules())


def test_vgg_against_equals_the_plain_distance_in_value_and_gradient():
    """against() skips materialising the normalized features: same value and gradient as forward()."""
    from ctinv_utils.synthesis.distances import get_distance

    d = get_distance("vgg", vgg_allow_random=True, seed=0, vgg_precision="fp32")  # the formula, not bf16
    torch.manual_seed(0)
    a = 1.0 + 0.3 * torch.randn(1, 1, 40, 36)
    b = (a + 0.1 * torch.randn(3, 1, 40, 36)).requires_grad_(True)
    plain = d(a.expand(3, -1, -1, -1), b)
    (g_plain,) = torch.autograd.grad(plain.sum(), b)
    fast = d.against(a)(b)
    (g_fast,) = torch.autograd.grad(fast.sum(), b)
    assert torch.allclose(fast, plain, rtol=1e-4, atol=1e-7), (fast, plain)
    assert torch.allclose(g_fast, g_plain, rtol=1e-3, atol=1e-4 * g_plain.abs().max())
    assert float(d.against(a)(a)) == pytest.approx(0.0, abs=1e-6)  # zero at b = a


def test_auto_precision_is_bf16_only_where_the_hardware_multiplies_bf16(monkeypatch):
    """'auto' follows the hardware; without bf16 units nothing is autocast (the result is fp32's)."""
    from ctinv_utils import speed

    assert speed.resolve_precision("auto", "cpu") == ("bf16" if speed.bf16_matrix_units("cpu") else "fp32")
    assert speed.resolve_precision("fp32", "cpu") == "fp32" and speed.resolve_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not speed.bf16_matrix_units("cpu") and speed.resolve_precision("auto", "cpu") == "fp32"
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 1, 3))
    x = torch.randn(1, 1, 12, 12)
    with speed.autocast("auto", net, "cpu") as m:
        assert m[1](m[0](x)).dtype == torch.float32
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    first_fp32 = net[0](x)
    with speed.autocast("auto", net, "cpu") as m:
        # bf16 inside, fp32 in the layers that read or write the image (1 channel in or out)
        assert m[1](m[0](x)).dtype == torch.bfloat16
        assert m[0](x).dtype == m(x).dtype == torch.float32
        assert torch.equal(m[0](x), first_fp32)
    assert not any("forward" in vars(layer) for layer in net)  # as before after the block
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        speed.resolve_precision("fp16", "cpu")


def test_vgg_distance_in_bf16_keeps_value_and_gradient_direction():
    """The VGG16 feature stack in bf16 (what 'auto' runs on AMX CPUs): the distance within 2 % of
    fp32's, its input gradient within 10 degrees, in fp32 out; and the notes say which ran."""
    from ctinv_utils.synthesis.distances import get_distance

    torch.manual_seed(0)
    a = 1.0 + 0.3 * torch.randn(1, 1, 48, 48)
    b = (a + 0.2 * torch.randn(2, 1, 48, 48)).requires_grad_(True)
    values, grads = {}, {}
    for p in ("fp32", "bf16"):
        d = get_distance("vgg", vgg_allow_random=True, seed=0, vgg_precision=p)
        values[p] = d.against(a)(b)
        (grads[p],) = torch.autograd.grad(values[p].sum(), b)
        assert values[p].dtype == grads[p].dtype == torch.float32
        assert d.describe("cpu").endswith(f"features in {p}")
    assert torch.allclose(values["bf16"], values["fp32"], rtol=0.02), values
    cos = torch.nn.functional.cosine_similarity(grads["bf16"].flatten(1), grads["fp32"].flatten(1))
    assert (cos > 0.985).all(), cos  # 10 degrees; measured 7 (0.992)
    with pytest.raises(ValueError, match="precision"):
        get_distance("vgg", vgg_allow_random=True, vgg_precision="half")
