"""Display names for tables and titles: what a reader sees instead of our internal keys."""

from __future__ import annotations

DENOISER_NAMES = {"cnn10": "CNN-10", "wganvgg": "WGAN-VGG", "gauss_ri": "Gauss+RI"}
DISTANCE_NAMES = {"mse": "bounded MSE", "dssim": "(1-SSIM)/2", "vgg": "VGG16 perceptual"}


#: ldct-benchmark's published methods (keys ``ldctbench:<method>``, see ``ctinv_utils.models.ldctbench``).
LDCTBENCH_PREFIX = "ldctbench:"
LDCTBENCH_NAMES = {"cnn10": "CNN-10", "wganvgg": "WGAN-VGG", "redcnn": "RED-CNN", "resnet": "ResNet",
                   "qae": "QAE", "dugan": "DU-GAN", "transct": "TransCT", "bilateral": "Bilateral filter"}


def display_name(key: str) -> str:
    """``cnn10`` -> ``CNN-10``, ``mse`` -> ``bounded MSE``, ``ldctbench:redcnn`` -> ``RED-CNN (ldct-benchmark)``;
    unknown keys come back unchanged."""
    if key.startswith(LDCTBENCH_PREFIX):
        method = key[len(LDCTBENCH_PREFIX):]
        return f"{LDCTBENCH_NAMES.get(method, method)} (ldct-benchmark)"
    if key in DENOISER_NAMES:
        return DENOISER_NAMES[key]
    if key in DISTANCE_NAMES:
        return DISTANCE_NAMES[key]
    return key
