"""`lethe-audit`: the auditor's command line (click). Entry point :func:`main`.

Add a command by writing a module here and registering it in ``_app._register``; errors go
through the one map in ``_errors`` (no per-command handling).
"""

from __future__ import annotations

from lethe_audit.cli._app import LetheAuditGroup, main
from lethe_audit.cli._errors import EXIT_CODES, exit_code
from lethe_audit.cli._terminal import safe_text

__all__ = ["EXIT_CODES", "LetheAuditGroup", "exit_code", "main", "safe_text"]
