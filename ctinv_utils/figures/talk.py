"""The talk's result panels ("Results CNN-10", ...), the explorer's view and the attack contrast:
functions of HU arrays."""

from __future__ import annotations

import numpy as np

from ..units import ABDOMEN, DIFFERENCE, LUNG, Window
from .ct import ct_grid, fitted_difference_window


def talk_results(x_hu, f_x_hu, rows, differences: bool = True, x_full_hu=None,
                 windows: tuple[Window, Window] = (LUNG, ABDOMEN), title: str = "", tol_hu: float = 5.0):
    """The talk's results slide for one denoiser: a first row with x and f(x) in both windows (and
    the full-dose reference), then one row per entry of ``rows`` = ``[(label, x_inv_hu, f_x_inv_hu)]``
    (one per distance) with x_inv and f(x_inv) in both windows and, with ``differences``, x_inv - x
    and f(x_inv) - f(x) in C=0/W=100 HU. Each row's f(x_inv) title gives the RMS output change; a row
    beyond ``tol_hu`` HU RMS is marked as no invariance at this alpha. All images ``(H, W)`` in HU."""
    w1, w2 = windows
    ncols = 6 if differences else 4
    panels = [(x_hu, w1, "x (low dose)"), (x_hu, w2, "x"), (f_x_hu, w1, "f(x)"), (f_x_hu, w2, "f(x)")]
    if differences:
        panels += [(x_full_hu, w2, "full dose (reference)") if x_full_hu is not None else None, None]
    for label, x_inv, f_inv in rows:
        # a row whose output moved beyond the tolerance is no invariance at this alpha, and says so
        moved = float(np.sqrt(np.mean(np.square(f_inv - f_x_hu))))
        verdict = (f"moved {moved:.1f} HU RMS (≤ {tol_hu:g} HU)" if moved <= tol_hu
                   else f"moved {moved:.0f} HU RMS > {tol_hu:g} HU:\nNOT an invariance at this α")
        panels += [(x_inv, w1, f"x_inv ({label})"), (x_inv, w2, "x_inv"), (f_inv, w1, f"f(x_inv): {verdict}"),
                   (f_inv, w2, "f(x_inv)")]
        if differences:  # the input change in a window fitted to it; the output change in the talk's W=100 HU
            panels += [(x_inv - x_hu, fitted_difference_window(x_inv - x_hu), "x_inv − x (window fitted)"),
                       (f_inv - f_x_hu, DIFFERENCE, "f(x_inv) − f(x)")]
    return ct_grid(panels, ncols=ncols, panel_size=3.0, suptitle=title)


def invariance_grid(x_hu, x_inv_hu, f_x_hu, f_x_inv_hu, window: Window | str = LUNG, title: str = ""):
    """The explorer's view: x, x_inv, x_inv - x over f(x), f(x_inv), f(x_inv) - f(x)."""
    return ct_grid([(x_hu, window, "x"), (x_inv_hu, window, "x_inv"), (x_inv_hu - x_hu, DIFFERENCE, "x_inv − x"),
                    (f_x_hu, window, "f(x)"), (f_x_inv_hu, window, "f(x_inv)"),
                    (f_x_inv_hu - f_x_hu, DIFFERENCE, "f(x_inv) − f(x)")], ncols=3, panel_size=2.8, suptitle=title)


def attack_contrast(rows, title: str = ""):
    """Adversarial perturbation against invariance at the same input budget, one row per denoiser:
    ``rows = [(label, x_adv - x, f(x_adv) - f(x), x_inv - x, f(x_inv) - f(x))]`` in HU (each panel's
    title gives its RMS); both input changes in one fitted window, the output changes in C=0/W=100 HU."""
    panels = []
    for label, dx_adv, dy_adv, dx_inv, dy_inv in rows:
        inputs = fitted_difference_window(np.concatenate([np.ravel(dx_adv), np.ravel(dx_inv)]))  # one window for both
        panels += [(dx_adv, inputs, f"{label}: attack x_adv − x"), (dy_adv, DIFFERENCE, "f(x_adv) − f(x)"),
                   (dx_inv, inputs, "invariance x_inv − x"), (dy_inv, DIFFERENCE, "f(x_inv) − f(x)")]
    return ct_grid(panels, ncols=4, panel_size=3.0, suptitle=title)
