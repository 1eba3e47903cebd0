"""The audit log service (:class:`AuditLog`) on SQLite or PostgreSQL.

>>> from lethe_audit.log import AuditLog
>>> log = AuditLog.open("sqlite:///lethe.db", signers=keyring.signers())  # doctest: +SKIP
>>> result = log.append(event)                                            # doctest: +SKIP
>>> receipt = log.receipt(result.index)                                   # doctest: +SKIP
"""

from __future__ import annotations

from lethe_audit.log._keys import KeyRecord
from lethe_audit.log._log import APPEND_STEPS, Appendable, AppendResult, AuditLog
from lethe_audit.log._source import DatabaseHashSource

__all__ = [
    "APPEND_STEPS",
    "AppendResult",
    "Appendable",
    "AuditLog",
    "DatabaseHashSource",
    "KeyRecord",
]
