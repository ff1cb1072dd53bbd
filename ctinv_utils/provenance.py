"""Seeds, checksums, config hashes and the provenance record stored next to every artifact and figure."""

from __future__ import annotations

import hashlib
import json
import platform
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .paths import REPO_ROOT


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one integer."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global RNG is what third-party code draws from
    torch.manual_seed(seed)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def array_sha256(a: np.ndarray) -> str:
    """Checksum of an array's values, dtype and shape (independent of the file it sits in)."""
    a = np.ascontiguousarray(a)
    return sha256_bytes(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())


def config_hash(config: Any, length: int = 12) -> str:
    """Stable short hash of a JSON-serialisable config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def git_commit() -> str:
    """Commit of the repository (with '+dirty' when the tree has changes), or 'unknown'."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        # the outputs themselves (figures/, executed notebooks) are what a run rewrites: not a change
        # of the inputs that made them
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)figures", ":(exclude)papermill_runs/*/*.ipynb",
                                ":(exclude)papermill_runs/*/manifest.json"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that change numbers."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    from importlib import metadata

    # distribution names: pytorch_msssim has no __version__, so ask the installed package's metadata
    for mod, dist in (("numpy", "numpy"), ("torch", "torch"), ("scipy", "scipy"), ("skimage", "scikit-image"),
                      ("pydicom", "pydicom"), ("pytorch_msssim", "pytorch-msssim")):
        try:
            out[mod] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # a missing optional package is just recorded
            out[mod] = "not installed"
    return out


def provenance(seed: int | None = None, config: Any = None, device: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """The record stored next to every artifact and figure: seed, config hash, versions, device."""
    rec: dict[str, Any] = {"seed": seed, "git_commit": git_commit(), "versions": versions()}
    if config is not None:
        rec["config_hash"] = config_hash(config)
        rec["config"] = config
    if device is not None:
        rec["device"] = device
        if device.startswith("cuda"):
            import torch

            rec["device_name"] = torch.cuda.get_device_name(0)
        else:
            rec["device_name"] = platform.processor() or platform.machine()
    rec.update(extra)
    return rec
