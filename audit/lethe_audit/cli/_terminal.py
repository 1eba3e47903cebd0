"""Terminal-safe text: what `lethe-audit` prints never carries control characters from input.

Key ids, legal bases, class names and file contents come from bundles, receipts and models
that an attacker may have written. Printed raw on a terminal, an ESC sequence could clear the
screen, move the cursor over the verdict, or print a fake "OK" line. :func:`safe_text` turns
every C0 control (except the line breaks of our own layout), DEL, every C1 control, the Unicode
line/paragraph separators, bidirectional overrides and lone surrogates into visible escapes.
"""

from __future__ import annotations

import re

__all__ = ["safe_text"]

_UNSAFE = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 (not \t, \n), DEL, C1
    "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"  # separators, bidi controls
    "\ud800-\udfff"  # lone surrogates (cannot even be encoded)
)
_MULTI_LINE = re.compile(f"[{_UNSAFE}]")
_ONE_LINE = re.compile(f"[\t\n{_UNSAFE}]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _escape_json(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def safe_text(text: str, *, one_line: bool = False, json: bool = False) -> str:
    """``text`` with control characters escaped (``\\x1b``, ``\\u202e``).

    ``one_line``: escape tabs and newlines too (an error message stays one line).
    ``json``: ``text`` is a JSON document; escape as JSON ``\\uXXXX`` (still valid JSON, since
    such characters can only occur inside its strings).
    """
    pattern = _ONE_LINE if one_line else _MULTI_LINE
    return pattern.sub(_escape_json if json else _escape, text)
