"""Which optional extra of the `lethe-audit` distribution provides which module.

The core install (onnx, cryptography, numpy, rfc8785, click) verifies logs, receipts and
models; everything else is imported where it is used, and a missing module becomes a
:class:`~lethe_audit.errors.MissingExtraError` naming the extra to install.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from lethe_audit.errors import MissingExtraError

__all__ = ["EXTRA_MODULES", "missing_extra"]

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
