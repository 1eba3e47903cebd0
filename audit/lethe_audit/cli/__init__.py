"""`lethe-audit`: the auditor's command line (click). Entry point :func:`main`.

Add a command by writing a module here and registering it in ``_app._register``; errors go
through the one map in ``_errors`` (no per-command handling). Other command lines (the
``lethe`` admin CLI) use :mod:`lethe_audit.cli.common`; importing it does not build the
``lethe-audit`` commands (``main`` loads on first use, PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lethe_audit.cli._errors import EXIT_CODES, exit_code
from lethe_audit.cli._terminal import safe_text

if TYPE_CHECKING:
    from lethe_audit.cli._app import LetheAuditGroup, main

__all__ = ["EXIT_CODES", "LetheAuditGroup", "exit_code", "main", "safe_text"]


def __getattr__(name: str) -> Any:
    if name in ("main", "LetheAuditGroup"):
        from lethe_audit.cli import _app

        return getattr(_app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
