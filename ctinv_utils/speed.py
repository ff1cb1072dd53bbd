"""Speed settings that keep results, applied by default: no flag, no environment variable.

* :func:`tune_allocator`: freed memory stays in the process instead of paying page faults again at
  every iteration of an optimisation loop (glibc).
* :func:`fast_input_gradients`: frozen convolutions with one input or one output channel, where
  oneDNN is slow on the CPU, run as one matmul and shifted sums inside an input-gradient pass.
* :func:`channels_last`: oneDNN's fastest layout on the CPU, the tensor-core layout on a GPU.
* :func:`autocast` (``precision="auto"``): where the hardware multiplies bf16 matrices (AMX on recent
  Xeons, CUDA GPUs) the VGG16 feature stack of the perceptual *distance* runs in bf16, its image
  layers and the comparison in fp32. The invariance itself (denoiser, bounded MSE, (1-SSIM)/2) runs
  in fp32 (its targets are 1e-3 normalized units), and so does training (bf16 cost image quality).

The first three give the same values to float rounding. Measurements: the documentation's
performance notes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import types

_ALLOCATOR_TUNED: bool | None = None
PRECISIONS = ("auto", "fp32", "bf16")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = 2**31 - 1


def tune_allocator() -> bool:
    """Keep freed memory in the process (glibc only; once per process). Returns whether it applied.

    glibc returns every freed block above its mmap threshold to the OS and trims the heap, so each
    iteration of an optimisation loop pays page faults for its large tensors again; ``mallopt``
    raises both thresholds at run time (what ``GLIBC_TUNABLES`` does before start-up)."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is None:
        _ALLOCATOR_TUNED = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                ok &= libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
                _ALLOCATOR_TUNED = bool(ok)
            except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
                pass
    return _ALLOCATOR_TUNED


def bf16_matrix_units(device="cpu") -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware: AMX tiles on a CPU (what PyTorch's
    oneDNN uses for bf16 convolutions; without them bf16 is emulated and slower than fp32), bf16
    support on a CUDA GPU; never elsewhere."""
    import torch

    dev = torch.device(device)
    if dev.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(amx is not None and amx())
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return False


def resolve_precision(precision: str, device="cpu") -> str:
    """``"auto"`` -> ``"bf16"`` where :func:`bf16_matrix_units`, else ``"fp32"``; the others as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_matrix_units(device) else "fp32"
    return precision


def _image_layer(m) -> bool:
    """A convolution that reads an image (at most 3 input channels) or writes one (1 output channel)."""
    import torch

    return isinstance(m, torch.nn.Conv2d) and (m.in_channels <= 3 or m.out_channels == 1)


def _fp32_forward(conv, x):
    import torch

    with torch.autocast(x.device.type, enabled=False):
        return conv._conv_forward(x.float(), conv.weight, conv.bias)


@contextlib.contextmanager
def autocast(precision: str, module, device="cpu"):
    """Calls of ``module`` within the block run in bf16 autocast on ``device`` when ``precision``
    resolves to bf16 (else the block changes nothing), except its image layers (convolutions with at
    most 3 input channels or 1 output channel), which stay fp32: bf16 keeps 8 bits of mantissa, so an
    image of ~1000 HU rounded to bf16 moves by up to 4 HU, the size of the noise a denoiser removes.
    Those layers hold few of the FLOPs. Cast the outputs to fp32 for what follows."""
    import torch

    if resolve_precision(precision, device) != "bf16":
        yield module
        return
    with _patched_forwards(module, _image_layer, _fp32_forward), \
            torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        yield module


@contextlib.contextmanager
def _patched_forwards(module, select, forward):
    """Within the block, every submodule ``m`` of ``module`` with ``select(m)`` runs
    ``forward(m, *args)`` instead of its class's ``forward``; on exit (also on an error) the
    instance attribute is removed, so the module is as before. A submodule that already carries an
    instance ``forward`` (an outer block's, or the user's) is left to it."""
    patched = [m for m in module.modules() if select(m) and "forward" not in vars(m)]
    for m in patched:
        m.forward = types.MethodType(forward, m)
    try:
        yield module
    finally:
        for m in patched:
            del m.forward


def channels_last(module):
    """Convert a module's 4-D parameters and buffers to channels_last in place; returns it."""
    return module.to(memory_format=__import__("torch").channels_last)


def _channel_matrix(t):
    """``(B, C, H, W)`` as a ``(B, C, H*W)`` matrix, a view for both NCHW and channels_last (a matmul
    reads the transposed layout in place: a copy of a 64-channel map cost more than the matmul)."""
    import torch

    B, C, H, W = t.shape
    if t.is_contiguous():
        return t.reshape(B, C, H * W)
    if t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(B, H * W, C).transpose(1, 2)
    return t.reshape(B, C, H * W)


def _sum_shifted(maps, offsets, size):
    """``out[b, p] = sum_k maps[b, k, p + offsets[k]]``, zero where ``p + offset`` falls outside
    ``maps``; ``maps`` ``(B, K, h, w)``, ``size`` = (H, W) of ``out``; returns ``(B, 1, H, W)``."""
    import torch

    B, _, h, w = maps.shape
    H, W = size
    out = torch.zeros(B, H, W, dtype=maps.dtype, device=maps.device)
    for k, (di, dj) in enumerate(offsets):
        y0, y1, x0, x1 = max(0, -di), min(H, h - di), max(0, -dj), min(W, w - dj)
        if y0 < y1 and x0 < x1:
            out[:, y0:y1, x0:x1] += maps[:, k, y0 + di:y1 + di, x0 + dj:x1 + dj]
    return out.unsqueeze(1)


def _offsets(kernel, padding, sign):
    kh, kw = kernel
    ph, pw = padding
    return [(sign * (i - ph), sign * (j - pw)) for i in range(kh) for j in range(kw)]


def _single_channel_functions():
    import torch
    import torch.nn.functional as F

    class InputChannelConv(torch.autograd.Function):
        """``conv2d(x, w, b, padding)`` (stride 1, **one input channel**, frozen ``w``) whose backward
        returns dL/dx only: ``w^T g`` as one matmul over the output channels, then the kh*kw planes
        summed at their shifts (the transposed convolution)."""

        @staticmethod
        def forward(ctx, x, weight, bias, padding):
            ctx.save_for_backward(weight)
            ctx.padding, ctx.size = tuple(padding), tuple(x.shape[-2:])
            return F.conv2d(x, weight, bias, padding=padding)

        @staticmethod
        def backward(ctx, grad):
            (weight,) = ctx.saved_tensors
            B, C, Ho, Wo = grad.shape
            kernel = tuple(weight.shape[-2:])
            cols = torch.matmul(weight.reshape(C, -1).t(), _channel_matrix(grad))  # (B, kh*kw, Ho*Wo)
            dx = _sum_shifted(cols.view(B, -1, Ho, Wo), _offsets(kernel, ctx.padding, -1), ctx.size)
            return dx, None, None, None

    class OutputChannelConv(torch.autograd.Function):
        """``conv2d(x, w, b, padding)`` (stride 1, **one output channel**, frozen ``w``): the forward as
        one matmul over the input channels and the kh*kw planes summed at their shifts; the backward
        returns dL/dx only (oneDNN's backward-data, fast for this shape)."""

        @staticmethod
        def forward(ctx, x, weight, bias, padding):
            ctx.save_for_backward(weight)
            ctx.padding, ctx.shape = tuple(padding), tuple(x.shape)
            B, C, H, W = x.shape
            kernel = tuple(weight.shape[-2:])
            size = (H + 2 * ctx.padding[0] - kernel[0] + 1, W + 2 * ctx.padding[1] - kernel[1] + 1)
            planes = torch.matmul(weight.reshape(C, -1).t(), _channel_matrix(x))  # (B, kh*kw, H*W)
            out = _sum_shifted(planes.view(B, -1, H, W), _offsets(kernel, ctx.padding, 1), size)
            return out if bias is None else out + bias.view(1, 1, 1, 1)

        @staticmethod
        def backward(ctx, grad):
            (weight,) = ctx.saved_tensors
            dx = torch.nn.grad.conv2d_input(ctx.shape, weight, grad, padding=ctx.padding)
            return dx, None, None, None

    return InputChannelConv, OutputChannelConv


_FUNCTIONS = None


def _eligible(m) -> bool:
    import torch

    return (isinstance(m, torch.nn.Conv2d) and (m.in_channels == 1 or m.out_channels == 1) and m.groups == 1
            and m.stride == (1, 1) and m.dilation == (1, 1) and m.padding_mode == "zeros"
            and not isinstance(m.padding, str) and not m.weight.requires_grad
            and (m.bias is None or not m.bias.requires_grad))


def _fast_forward(conv, x):
    import torch

    if not (torch.is_grad_enabled() and x.requires_grad) or conv.weight.requires_grad or x.device.type != "cpu":
        return conv._conv_forward(x, conv.weight, conv.bias)
    input_channel, output_channel = _FUNCTIONS
    function = input_channel if conv.in_channels == 1 else output_channel
    return function.apply(x, conv.weight, conv.bias, conv.padding)


@contextlib.contextmanager
def fast_input_gradients(module):
    """Within the block, calls of ``module`` that need an input gradient run its frozen convolutions
    with one input or one output channel as one batched matmul over the channels and a sum of
    ``kh * kw`` shifted planes on the CPU. oneDNN is slow wherever a convolution has one channel on
    the side it reduces into: the backward-data of a 1-input-channel convolution (CNN-10's first
    layer) and the forward of a 1-output-channel one (its last). On exit the layers are as before.
    Values agree to float rounding; calls without an input gradient, layers with trainable weights,
    other devices and forward-mode AD outside the block are untouched."""
    global _FUNCTIONS
    if _FUNCTIONS is None:
        _FUNCTIONS = _single_channel_functions()
    with _patched_forwards(module, _eligible, _fast_forward):
        yield module
