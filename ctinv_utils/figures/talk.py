"""The talk's result panels ("Results CNN-10", ...), the explorer's view and the attack contrast:
functions of HU arrays."""

from __future__ import annotations

import numpy as np

from ..units import ABDOMEN, DIFFERENCE, LUNG, Window
from .ct import ct_grid


def talk_results(x_hu, f_x_hu, rows, differences: bool = True, x_full_hu=None,
                 windows: tuple[Window, Window] = (LUNG, ABDOMEN), title: str = "", tol_hu: float = 5.0):
    """The talk's results slide for one denoiser: a first row with x and f(x) in both windows (and
    the full-dose reference), then one row per entry of ``rows`` = ``[(label, x_inv_hu, f_x_inv_hu)]``
    (one per distance) with x_inv and f(x_inv) in both windows and, with ``differences``, x_inv - x
    and f(x_inv) - f(x) in C=0/W=100 HU. All images ``(H, W)`` in HU."""
    w1, w2 = windows
    ncols = 6 if differences else 4
    panels = [(x_hu, w1, "x (low dose)"), (x_hu, w2, "x"), (f_x_hu, w1, "f(x)"), (f_x_hu, w2, "f(x)")]
    if differences:
        panels += [(x_full_hu, w2, "full dose (reference)") if x_full_hu is not None else None, None]
    for label, x_inv, f_inv in rows:
        panels += [(x_inv, w1, f"x_inv ({label})"), (x_inv, w2, "x_inv"), (f_inv, w1, "f(x_inv)"), (f_inv, w2, "f(x_inv)")]
        if differences:
            moved = float(np.sqrt(np.mean(np.square(f_inv - f_x_hu))))
            out_title = "f(x_inv) − f(x)" if moved <= tol_hu else f"f(x_inv) − f(x): > {tol_hu:g} HU, NOT unchanged"
            panels += [(x_inv - x_hu, DIFFERENCE, "x_inv − x"), (f_inv - f_x_hu, DIFFERENCE, out_title)]
    return ct_grid(panels, ncols=ncols, panel_size=3.0, suptitle=title)


def invariance_grid(x_hu, x_inv_hu, f_x_hu, f_x_inv_hu, window: Window | str = LUNG, title: str = ""):
    """The explorer's view: x, x_inv, x_inv - x over f(x), f(x_inv), f(x_inv) - f(x)."""
    return ct_grid([(x_hu, window, "x"), (x_inv_hu, window, "x_inv"), (x_inv_hu - x_hu, DIFFERENCE, "x_inv − x"),
                    (f_x_hu, window, "f(x)"), (f_x_inv_hu, window, "f(x_inv)"),
                    (f_x_inv_hu - f_x_hu, DIFFERENCE, "f(x_inv) − f(x)")], ncols=3, panel_size=2.8, suptitle=title)


def attack_contrast(rows, title: str = ""):
    """Adversarial perturbation against invariance, one row per denoiser:
    ``rows = [(label, x_adv - x, f(x_adv) - f(x), x_inv - x, f(x_inv) - f(x), attack_label, inv_label)]``,
    differences in HU shown in C=0/W=100 HU."""
    panels = []
    for label, dx_adv, dy_adv, dx_inv, dy_inv, attack_label, inv_label in rows:
        panels += [(dx_adv, DIFFERENCE, f"{label}: {attack_label} x_adv − x"), (dy_adv, DIFFERENCE, "f(x_adv) − f(x)"),
                   (dx_inv, DIFFERENCE, f"{inv_label} x_inv − x"), (dy_inv, DIFFERENCE, "f(x_inv) − f(x)")]
    return ct_grid(panels, ncols=4, panel_size=3.0, suptitle=title)
