"""Public building blocks for command lines over ``lethe_audit`` (the ``lethe`` admin CLI uses
them): the ``--json`` option and success output, the error map and one-line error reports,
terminal-safe text. Stdlib and click only.

- :func:`json_option`, :data:`JSON_META`: ``--json``, remembered in ``ctx.meta[JSON_META]`` so
  an error handler knows to print ``{"ok": false, ...}``.
- :func:`emit`: print a success (``{"ok": true, ...}`` with ``--json``, else text).
- :data:`EXIT_CODES`, :func:`exit_code`: ``lethe_audit``'s error class -> exit code map (1-99).
- :func:`safe_text`: text with control characters escaped, for terminal output.
"""

from __future__ import annotations

from lethe_audit.cli._common import JSON_META, emit, json_option
from lethe_audit.cli._errors import EXIT_CODES, exit_code
from lethe_audit.cli._terminal import safe_text

__all__ = ["EXIT_CODES", "JSON_META", "emit", "exit_code", "json_option", "safe_text"]
