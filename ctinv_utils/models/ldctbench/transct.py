"""TransCT (Zhang et al., "TransCT: dual-path transformer for low dose computed tomography", MICCAI
2021) as ldct-benchmark builds it, with the Gaussian low-pass written here (no torchvision)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .sizes import check_input


class GaussianBlur(nn.Module):
    """Parameter-free Gaussian blur, ``(B, C, H, W)`` in and out, computed exactly as torchvision's
    ``transforms.GaussianBlur(kernel_size, sigma)`` with a fixed sigma does on a float tensor (its
    ``_functional_tensor.gaussian_blur``): a normalised 1-D kernel sampled at integer offsets in the
    input's dtype, their outer product, reflect padding of ``kernel_size // 2``, a depthwise
    convolution. (torchvision also draws one number from the global RNG to "choose" the fixed sigma;
    this module leaves the RNG alone.) Needs ``H, W > kernel_size // 2``."""

    def __init__(self, kernel_size: int = 11, sigma: float = 1.5):
        super().__init__()
        if kernel_size <= 0 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.kernel_size = kernel_size
        self.sigma = float(sigma)

    def kernel2d(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The ``(kernel_size, kernel_size)`` kernel, summing to 1."""
        half = (self.kernel_size - 1) * 0.5
        x = torch.linspace(-half, half, steps=self.kernel_size, dtype=dtype, device=device)
        pdf = torch.exp(-0.5 * (x / self.sigma).pow(2))
        k1 = pdf / pdf.sum()
        return torch.mm(k1[:, None], k1[None, :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel2d(x.dtype, x.device)
        kernel = kernel.expand(x.shape[-3], 1, kernel.shape[0], kernel.shape[1])
        p = self.kernel_size // 2
        x = F.pad(x, [p, p, p, p], mode="reflect")
        return F.conv2d(x, kernel, groups=x.shape[-3])

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}"


class SpaceToDepth(nn.Module):
    """TensorFlow's ``space_to_depth``: ``(N, C, H, W)`` -> ``(N, C*bs^2, H/bs, W/bs)``."""

    def __init__(self, block_size: int):
        super().__init__()
        self.bs = block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.size()
        x = x.view(n, c, h // self.bs, self.bs, w // self.bs, self.bs)
        x = x.permute(0, 3, 5, 1, 2, 4).contiguous()
        return x.view(n, c * (self.bs ** 2), h // self.bs, w // self.bs)


class DepthToSpace(nn.Module):
    """TensorFlow's ``depth_to_space``: ``(N, C, H, W)`` -> ``(N, C/bs^2, H*bs, W*bs)``."""

    def __init__(self, block_size: int):
        super().__init__()
        self.bs = block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.size()
        x = x.view(n, self.bs, self.bs, c // (self.bs ** 2), h, w)
        x = x.permute(0, 3, 4, 1, 5, 2).contiguous()
        return x.view(n, c // (self.bs ** 2), h * self.bs, w * self.bs)


def _feed_forward(n_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_ch, 8 * n_ch),
        nn.LeakyReLU(negative_slope=0.2),
        nn.Linear(8 * n_ch, n_ch),
        nn.LeakyReLU(negative_slope=0.2),
    )


class EncodeLayer(nn.Module):
    """Self-attention and a feed-forward block, each with a residual connection (no normalisation)."""

    def __init__(self, n_ch: int, n_heads: int = 8):
        super().__init__()
        self.mha = nn.MultiheadAttention(embed_dim=n_ch, num_heads=n_heads, batch_first=True)
        self.ff = _feed_forward(n_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, _ = self.mha(query=x, key=x, value=x)
        x = x1 + x
        return x + self.ff(x)


class DecodeLayer(nn.Module):
    """Self-attention, cross-attention to the 256-wide memory, feed-forward; residual connections."""

    def __init__(self, n_ch: int, n_heads: int = 8):
        super().__init__()
        self.mha1 = nn.MultiheadAttention(embed_dim=n_ch, num_heads=n_heads, batch_first=True)
        self.mha2 = nn.MultiheadAttention(embed_dim=n_ch, num_heads=n_heads, kdim=256, vdim=256, batch_first=True)
        self.ff = _feed_forward(n_ch)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x1, _ = self.mha1(query=x, key=x, value=x)
        x = x1 + x
        x2, _ = self.mha2(query=x, key=memory, value=memory)
        x = x2 + x
        return self.ff(x) + x


def _conv_lrelu(c_in: int, c_out: int, k: int, stride: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=k, stride=stride, padding=padding), nn.LeakyReLU(negative_slope=0.2)]


class ConvEncoderLF(nn.Module):
    """Low-frequency encoder: /4 base, then /8 (64 ch) and /16 (256 ch) features and a /32 (256 ch)
    map for the transformer memory. (``transformer_endoder`` is spelled as in ldct-benchmark: it is a
    parameter name.)"""

    def __init__(self):
        super().__init__()
        self.base_encoder = nn.Sequential(*_conv_lrelu(1, 16, 5, 2, 2), *_conv_lrelu(16, 32, 5, 2, 2))
        self.lc1 = nn.Sequential(*_conv_lrelu(32, 64, 5, 2, 2))
        self.lc2 = nn.Sequential(*_conv_lrelu(64, 256, 5, 2, 2))
        self.transformer_endoder = nn.Sequential(*_conv_lrelu(32, 64, 5, 2, 2), *_conv_lrelu(64, 128, 5, 2, 2),
                                                 *_conv_lrelu(128, 256, 5, 2, 2))

    def forward(self, x: torch.Tensor):
        x = self.base_encoder(x)
        x_l_c1 = self.lc1(x)
        x_l_c2 = self.lc2(x_l_c1)
        x_att = self.transformer_endoder(x)
        return x_l_c1, x_l_c2, x_att


class Combine(nn.Module):
    """Fuses the decoded high-frequency tokens with the low-frequency features back to full size."""

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(*_conv_lrelu(256, 256, 3, 1, 1), *_conv_lrelu(256, 256, 3, 1, 1))
        self.block2 = nn.Sequential(*_conv_lrelu(64, 64, 3, 1, 1), *_conv_lrelu(64, 64, 3, 1, 1))
        self.depth2space1 = DepthToSpace(block_size=2)
        self.depth2space2 = DepthToSpace(block_size=8)

    def forward(self, x: torch.Tensor, x_l_c1: torch.Tensor, x_l_c2: torch.Tensor) -> torch.Tensor:
        x1 = x + x_l_c2
        x2 = self.block1(x1)
        x3 = self.depth2space1(x1 + x2)
        x3 = x3 + x_l_c1
        x4 = self.block2(x3)
        return self.depth2space2(x3 + x4)


class TransCT(nn.Module):
    """Splits the input by a Gaussian low-pass (11x11, sigma 1.5 px) into low and high frequencies;
    a convolutional encoder of the low part feeds a 3-layer transformer memory, the high part
    (space-to-depth 16) is decoded by 3 transformer layers attending to it, and both are fused back.

    ``(B, 1, 512, 512)`` normalized in and out: **512x512 only**. The attention layers' widths fix the
    token grids (memory: 256 = (512/32)^2 values per token; decoder: 1024 = (512/16)^2, reshaped to
    32x32), so no other size can run, as in ldct-benchmark. Parameter names are ldct-benchmark's
    (``ldctbench.methods.transct.network.Model``, whose only constructor argument ``args`` is unused
    and dropped); the blur has no parameters."""

    SIZE = 512
    DISPLAY = "TransCT"

    def __init__(self):
        super().__init__()
        self.gaussian = GaussianBlur(kernel_size=11, sigma=1.5)
        self.conv_encoder_lf = ConvEncoderLF()
        self.space2depth = SpaceToDepth(block_size=16)
        self.conv_encoder_hf = nn.Sequential(*_conv_lrelu(256, 256, 3, 1, 1), *_conv_lrelu(256, 256, 3, 1, 1),
                                             *_conv_lrelu(256, 256, 3, 1, 1))
        self.memory = nn.Sequential(EncodeLayer(n_ch=256), EncodeLayer(n_ch=256), EncodeLayer(n_ch=256))
        self.decoder = nn.ModuleList([DecodeLayer(n_ch=1024), DecodeLayer(n_ch=1024), DecodeLayer(n_ch=1024)])
        self.combine = Combine()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.DISPLAY, exact=self.SIZE)
        x_l = self.gaussian(x)
        x_h = x - x_l
        # low-frequency path
        x_l_c1, x_l_c2, x_att = self.conv_encoder_lf(x_l)
        memory = self.memory(x_att.flatten(-2))  # (B, 256, 16*16)
        # high-frequency path
        x_h = self.conv_encoder_hf(self.space2depth(x_h)).flatten(-2)  # (B, 256, 32*32)
        for layer in self.decoder:
            x_h = layer(x_h, memory)
        x_h = torch.reshape(x_h, (x_h.size(0), x_h.size(1), 32, 32))
        return self.combine(x_h, x_l_c1, x_l_c2)
