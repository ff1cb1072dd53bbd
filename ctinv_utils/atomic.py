"""Atomic writers: everything is written to a temporary file next to the target, then renamed.

A killed process therefore leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import CacheNotWritableError, CTInvError

try:
    import fcntl
except ImportError:  # Windows: no flock, so no writer lock
    fcntl = None

LOCK_DIR = ".locks"
HELD_LOCK_FDS: set[int] = set()  # lock fds this process holds (forked workers close their copies)


def write_with(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the user's normal permissions
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        full = _disk_full(exc)
        if full is not None:  # torch re-raises a failed write as an unreadable RuntimeError: say what happened
            raise DiskFullError(f"cannot write {path}: no space left on the disk of {path.parent} "
                                f"({full.strerror}); free some space or point CTINV_CACHE elsewhere, then run "
                                "again; nothing was written") from exc
        raise
    return path


class DiskFullError(CTInvError, OSError):
    """A write failed because the disk (or the user's quota) is full; nothing was written."""


def _disk_full(exc: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT OSError behind ``exc`` (itself, its cause or its context), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


#: errno values of a folder that cannot be written (read-only file system, no permission).
NOT_WRITABLE_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def _not_writable(exc: BaseException | None) -> OSError | None:
    """The EROFS/EACCES/EPERM OSError behind ``exc`` (itself, its cause or its context), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NOT_WRITABLE_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def cache_write_error(exc: BaseException, path: str | os.PathLike, what: str = "the cache") -> CTInvError | None:
    """One line for a failed write under ctinv's cache: a :class:`DiskFullError` (disk or quota
    full) or a :class:`~ctinv_utils.errors.CacheNotWritableError` (read-only file system, no
    permission), each naming ``path``, ``$CTINV_CACHE`` and the fix; None when ``exc`` is neither
    (re-raise it). The returned error carries the ``errno`` of the failure."""
    path = Path(path)
    full = _disk_full(exc)
    if full is not None:
        err: CTInvError = DiskFullError(
            f"cannot write {what} at {path}: no space left on its disk ({full.strerror}); free some space, or point "
            "CTINV_CACHE at a folder on a larger disk (export CTINV_CACHE=/path/to/cache), then run again; "
            "nothing was kept")
        err.errno = full.errno
        return err
    denied = _not_writable(exc)
    if denied is not None:
        where = denied.filename or path
        err = CacheNotWritableError(
            f"cannot write {what} at {path}: {where} is not writable ({denied.strerror}); make it writable, or point "
            "CTINV_CACHE at a writable folder (export CTINV_CACHE=/path/to/cache), then run again; nothing was kept")
        err.errno = denied.errno
        return err
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data: bytes) -> Path:
    return write_with(path, lambda fh: fh.write(data))


def write_text(path, text: str) -> Path:
    return write_with(path, lambda fh: fh.write(text), mode="w")


def write_json(path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_npy(path, array) -> Path:
    """``numpy.save`` through a temporary file."""
    import numpy as np

    return write_with(path, lambda fh: np.save(fh, array))


def write_npz(path, **arrays) -> Path:
    """``numpy.savez`` through a temporary file."""
    import numpy as np

    return write_with(path, lambda fh: np.savez(fh, **arrays))


def torch_save(path, obj: Any, checksum: bool = False) -> Path:
    """``torch.save`` through a temporary file. Store tensors and plain containers only, so the
    file loads with ``torch.load(..., weights_only=True)``. ``checksum``: also record the file's
    SHA-256 beside it (:func:`write_checksum`), for a cache entry checked at every load."""
    import torch

    out = write_with(path, lambda fh: torch.save(obj, fh))
    if checksum:
        write_checksum(out)
    return out


#: Suffix of the checksum file written beside a cache entry (``model.pt`` -> ``model.pt.sha256``).
CHECKSUM_SUFFIX = ".sha256"


def checksum_path(path: str | os.PathLike) -> Path:
    return Path(str(path) + CHECKSUM_SUFFIX)


def write_checksum(path: str | os.PathLike) -> Path:
    """Record ``path``'s SHA-256 in ``<path>.sha256`` (written after ``path`` is complete, so a
    killed writer leaves an entry without a checksum, which :func:`checksum_problem` reports)."""
    from .provenance import sha256_file

    return write_text(checksum_path(path), f"{sha256_file(path)}  {Path(path).name}\n")


def checksum_problem(path: str | os.PathLike) -> str | None:
    """None when ``path``'s SHA-256 equals the one recorded beside it, else what is wrong (no
    checksum recorded, or the file changed since it was written)."""
    from .provenance import sha256_file

    side = checksum_path(path)
    if not side.is_file():
        return f"no checksum recorded beside it ({side.name} missing)"
    recorded = side.read_text().split()[:1]
    actual = sha256_file(path)
    if recorded != [actual]:
        return (f"its SHA-256 {actual[:12]}... differs from the one recorded when it was written "
                f"({(recorded or ['nothing'])[0][:12]}...): the file was damaged or changed")
    return None


def remove_checksummed(path: str | os.PathLike) -> None:
    """Delete a cache entry and its checksum file (missing ones are fine)."""
    Path(path).unlink(missing_ok=True)
    checksum_path(path).unlink(missing_ok=True)


def savefig(fig, path_without_suffix, formats=("png", "pdf"), dpi: int = 80) -> list[Path]:
    """Save a matplotlib figure as PNG (screen) and PDF (print), each written atomically, cropped to
    the figure's tight bounding box."""
    bbox = _tight_bbox(fig, dpi)
    out = []
    for fmt in formats:
        target = Path(f"{path_without_suffix}.{fmt}")

        def _write(fh, fmt=fmt):
            fig.savefig(fh, format=fmt, dpi=dpi, bbox_inches=bbox)

        out.append(write_with(target, _write))
    return out


def _tight_bbox(fig, dpi: int):
    """The figure's tight bounding box (inches, padded as ``bbox_inches="tight"`` pads it), measured
    once for every format: "tight" lays the whole figure out once more per format to measure it,
    which costs as much as drawing it. "tight" itself where the canvas cannot measure."""
    import matplotlib

    if not hasattr(fig.canvas, "get_renderer"):
        return "tight"
    old = fig.dpi
    try:
        fig.dpi = dpi
        fig.draw_without_rendering()
        return fig.get_tightbbox(fig.canvas.get_renderer()).padded(matplotlib.rcParams["savefig.pad_inches"])
    finally:
        fig.dpi = old


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``final`` when the block succeeds.

    On error the temporary directory is removed and ``final`` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if final.exists():  # another process finished first: keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- one writer per result: data sets, cached models, cached generators --------------------------
def try_lock(parent: Path, key: str, wait: bool) -> int | None:
    """An open, flock-ed fd of ``parent/.locks/<key>.lock``; None when busy and not ``wait``."""
    lock_dir = parent / LOCK_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if not wait:
            os.close(fd)
            return None
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        print(f"waiting for process {holder}, which is making the same result ({parent.name}/{key})",
              file=sys.stderr, flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


@contextlib.contextmanager
def writer_lock(parent: str | Path, key: str):
    """Hold the writer lock of configuration ``key`` under ``parent`` (waits for another holder)."""
    fd = try_lock(Path(parent), key, wait=True)
    HELD_LOCK_FDS.add(fd)
    try:
        yield
    finally:
        HELD_LOCK_FDS.discard(fd)
        os.close(fd)  # releases the flock
