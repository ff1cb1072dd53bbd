"""Where things live: the repository, the on-disk cache, run outputs."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PRESET_DIR = REPO_ROOT / "configs"

#: Environment variable pointing at real data (TCIA LDCT-and-Projection-data or AAPM 2016 layout).
DATA_ENV = "CTINV_DATA"
#: Environment variable overriding the cache directory (simulated data, trained models).
CACHE_ENV = "CTINV_CACHE"


def cache_dir() -> Path:
    """Root of ctinv's cache: ``$CTINV_CACHE`` or ``~/.cache/ctinv`` (XDG_CACHE_HOME honoured)."""
    if os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "ctinv"
    root.mkdir(parents=True, exist_ok=True)
    return root


def run_dir(preset: str) -> Path:
    """Executed notebooks, manifest and artifacts of one preset: ``papermill_runs/<preset>/``."""
    return REPO_ROOT / "papermill_runs" / preset


def figure_dir(preset: str) -> Path:
    """Figures of one preset: ``figures/<preset>/``."""
    return REPO_ROOT / "figures" / preset
