"""Display names for tables and titles: what a reader sees instead of our internal keys."""

from __future__ import annotations

DENOISER_NAMES = {"cnn10": "CNN-10", "wganvgg": "WGAN-VGG", "gauss_ri": "Gauss+RI"}
DISTANCE_NAMES = {"mse": "bounded MSE", "dssim": "(1-SSIM)/2", "vgg": "VGG16 perceptual"}


def display_name(key: str) -> str:
    """``cnn10`` -> ``CNN-10``, ``mse`` -> ``bounded MSE``, ``ldctbench:redcnn`` -> ``RED-CNN (ldct-benchmark)``;
    unknown keys come back unchanged."""
    if key in DENOISER_NAMES:
        return DENOISER_NAMES[key]
    if key in DISTANCE_NAMES:
        return DISTANCE_NAMES[key]
    return key
