"""Reading and writing checkpoint files safely, with one clear line for each way they go wrong.

* :func:`load_file`: ``torch.load(..., weights_only=True)`` (a checkpoint is untrusted input) that
  turns a missing, empty (0 bytes), truncated or foreign file, or one holding pickled code ("refused:
  not a plain tensor file"), into one :class:`CheckpointError` naming the file and the fix
  (:func:`load_failure` words it);
* :func:`non_finite`: the tensors of a loaded checkpoint that hold NaN or inf;
* :func:`save_file`: :func:`ctinv_utils.atomic.torch_save` whose failures (a full disk, a read-only
  folder) are one :class:`CheckpointWriteError` naming the file, and never leave a partial file;
* :func:`read_checkpoint` / :func:`load_state_dict_into`: a denoiser's state dict into a model.
"""

from __future__ import annotations

import argparse
import errno
import pickle
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from .. import atomic
from ..errors import CTInvError, first_line

#: The fix for a damaged denoiser checkpoint (ours are retrained, published ones re-downloaded).
RETRAIN_OR_DOWNLOAD = ("delete it and train again (notebook 02), or re-download it "
                       "(python -m ctinv_utils hub download <method>)")


class CheckpointError(CTInvError):
    """A checkpoint that cannot be read, or cannot be loaded into the model."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint that could not be written (full disk, read-only folder); nothing was left behind."""


def load_file(path: str | Path, what: str = "checkpoint", fix: str = RETRAIN_OR_DOWNLOAD,
              map_location: Any = "cpu", safe_globals: Iterable[type] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` with one :class:`CheckpointError` line naming ``path``,
    what is wrong and ``fix`` when the file is missing, empty, truncated, not a torch file, or holds
    pickled objects other than tensors and plain containers (``safe_globals`` allows named classes)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist; train the model (notebook 02) or fix the path")
    if not path.is_file():
        raise CheckpointError(f"{what} {path} is a {'folder' if path.is_dir() else 'special file'}, not a file; "
                              "fix the path")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes): a save or download was interrupted; {fix}")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, OSError, EOFError...
        raise CheckpointError(load_failure(path, exc, what, fix)) from None


#: How torch's weights-only unpickler starts the message of a file it refuses.
_REFUSED = "Weights only load failed"


def load_failure(path: str | Path, exc: BaseException, what: str = "checkpoint", fix: str = RETRAIN_OR_DOWNLOAD) -> str:
    """One line for a file that ``torch.load(path, weights_only=True)`` could not load with ``exc``:
    "refused: not a plain tensor file" when the weights-only unpickler refused what the file holds
    (pickled Python objects: loading them could run code), else truncated / not a torch file. Never
    quotes torch's text (which advises switching the check off)."""
    path = Path(path)
    try:
        size = f"{path.stat().st_size} bytes"
    except OSError:
        size = "size unknown"
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and text.startswith(_REFUSED):
        found = re.search(r"GLOBAL ([\w.]+)", text)
        holds = f"a pickled Python object ({found.group(1)})" if found else "pickled Python code or objects"
        return (f"{what} {path} refused: not a plain tensor file (it holds {holds}, which could run code when "
                f"loaded, so ctinv loads weights-only); {fix}; a file of your own: save tensors only, e.g. "
                "torch.save(model.state_dict(), path)")
    if isinstance(exc, OSError) and not isinstance(exc, EOFError) and exc.errno is not None:
        return f"{what} {path} cannot be read ({exc.strerror}); check that it is readable, or {fix}"
    zipped = _is_zip(path)
    if zipped or isinstance(exc, EOFError) or "central directory" in text or "unexpected EOF" in text:
        return (f"{what} {path} ({size}) is truncated or damaged (an interrupted save, download or copy; "
                f"{type(exc).__name__}); {fix}")
    return (f"{what} {path} ({size}) is truncated or not a torch file ({type(exc).__name__}: "
            f"{first_line(exc, 60)}); {fix}")


def _is_zip(path: Path) -> bool:
    """Does the file start like torch's zip format (a truncated zip lacks its directory at the end)?"""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def non_finite(obj: Any, prefix: str = "") -> list[str]:
    """Names (dotted paths) of the floating-point tensors in ``obj`` (nested dicts, lists) that hold
    NaN or inf."""
    if isinstance(obj, torch.Tensor):
        return [prefix or "tensor"] if obj.is_floating_point() and not torch.isfinite(obj).all() else []
    if isinstance(obj, dict):
        return [n for k, v in obj.items() for n in non_finite(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(obj, (list, tuple)):
        return [n for i, v in enumerate(obj) for n in non_finite(v, f"{prefix}[{i}]")]
    return []


def check_finite(obj: Any, path: str | Path, what: str = "checkpoint", fix: str = RETRAIN_OR_DOWNLOAD) -> None:
    """:class:`CheckpointError` naming the file and its first tensors with NaN or inf."""
    bad = non_finite(obj)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise CheckpointError(f"{what} {path} holds NaN or inf weights in {', '.join(bad[:3])}{more} (a diverged "
                              f"run or a damaged file); {fix}")


def _disk_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (torch re-raises a failed write as a RuntimeError in its context)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def write_error(exc: BaseException, path: str | Path, what: str = "checkpoint") -> CheckpointWriteError | None:
    """A :class:`CheckpointWriteError` describing why writing ``path`` failed, or None when ``exc`` is
    not a failure of the file system (then re-raise ``exc`` itself)."""
    path = Path(path)
    os_err = _disk_error(exc)
    if os_err is None:
        return None
    folder = path.parent
    if os_err.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
        except OSError:
            free = "free space unknown"
        err = CheckpointWriteError(f"cannot write {what} {path}: no space left on the disk of {folder} "
                                   f"({free} once the partial file was removed); "
                                   "free some space (or point CTINV_CACHE at a larger disk) and run again; "
                                   "nothing was written")
    else:
        err = CheckpointWriteError(f"cannot write {what} {path}: {os_err.strerror or first_line(os_err, 200)} "
                                   f"(errno {os_err.errno}); check that {folder} is writable and run again")
    err.errno = os_err.errno
    return err


def save_file(path: str | Path, obj: Any, what: str = "checkpoint") -> Path:
    """:func:`ctinv_utils.atomic.torch_save` (temporary file, then rename: a failure or kill leaves the
    old file or none, never half of one). A failed write is one :class:`CheckpointWriteError`."""
    try:
        return atomic.torch_save(path, obj)
    except (OSError, RuntimeError) as exc:
        err = write_error(exc, path, what)
        if err is None:
            raise
        raise err from exc


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file safely (weights only). Accepts a plain state dict, ours
    (``{"model": ...}``) or ldct-benchmark's (``{"model_state_dict": ...}``, which may hold an
    argparse.Namespace of training arguments: that one class is allowed, nothing else). An empty,
    truncated or foreign file, or NaN/inf weights, are one :class:`CheckpointError`."""
    path = Path(path)
    obj = load_file(path, safe_globals=[argparse.Namespace])
    if isinstance(obj, dict):
        for key in ("model", "model_state_dict", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} is not a state dict (a mapping of parameter names to tensors); "
                              "save model.state_dict(), not the model object or an optimizer")
    check_finite(obj, path)
    return obj


def load_state_dict_into(model: nn.Module, state: dict, source: str = "checkpoint") -> nn.Module:
    """Strict load with one clear message naming the first mismatching layer."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: missing keys {missing[:4]}, "
                              f"unexpected keys {unexpected[:4]}; is it a checkpoint of another model?")
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise CheckpointError(f"{source}: layer {k} has shape {tuple(state[k].shape)}, "
                                  f"{type(model).__name__} expects {tuple(v.shape)}")
    model.load_state_dict(state)
    return model
