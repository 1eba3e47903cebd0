"""RFC 8785 (JCS) canonical JSON.

:func:`canonical_json` gives exactly what the ``rfc8785`` library gives. Most of Lethe's
documents are canonical under plain ``json.dumps(sort_keys=True, ...)`` too, which is ~10x
faster (C code); a cheap walk decides whether that shortcut is exact and otherwise defers to
``rfc8785``. The shortcut is exact when every key sorts the same by code point as by UTF-16
code unit (keys in the Basic Multilingual Plane), every integer is JSON-safe (|i| < 2**53) and
every float prints the same in Python's ``repr`` as in ECMAScript (no exponent, no trailing
``.0``). A test checks the two paths agree on random documents.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import rfc8785

from lethe_audit.errors import FormatError

_MAX_SAFE = 2**53 - 1
_FOUR_BYTE_UTF8 = re.compile(rb"[\xf0-\xf4]")
_BMP_END = "\U00010000"


def _fast_ok(obj: Any) -> bool:
    t = type(obj)
    if t is str or t is bool or obj is None:
        return True
    if t is int:
        return bool(-_MAX_SAFE <= obj <= _MAX_SAFE)
    if t is float:
        if not math.isfinite(obj):
            return False
        r = repr(obj)
        return "e" not in r and not r.endswith(".0")
    if t is dict:
        for k, v in obj.items():
            if type(k) is not str or (not k.isascii() and max(k) >= _BMP_END):
                return False
            if not _fast_ok(v):
                return False
        return True
    if t is list or t is tuple:
        return all(_fast_ok(v) for v in obj)
    return False


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` (dicts, lists, str, int, float, bool, None) as RFC 8785 JSON bytes.

    Raises :class:`~lethe_audit.errors.FormatError` for values JSON cannot represent exactly
    (NaN, infinities, integers beyond 2**53, non-string keys, lone surrogates).
    """
    try:
        fast = _fast_ok(obj)
    except RecursionError:
        raise FormatError("JSON value is nested too deeply") from None
    if fast:
        try:
            return json.dumps(
                obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode("utf-8")
        except UnicodeEncodeError:
            raise FormatError("JSON text contains a lone surrogate") from None
        except RecursionError:  # pragma: no cover - _fast_ok recurses first
            raise FormatError("JSON value is nested too deeply") from None
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, UnicodeEncodeError) as e:
        raise FormatError(f"value cannot be written as canonical JSON: {e}") from None
    except RecursionError:
        raise FormatError("JSON value is nested too deeply") from None


class _Literals:
    """json.loads hooks that note number literals the json.dumps shortcut cannot reproduce."""

    __slots__ = ("exact",)

    def __init__(self) -> None:
        self.exact = True

    def float_(self, text: str) -> float:
        value = float(text)
        # json.dumps writes repr(value): the shortcut is exact only if that is this literal.
        # ECMAScript and Python disagree e.g. on 1e-5 ("0.00001" vs "1e-05").
        if repr(value) != text or "e" in text or "E" in text or text.endswith(".0"):
            self.exact = False
        return value

    def int_(self, text: str) -> int | float:
        value = int(text)
        if -_MAX_SAFE <= value <= _MAX_SAFE:
            return value
        # JSON numbers are doubles: a big integer literal is canonical only as the double's
        # ECMAScript form, which rfc8785 checks on the float.
        self.exact = False
        return float(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_canonical(data: bytes, what: str) -> Any:
    """Parse JSON that must already be in canonical form; FormatError otherwise.

    Re-serialises and compares. The number hooks and a scan for 4-byte UTF-8 sequences (the
    only characters whose key order differs between code points and UTF-16) tell whether the
    fast ``json.dumps`` form is exact; otherwise the check goes through ``rfc8785``.
    """
    lits = _Literals()
    try:
        obj = json.loads(
            data, parse_float=lits.float_, parse_int=lits.int_, parse_constant=_reject_constant
        )
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"{what} is not valid JSON: {e}") from None
    except RecursionError:
        raise FormatError(f"{what} is nested too deeply") from None
    if lits.exact and (data.isascii() or not _FOUR_BYTE_UTF8.search(data)):
        try:
            again = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except RecursionError:
            raise FormatError(f"{what} is nested too deeply") from None
        try:
            same = again.encode("utf-8") == data
        except UnicodeEncodeError:
            same = False
    else:
        same = canonical_json(obj) == data
    if not same:
        raise FormatError(f"{what} is not in RFC 8785 canonical form")
    return obj
