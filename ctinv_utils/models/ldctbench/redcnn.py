"""RED-CNN (Chen et al., IEEE TMI 36(12), 2017) as ldct-benchmark builds it, and DU-GAN's generator,
which is the same network (Huang et al., IEEE TMI 41(1), 2022)."""

from __future__ import annotations

import torch
from torch import nn

from .sizes import check_input


class REDCNN(nn.Module):
    """Residual encoder-decoder CNN: five valid 5x5 convolutions with ReLU (``out_ch`` features), five
    5x5 transposed convolutions back, residual shortcuts from the input, after conv 2 and after conv 4.

    ``(B, 1, H, W)`` normalized in and out, any ``H, W >= 21`` (each valid convolution takes 4 pixels;
    no divisibility needed). No final ReLU (ldct-benchmark's change, for zero-mean normalized data).
    Parameter names (``conv1.weight`` ... ``tconv5.bias``) and the constructor argument ``out_ch`` are
    ldct-benchmark's (``ldctbench.methods.redcnn.network.Model``; its ``args`` is unused and dropped)."""

    MIN_SIZE = 21
    DISPLAY = "RED-CNN"

    def __init__(self, out_ch: int = 96):
        super().__init__()
        self.conv1 = nn.Conv2d(1, out_ch, kernel_size=5, stride=1, padding=0)
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=5, stride=1, padding=0)
        self.conv3 = nn.Conv2d(out_ch, out_ch, kernel_size=5, stride=1, padding=0)
        self.conv4 = nn.Conv2d(out_ch, out_ch, kernel_size=5, stride=1, padding=0)
        self.conv5 = nn.Conv2d(out_ch, out_ch, kernel_size=5, stride=1, padding=0)
        self.tconv1 = nn.ConvTranspose2d(out_ch, out_ch, kernel_size=5, stride=1, padding=0)
        self.tconv2 = nn.ConvTranspose2d(out_ch, out_ch, kernel_size=5, stride=1, padding=0)
        self.tconv3 = nn.ConvTranspose2d(out_ch, out_ch, kernel_size=5, stride=1, padding=0)
        self.tconv4 = nn.ConvTranspose2d(out_ch, out_ch, kernel_size=5, stride=1, padding=0)
        self.tconv5 = nn.ConvTranspose2d(out_ch, 1, kernel_size=5, stride=1, padding=0)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.DISPLAY, min_size=self.MIN_SIZE)
        residual_1 = x
        out = self.relu(self.conv1(x))
        out = self.relu(self.conv2(out))
        residual_2 = out
        out = self.relu(self.conv3(out))
        out = self.relu(self.conv4(out))
        residual_3 = out
        out = self.relu(self.conv5(out))
        # decoder
        out = self.tconv1(out) + residual_3
        out = self.tconv2(self.relu(out))
        out = self.tconv3(self.relu(out)) + residual_2
        out = self.tconv4(self.relu(out))
        out = self.tconv5(self.relu(out)) + residual_1
        return out


class DUGANGenerator(REDCNN):
    """DU-GAN's generator: ldct-benchmark trains a RED-CNN (``out_ch=96``) against a U-Net
    discriminator, and its checkpoint holds the generator only (``ldctbench.methods.dugan.network.Model``
    *is* the RED-CNN class). Same layers, sizes and parameter names as :class:`REDCNN`."""

    DISPLAY = "DU-GAN"
