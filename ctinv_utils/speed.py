"""Speed settings that keep results, applied by default: no flag, no environment variable.

* **Allocator** (CPU): glibc returns every freed block above its mmap threshold (128 KiB by default,
  adapting upwards) to the OS and trims the heap, so each iteration of an optimisation loop pays page
  faults for its large tensors again: measured here, a third of the CPU time. ``tune_allocator()``
  raises both thresholds with ``mallopt`` at run time (what ``GLIBC_TUNABLES`` does before start-up).
  The memory stays with the process instead of going back to the OS between iterations.
* **Input gradients of single-channel convolutions** (:func:`fast_input_gradients`): an invariance
  needs dL/dx only. For a frozen convolution with one input channel (CNN-10's 1->64 9x9, WGAN-VGG's
  first layer) oneDNN's backward-data kernel is slow on CPU (measured here at 256 px, batch 8: 450-580
  ms against 120 ms for the forward), so within :func:`fast_input_gradients` such layers compute it as
  one matmul and a col2im (``F.fold``): about 160 ms, and one CNN-10 step in about half the time. The
  values agree to float rounding (another summation order).
* **channels_last** convolutions: oneDNN's fastest layout on CPU (about 1.5x for CNN-10 here) and the
  tensor-core layout on GPU. ``channels_last(module)`` converts a module's 4-D weights in place; its
  values do not change, the conv algorithm does (results agree to float rounding).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import types

_ALLOCATOR_TUNED: bool | None = None
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = 2**31 - 1


def tune_allocator() -> bool:
    """Keep freed memory in the process (glibc only; once per process). Returns whether it applied."""
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


def channels_last(module):
    """Convert a module's 4-D parameters and buffers to channels_last in place; returns it."""
    return module.to(memory_format=__import__("torch").channels_last)


def _input_grad_conv():
    import torch
    import torch.nn.functional as F

    class FrozenConvInputGrad(torch.autograd.Function):
        """``conv2d(x, w, b, padding)`` (stride 1, one input channel, frozen ``w``) whose backward
        returns dL/dx only: ``w^T g`` as a matmul, then col2im."""

        @staticmethod
        def forward(ctx, x, weight, bias, padding):
            ctx.save_for_backward(weight)
            ctx.padding, ctx.size = padding, tuple(x.shape[-2:])
            return F.conv2d(x, weight, bias, padding=padding)

        @staticmethod
        def backward(ctx, grad):
            (weight,) = ctx.saved_tensors
            B, C, H, W = grad.shape
            w = weight.reshape(C, -1)  # (C, kh*kw)
            # (a channels_last gradient is copied to NCHW: cheaper than col2im on a transposed matrix)
            cols = torch.matmul(w.t(), grad.contiguous().reshape(B, C, H * W))
            return F.fold(cols, ctx.size, weight.shape[-2:], padding=ctx.padding), None, None, None

    return FrozenConvInputGrad


_FUNCTION = None


def _eligible(m) -> bool:
    import torch

    return (isinstance(m, torch.nn.Conv2d) and m.in_channels == 1 and m.groups == 1 and m.stride == (1, 1)
            and m.dilation == (1, 1) and m.padding_mode == "zeros" and not isinstance(m.padding, str)
            and not m.weight.requires_grad and (m.bias is None or not m.bias.requires_grad))


def _fast_forward(conv, x):
    import torch

    if not (torch.is_grad_enabled() and x.requires_grad) or conv.weight.requires_grad or x.device.type != "cpu":
        return conv._conv_forward(x, conv.weight, conv.bias)
    return _FUNCTION.apply(x, conv.weight, conv.bias, conv.padding)


@contextlib.contextmanager
def fast_input_gradients(module):
    """Within the block, calls of ``module`` compute input gradients of its frozen single-channel
    convolutions by matmul + col2im on the CPU (module docstring); on exit the layers are as before.
    Forward values are unchanged; layers with trainable weights, other devices and forward-mode AD
    outside the block are untouched."""
    global _FUNCTION
    if _FUNCTION is None:
        _FUNCTION = _input_grad_conv()
    patched = [m for m in module.modules() if _eligible(m) and "forward" not in vars(m)]
    for m in patched:
        m.forward = types.MethodType(_fast_forward, m)
    try:
        yield module
    finally:
        for m in patched:
            del m.forward
