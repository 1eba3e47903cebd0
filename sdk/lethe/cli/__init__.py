"""The ``lethe`` admin CLI: thin click commands over :class:`lethe.workflow.Lethe`.

Every command makes one library call, imports heavy modules inside the command, prints text or
(``--json``) one JSON document, and maps errors to exit codes in one place
(:mod:`lethe.cli._errors`).
"""

from lethe.cli._app import main

__all__ = ["main"]
