"""Display names for tables and titles: what a reader sees instead of our internal keys."""

from __future__ import annotations

DENOISER_NAMES = {"cnn10": "CNN-10", "wganvgg": "WGAN-VGG", "gauss_ri": "Gauss+RI"}
DISTANCE_NAMES = {"mse": "bounded MSE", "dssim": "(1-SSIM)/2", "vgg": "VGG16 perceptual"}


#: ldct-benchmark's published methods (keys ``ldctbench:<method>``, see ``ctinv_utils.models.ldctbench``).
LDCTBENCH_PREFIX = "ldctbench:"
LDCTBENCH_NAMES = {"cnn10": "CNN-10", "wganvgg": "WGAN-VGG", "redcnn": "RED-CNN", "resnet": "ResNet",
                   "qae": "QAE", "dugan": "DU-GAN", "transct": "TransCT", "bilateral": "Bilateral filter"}


def display_name(key: str) -> str:
    """The name a reader sees for an internal key of a denoiser or a distance.

    Parameters
    ----------
    key : str
        A denoiser key (``"cnn10"``, ``"wganvgg"``, ``"gauss_ri"``, ``"ldctbench:<method>"``) or a
        distance key (``"mse"``, ``"dssim"``, ``"vgg"``).

    Returns
    -------
    str
        The display name; an unknown key comes back unchanged.

    Examples
    --------
    >>> from ctinv_utils import display_name
    >>> display_name("cnn10"), display_name("mse"), display_name("ldctbench:redcnn")
    ('CNN-10', 'bounded MSE', 'RED-CNN (ldct-benchmark)')
    """
    if key.startswith(LDCTBENCH_PREFIX):
        method = key[len(LDCTBENCH_PREFIX):]
        return f"{LDCTBENCH_NAMES.get(method, method)} (ldct-benchmark)"
    if key in DENOISER_NAMES:
        return DENOISER_NAMES[key]
    if key in DISTANCE_NAMES:
        return DISTANCE_NAMES[key]
    return key
