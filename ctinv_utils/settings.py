"""Settings dataclasses from plain dicts (presets, notebook parameters): an unknown key or a value of
the wrong type is one error naming the key, the expected type and where the dict came from.

Also :func:`check_device`: the one check of a ``device`` argument of the API (``"cuda"`` on a
machine without a GPU is one clear error, not torch's "not compiled with CUDA")."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from .errors import CTInvError


class SettingsError(CTInvError, ValueError):
    """Settings with an unknown key, a value of the wrong type, or a value that makes no sense."""


class DeviceError(CTInvError, RuntimeError):
    """A device that this machine does not have (e.g. ``"cuda"`` without a GPU)."""


def type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(hint))
    if hint is dict or typing.get_origin(hint) is dict:
        return "a mapping"
    if hint in (tuple, list) or typing.get_origin(hint) in (tuple, list):
        return "a list"
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def matches(value: Any, hint: Any) -> bool:
    """Does ``value`` (from YAML/JSON) fit the annotation ``hint``? An int fits a float; a bool fits
    neither a number nor a string; a list fits a tuple."""
    if hint is Any:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (tuple, list) or typing.get_origin(hint) in (tuple, list):
        return isinstance(value, (list, tuple))
    if hint is dict or typing.get_origin(hint) is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def field_problems(cls, d: Any) -> list[tuple[str | None, str]]:
    """What is wrong with ``d`` as the keyword arguments of the dataclass ``cls``: a list of
    ``(key, problem)``, empty when every key is a field and every value fits its field's type
    (``key`` None: ``d`` itself is not a mapping)."""
    if not isinstance(d, dict):
        return [(None, f"must be a mapping of names to values, got {type(d).__name__} {d!r}")]
    names = [f.name for f in dataclasses.fields(cls)]
    hints = typing.get_type_hints(cls)
    out: list[tuple[str | None, str]] = []
    for k, v in d.items():
        if k not in names:
            out.append((k, f"is not a known key (known: {', '.join(names)})"))
        elif not matches(v, hints[k]):
            out.append((k, f"must be {type_name(hints[k])}, got {v!r} ({type(v).__name__})"))
    return out


def from_dict(cls, d: dict | None, what: str):
    """``cls(**d)`` for a dataclass ``cls``, after checking that every key is a field and every value
    fits the field's type. ``what`` names the source in messages (e.g. "simulation settings").
    Problems are a :class:`SettingsError` (a ``ValueError``)."""
    d = {} if d is None else d
    if not isinstance(d, dict):
        raise SettingsError(f"{what} must be a mapping of names to values, got {type(d).__name__} {d!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names), key=str)
    if unknown:
        raise SettingsError(f"unknown {what} {unknown}; known: {names}")
    for k, problem in field_problems(cls, d):
        raise SettingsError(f"{what}: {k} {problem}")
    return cls(**d)


def check_device(device: Any, what: str = "device") -> str:
    """``device`` as a string torch accepts, after checking this machine has it. ``"auto"``: CUDA when
    torch sees a GPU, else the CPU. Raises :class:`DeviceError` for ``"cuda"`` without a GPU (or a
    GPU index beyond those present) and ``ValueError`` for a name torch does not know."""
    import torch

    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{what} {device!r} is not a device; use 'cpu', 'cuda', 'cuda:N' or 'auto'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{what} {str(device)!r} was asked for, but torch sees no CUDA GPU on this machine "
                              f"(torch {torch.__version__}); pass device='cpu' (or 'auto'), or install a CUDA build "
                              "of torch on a machine with a GPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{what} {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                              f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}); pick one of those")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError(f"{what} 'mps' was asked for, but torch sees no Apple GPU; pass device='cpu'")
    return str(dev)


def value_index(values, value: float, rtol: float = 1e-9) -> int | None:
    """Index of the number ``value`` in ``values`` to a relative ``rtol`` (numbers read back from YAML
    or JSON, e.g. an alpha of a grid), or None. The one matching rule of the panels and the notebooks."""
    for i, v in enumerate(values):
        if abs(float(v) - float(value)) <= rtol * abs(float(v)):
            return i
    return None
