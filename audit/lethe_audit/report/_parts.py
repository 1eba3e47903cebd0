"""Small pieces of the view model that several sections share (badges, digests, metric cells)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lethe_audit.report import _fmt
from lethe_audit.report._view import Badge, Code, Inline, Note, Rich, Text, rich


def ok_badge(ok: Any, yes: str = "verified", no: str = "failed") -> Badge:
    return Badge(yes if ok else no, "ok" if ok else "bad")


def phase_badge(a: Mapping[str, Any]) -> Badge:
    return Badge(a["phase_label"], "ok" if a["phase_label"] == "erased" else "warn")


def verdict(a: Mapping[str, Any]) -> Rich:
    """The logged verdict with the phase beside it: never "passed" alone for a masked model."""
    out: list[Inline] = [ok_badge(a["policy"]["passed"], "passed", "failed")]
    if a["outcome"] == "applied":
        out += [Text(" "), phase_badge(a)]
    return tuple(out)


def digest(text: Any) -> Code:
    return Code(_fmt.DASH if text is None else str(text), digest=True)


def ids(values: Sequence[Any]) -> str:
    """Class ids or entry numbers as ``3, 7`` (a dash when there are none)."""
    return ", ".join(map(str, values)) or _fmt.DASH


def entries(values: Sequence[Any]) -> str:
    return "#" + ", #".join(map(str, values))


def metric_cell(label: str, meaning: str | None) -> Rich:
    """A metric's label with its one-line meaning beneath it."""
    return rich(label, Note(meaning) if meaning else None)


def good_cell(direction: Any) -> Rich:
    """The "good is low/high" marker (``↓ low is good``)."""
    return rich(_fmt.good(direction))


def good_of(direction_words: str | None) -> str | None:
    """``lower is better`` -> ``low`` (how :data:`METRIC_DEFINITIONS` spells a direction)."""
    if not direction_words:
        return None
    if direction_words.startswith("low"):
        return "low"
    if direction_words.startswith("high"):
        return "high"
    return None


def settings(config: Mapping[str, Any], *, numbers: bool = False) -> Rich:
    """``key = value`` pairs in code, sorted by key (values through :func:`_fmt.num` when
    ``numbers``)."""
    out: list[Inline] = []
    for k, (key, val) in enumerate(sorted(config.items())):
        if k:
            out.append(Text(", "))
        out.append(Code(f"{key} = {_fmt.num(val) if numbers else val}"))
    return tuple(out)
