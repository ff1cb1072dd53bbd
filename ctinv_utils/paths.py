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
#: Set by the runner: the folder a headless notebook writes its figures to until it has succeeded.
STAGING_ENV = "CTINV_FIGURES_STAGING"


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


def output_root() -> Path:
    """Where relative output folders (``figures_dir``, ``artifacts_dir``) resolve: the working
    directory, or the checkout above it when a notebook runs from its ``notebooks/`` folder (as
    JupyterLab starts its kernels), so papermill, JupyterLab and the runner all write to the same
    place, and an installed package never writes into its own folder."""
    cwd = Path.cwd()
    if cwd.name == "notebooks" and (cwd.parent / "configs").is_dir():
        return cwd.parent
    return cwd


def resolve_output(path: str | Path) -> Path:
    """``path`` as given when absolute, else under :func:`output_root`."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else output_root() / path


def repo_relative(path: str | Path) -> str:
    """``path`` relative to the repository when it lies inside it, else as given: how ctinv names a
    file in a message or a record (records stay valid in any clone)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)

