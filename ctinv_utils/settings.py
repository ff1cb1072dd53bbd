"""Settings dataclasses from plain dicts (presets, notebook parameters): an unknown key or a value of
the wrong type is one error naming the key, the expected type and where the dict came from."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


def type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(hint))
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


def from_dict(cls, d: dict | None, what: str):
    """``cls(**d)`` for a dataclass ``cls``, after checking that every key is a field and every value
    fits the field's type. ``what`` names the source in messages (e.g. "simulation settings")."""
    d = dict(d or {})
    if not isinstance(d, dict):
        raise ValueError(f"{what} must be a mapping of names to values, got {type(d).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {names}")
    hints = typing.get_type_hints(cls)
    for k, v in d.items():
        if not matches(v, hints[k]):
            raise ValueError(f"{what}: {k} must be {type_name(hints[k])}, got {v!r} ({type(v).__name__})")
    return cls(**d)
