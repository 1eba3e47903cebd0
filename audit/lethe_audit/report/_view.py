"""The typed view model of a rendered report: every sentence, heading and table cell, once.

:mod:`lethe_audit.report._page` builds one :class:`Document` from the report dict; the HTML
template (``report.html.j2``) and the PDF renderer (:mod:`lethe_audit.report._pdf`) both walk
it block by block, so the two formats carry the same words. The renderers only decide how a
block looks (a badge is a coloured pill in HTML and plain text in the PDF), never what it says.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeAlias

#: How a badge or paragraph is coloured (CSS classes of ``report.css``; PDF colours).
Tone = Literal["ok", "bad", "warn", "plain", "muted", "bold"]


@dataclass(frozen=True)
class Text:
    text: str
    kind: ClassVar[str] = "text"


@dataclass(frozen=True)
class Code:
    """Monospace text; ``digest`` marks long hex/base64 strings that may break anywhere."""

    text: str
    digest: bool = False
    kind: ClassVar[str] = "code"


@dataclass(frozen=True)
class Badge:
    """A short verdict word. ``css`` is its HTML class (a tone or a request/deadline state).
    In the PDF a badge that follows another badge reads in parentheses: ``passed (erased)``."""

    text: str
    css: str
    kind: ClassVar[str] = "badge"

    @property
    def alarming(self) -> bool:
        return self.css in ("bad", "failed", "late", "overdue")


@dataclass(frozen=True)
class Link:
    """A link to an anchor of the same document (the PDF shows its text only)."""

    text: str
    href: str
    code: bool = False
    kind: ClassVar[str] = "link"


@dataclass(frozen=True)
class Note:
    """A muted aside on its own line inside a cell (a metric's meaning under its label)."""

    text: str
    kind: ClassVar[str] = "note"


@dataclass(frozen=True)
class Break:
    kind: ClassVar[str] = "break"


Inline: TypeAlias = Text | Code | Badge | Link | Note | Break
#: A run of inline pieces: one sentence, cell or heading.
Rich: TypeAlias = tuple[Inline, ...]


def rich(*parts: str | Inline | Iterable[Inline] | None) -> Rich:
    """Plain strings become :class:`Text`; ``None`` is skipped; iterables are flattened."""
    out: list[Inline] = []
    for p in parts:
        if p is None:
            continue
        if isinstance(p, str):
            if p:
                out.append(Text(p))
        elif isinstance(p, (Text, Code, Badge, Link, Note, Break)):
            out.append(p)
        else:
            out.extend(p)
    return tuple(out)


def joined(items: Iterable[Rich | str], sep: str = ", ") -> Rich:
    out: list[Inline] = []
    for k, item in enumerate(items):
        if k:
            out.append(Text(sep))
        out.extend(rich(item))
    return tuple(out)


@dataclass(frozen=True)
class Heading:
    text: Rich
    level: int
    kind: ClassVar[str] = "heading"


@dataclass(frozen=True)
class Para:
    text: Rich
    tone: Tone = "plain"
    small: bool = False
    kind: ClassVar[str] = "para"


@dataclass(frozen=True)
class Bullets:
    items: tuple[Rich, ...]
    tone: Tone = "plain"
    kind: ClassVar[str] = "bullets"


@dataclass(frozen=True)
class Commands:
    """Shell lines to copy and paste (each inserted value already one shell word)."""

    lines: tuple[str, ...]
    kind: ClassVar[str] = "commands"


@dataclass(frozen=True)
class Column:
    """A table column: its header and whether it holds numbers (right-aligned). ``weight``
    is its share of the PDF width beyond what the header needs."""

    label: str
    numeric: bool = False
    weight: float = 1.0


@dataclass(frozen=True)
class Row:
    cells: tuple[Rich, ...]
    highlight: bool = False


@dataclass(frozen=True)
class Table:
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    small: bool = False
    css: str = ""
    kind: ClassVar[str] = "table"


@dataclass(frozen=True)
class Facts:
    """A two-column table of labelled facts (label, value)."""

    rows: tuple[tuple[str, Rich], ...]
    kind: ClassVar[str] = "facts"


@dataclass(frozen=True)
class Chart:
    """An SVG chart made by :mod:`lethe_audit.report._charts` (its text already escaped)."""

    svg: str
    kind: ClassVar[str] = "chart"


@dataclass(frozen=True)
class Figure:
    """An authenticated image (``path`` keys the report's figures) and its caption."""

    path: str | None
    caption: Rich
    alt: str
    kind: ClassVar[str] = "figure"


@dataclass(frozen=True)
class Article:
    """A group that starts on a fresh page when printed (one deletion request)."""

    anchor: str
    blocks: tuple[Block, ...]
    kind: ClassVar[str] = "article"


Block: TypeAlias = Heading | Para | Bullets | Commands | Table | Facts | Chart | Figure | Article


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    blocks: tuple[Block, ...]
    nav: bool = True


@dataclass(frozen=True)
class Document:
    """The whole rendered report: the headline first, then the sections in order."""

    title: str  # the browser tab / PDF document title
    heading: str  # the page's first heading
    headline: str
    passed: bool
    subtitle: Rich
    sections: tuple[Section, ...]
    footer: str
    generator: str = ""

    def blocks(self) -> Iterator[Block]:
        """Every block in reading order, articles flattened."""
        for s in self.sections:
            yield from _walk(s.blocks)


def _walk(blocks: Iterable[Block]) -> Iterator[Block]:
    for b in blocks:
        if isinstance(b, Article):
            yield from _walk(b.blocks)
        else:
            yield b


def plain(text: Rich, *, badge_parens: bool = True) -> str:
    """A rich run as plain text (what the PDF prints): a badge right after another badge reads
    in parentheses, alarming badges in capitals (``FAILED``), notes on their own line."""
    out: list[str] = []
    last_badge = False
    for p in text:
        if isinstance(p, Badge):
            word = p.text.upper() if p.alarming else p.text
            if last_badge and badge_parens:
                while out and not out[-1].strip():
                    out.pop()
                out.append(f" ({word})")
            else:
                out.append(word)
            last_badge = True
            continue
        if isinstance(p, Text) and not p.text.strip() and last_badge:
            out.append(p.text)
            continue
        last_badge = False
        if isinstance(p, Break):
            out.append("\n")
        elif isinstance(p, Note):
            out.append(f"\n{p.text}")
        else:
            out.append(p.text)
    return "".join(out)
