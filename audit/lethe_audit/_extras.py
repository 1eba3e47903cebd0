"""Which optional extra of the `lethe-audit` distribution provides which module.

The core install (onnx, cryptography, numpy, rfc8785, click) verifies logs, receipts and
models; everything else is imported where it is used, and a missing module becomes a
:class:`~lethe_audit.errors.MissingExtraError` naming the extra to install.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from lethe_audit.errors import MissingExtraError

__all__ = ["EXTRA_MODULES", "INSTALL_WHERE", "install_line", "missing_extra"]

#: Top-level import name -> the extra that installs it.
EXTRA_MODULES: Mapping[str, str] = MappingProxyType(
    {
        "jinja2": "report",
        "markupsafe": "report",
        "PIL": "report",
        "fontTools": "report",
        "fpdf": "report",
        "matplotlib": "report",
        "onnxruntime": "remeasure",
        "sklearn": "remeasure",
        "scipy": "remeasure",
        "sqlalchemy": "store",
        "alembic": "store",
        "psycopg": "store",
    }
)

#: Where the install line runs, in words (reports, receipt pages). lethe-audit is not on a
#: package index yet, and a verifier shipped by the operator beside its own log would not be
#: independent of what it checks: so the auditor installs it from Lethe's source.
INSTALL_WHERE = (
    "lethe-audit is not on PyPI yet: run the pip line in a checkout of Lethe's source code, "
    "taken from Lethe's own repository rather than from the operator whose log this is."
)


def install_line(extras: str = "") -> str:
    """The auditor's one-line install from a checkout of Lethe's source (``audit/`` is the
    ``lethe-audit`` distribution), e.g. ``pip install './audit[report]'``. Once it is
    installed, ``pip install 'lethe-audit[EXTRA]'`` adds an extra (pip keeps the installed
    lethe-audit)."""
    return f"pip install './audit[{extras}]'" if extras else "pip install ./audit"


def missing_extra(exc: BaseException, feature: str) -> MissingExtraError | None:
    """The typed error for an ``ImportError`` of a module an extra provides (None for any
    other exception: a real bug, let it show)."""
    if isinstance(exc, MissingExtraError):
        return exc
    if not isinstance(exc, ImportError) or not exc.name:
        return None
    top = exc.name.partition(".")[0]
    extra = EXTRA_MODULES.get(top)
    return MissingExtraError(feature, extra, top) if extra else None
