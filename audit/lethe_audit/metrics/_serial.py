"""Strict conversion between frozen dataclasses and JSON-ready dicts (no pickle, no magic)."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from lethe_audit.errors import MetricsError, ResultFormatError

T = TypeVar("T")


def to_jsonable(obj: Any) -> Any:
    """Dataclass -> dict, tuple -> list; floats must be finite (JSON and RFC 8785 need it)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ResultFormatError(f"non-finite number {obj!r} cannot be serialised")
    return obj


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ResultFormatError:
                continue
        raise ResultFormatError(f"{where}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or not isinstance(value, str):
            raise ResultFormatError(f"{where}: expected one of {list(allowed)}, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ResultFormatError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ResultFormatError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(
            _convert(v, a, f"{where}[{i}]")
            for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_jsonable(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ResultFormatError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ResultFormatError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ResultFormatError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ResultFormatError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ResultFormatError(f"{where}: expected a string, got {value!r}")
        return value
    raise ResultFormatError(f"{where}: unsupported field type {tp!r}")  # pragma: no cover


def from_jsonable(cls: type[T], data: Any, where: str = "") -> T:
    """Rebuild dataclass ``cls`` from ``data``; unknown keys and missing keys are errors, except
    that a field with a default may be absent (older data, written before the field existed)."""
    name = where or cls.__name__
    if not isinstance(data, Mapping):
        raise ResultFormatError(f"{name}: expected an object, got {type(data).__name__}")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"from_jsonable rebuilds dataclasses, not {cls!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ResultFormatError(f"{name}: unknown keys {unknown}")
    # A field with a default was added later: data written before it may lack the key.
    required = {
        k
        for k, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - set(data))
    if missing:
        raise ResultFormatError(f"{name}: missing keys {missing}")
    kwargs = {k: _convert(data[k], hints[k], f"{name}.{k}") for k in fields if k in data}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, MetricsError) as exc:
        raise ResultFormatError(f"{name}: {exc}") from exc
