"""Atomic writers: everything is written to a temporary file next to the target, then renamed.

A killed process therefore leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_bytes(path, data: bytes) -> Path:
    return _atomic_write(path, lambda fh: fh.write(data))


def write_text(path, text: str) -> Path:
    return _atomic_write(path, lambda fh: fh.write(text), mode="w")


def write_json(path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_npy(path, array) -> Path:
    """``numpy.save`` through a temporary file."""
    import numpy as np

    return _atomic_write(path, lambda fh: np.save(fh, array))


def torch_save(path, obj: Any) -> Path:
    """``torch.save`` through a temporary file. Store tensors and plain containers only, so the
    file loads with ``torch.load(..., weights_only=True)``."""
    import torch

    return _atomic_write(path, lambda fh: torch.save(obj, fh))


def savefig(fig, path_without_suffix, formats=("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Save a matplotlib figure as PNG (screen) and PDF (print), each written atomically."""
    out = []
    for fmt in formats:
        target = Path(f"{path_without_suffix}.{fmt}")

        def _write(fh, fmt=fmt):
            fig.savefig(fh, format=fmt, dpi=dpi, bbox_inches="tight")

        out.append(_atomic_write(target, _write))
    return out


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``final`` when the block succeeds.

    On error the temporary directory is removed and ``final`` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():  # another process finished first: keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
