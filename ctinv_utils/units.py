"""Units: HU <-> the networks' normalized scale, and the talk's HU display windows.

Normalization (ldct-benchmark's convention, so its published checkpoints can be analysed):
``x_norm = (HU + 1024 - 481.454) / 502.185``. ldct-benchmark stores images as HU + 1024 and
standardises with the training-set mean 481.454 and std 502.185 of those values. So water
(0 HU) maps to +1.0804 and air (-1000 HU) to -0.9109; one unit is 502.185 HU.

Windows: lung C=-600/W=1500 HU, abdomen C=50/W=400 HU, head C=40/W=80 HU, differences C=0/W=100 HU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The values a CT scanner reconstructs (12-bit DICOM with intercept -1024): air sits at -1000 HU with
#: noise reaching -1024; dense bone and metal-free contrast stay below 3071. Below -1024 HU the
#: attenuation would be negative.
PHYSICAL_HU_RANGE = (-1024.0, 3071.0)

HU_OFFSET = 1024.0
MEAN = 481.45419786099086
STD = 502.18507379395044


def hu_to_norm(image_hu):
    """Convert HU to the networks' normalized units.

    ``x_norm = (HU + 1024 - 481.454) / 502.185``, ldct-benchmark's normalization, so that its
    published checkpoints see what they were trained on. Water (0 HU) is 1.0804, air (-1000 HU)
    -0.9109. For a difference (no offset) use ``hu_difference_to_norm``.

    Parameters
    ----------
    image_hu : numpy.ndarray, torch.Tensor or float
        Values in HU, any shape (e.g. a slice ``(H, W)`` or a batch ``(B, 1, H, W)``).

    Returns
    -------
    numpy.ndarray, torch.Tensor or float
        The same shape and type, in normalized units (1 unit = 502.185 HU).

    Examples
    --------
    >>> import torch
    >>> from ctinv_utils import hu_to_norm
    >>> round(float(hu_to_norm(0.0)), 4)
    1.0804
    >>> x = hu_to_norm(torch.zeros(64, 64))[None, None]  # (1, 1, 64, 64), the input of a denoiser
    """
    return (image_hu + (HU_OFFSET - MEAN)) / STD


def norm_to_hu(x_norm):
    """Convert the networks' normalized units back to HU (the inverse of :func:`hu_to_norm`).

    Parameters
    ----------
    x_norm : numpy.ndarray, torch.Tensor or float
        Values in normalized units, any shape (e.g. a denoiser's output ``(B, 1, H, W)``).

    Returns
    -------
    numpy.ndarray, torch.Tensor or float
        The same shape and type, in HU: ``x_norm * 502.185 - (1024 - 481.454)``.

    Examples
    --------
    >>> from ctinv_utils import hu_to_norm, norm_to_hu
    >>> round(float(norm_to_hu(hu_to_norm(40.0))), 6)
    40.0
    """
    return x_norm * STD - (HU_OFFSET - MEAN)


def tensor_to_hu(t):
    """A tensor in normalized units as a float64 NumPy array in HU (detached, on the CPU): how a
    notebook turns a network's input or output into arrays for figures and tables."""
    return norm_to_hu(t.detach().cpu().double().numpy())


def hu_difference_to_norm(delta_hu):
    """A difference in HU (e.g. an attack budget) -> normalized units. No offset."""
    return delta_hu / STD


def norm_difference_to_hu(delta_norm):
    """A difference in normalized units -> HU. No offset."""
    return delta_norm * STD


@dataclass(frozen=True)
class Window:
    """A CT display window: centre C and width W in HU.

    Parameters
    ----------
    name : str
        What the window is called in captions (``"lung"``, ``"abdomen"``, ...).
    center : float
        Centre C in HU.
    width : float
        Width W in HU; the window shows ``C - W/2`` (black) to ``C + W/2`` (white).

    Examples
    --------
    >>> from ctinv_utils import Window
    >>> w = Window("liver", 60, 160)
    >>> w.vmin, w.vmax
    (-20.0, 140.0)
    """

    name: str
    center: float
    width: float

    @property
    def vmin(self) -> float:
        """The HU value shown black, ``C - W/2``."""
        return self.center - self.width / 2

    @property
    def vmax(self) -> float:
        """The HU value shown white, ``C + W/2``."""
        return self.center + self.width / 2


LUNG = Window("lung", -600, 1500)
ABDOMEN = Window("abdomen", 50, 400)
HEAD = Window("head", 40, 80)
DIFFERENCE = Window("difference", 0, 100)

WINDOWS = {w.name: w for w in (LUNG, ABDOMEN, HEAD, DIFFERENCE)}
"""The talk's windows by name, ``{name: Window}``: ``lung`` C=-600/W=1500 HU, ``abdomen`` C=50/W=400 HU,
``head`` C=40/W=80 HU and ``difference`` C=0/W=100 HU (for ``x_inv - x`` and ``f(x_inv) - f(x)``)."""

#: The window a region is usually read in.
REGION_WINDOW = {"chest": LUNG, "abdomen": ABDOMEN, "head": HEAD}


def get_window(name_or_window: str | Window) -> Window:
    """Look up one of the talk's display windows by name.

    Parameters
    ----------
    name_or_window : str or Window
        A key of :data:`WINDOWS` (``"lung"``, ``"abdomen"``, ``"head"``, ``"difference"``), or a
        :class:`Window`, which is returned as it is.

    Returns
    -------
    Window

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones).

    Examples
    --------
    >>> from ctinv_utils import get_window
    >>> get_window("lung")
    Window(name='lung', center=-600, width=1500)
    """
    if isinstance(name_or_window, Window):
        return name_or_window
    try:
        return WINDOWS[name_or_window]
    except KeyError:
        raise ValueError(f"unknown HU window {name_or_window!r}; choose one of {sorted(WINDOWS)}") from None


def apply_window(image_hu, window: str | Window) -> np.ndarray:
    """Map HU to [0, 1] for display through a window: ``C - W/2`` -> 0, ``C + W/2`` -> 1, clipped.

    Parameters
    ----------
    image_hu : array_like
        Values in HU, any shape (e.g. a slice ``(H, W)``).
    window : str or Window
        A window name of :data:`WINDOWS` or a :class:`Window`.

    Returns
    -------
    numpy.ndarray
        float64, the shape of ``image_hu``, in [0, 1].

    Raises
    ------
    ValueError
        An unknown window name.

    Examples
    --------
    >>> import numpy as np
    >>> from ctinv_utils import apply_window
    >>> apply_window(np.array([-1000.0, 0.0, 40.0, 2000.0]), "abdomen")
    array([0.   , 0.375, 0.475, 1.   ])
    """
    w = get_window(window)
    return np.clip((np.asarray(image_hu, dtype=np.float64) - w.vmin) / w.width, 0.0, 1.0)
