"""Progress bars that show where the user is looking.

In JupyterLab: tqdm's notebook widget. In a headless papermill run (the runner sets
``CTINV_HEADLESS=1`` and streams the kernel's stderr to the terminal) a widget would be invisible,
so plain text bars go to stderr instead, updated at most every few seconds.
"""

from __future__ import annotations

import os
import sys

HEADLESS_ENV = "CTINV_HEADLESS"


def progress_bar(iterable=None, **kwargs):
    """``tqdm`` that suits the front end (see module docstring); same arguments as tqdm."""
    if os.environ.get(HEADLESS_ENV):
        from tqdm import tqdm

        kwargs.setdefault("mininterval", 5.0)
        kwargs.setdefault("file", sys.stderr)
        kwargs.setdefault("ascii", True)
        return tqdm(iterable, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
