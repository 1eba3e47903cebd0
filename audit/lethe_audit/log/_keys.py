"""The log's signing-key records (shared by the log service and the bundle export)."""

from __future__ import annotations

from dataclasses import dataclass

from lethe_audit.note import Verifier
from lethe_audit.store import TlogKey

__all__ = ["KEY_COLUMNS", "KeyRecord"]

# The columns of a KeyRecord, in its field order.
KEY_COLUMNS = (
    TlogKey.vkey,
    TlogKey.name,
    TlogKey.key_id,
    TlogKey.status,
    TlogKey.added_at_size,
    TlogKey.retired_at_size,
)


@dataclass(frozen=True)
class KeyRecord:
    """A log signing key as the database records it."""

    vkey: str
    name: str
    key_id: str
    status: str
    added_at_size: int
    retired_at_size: int | None

    def verifier(self) -> Verifier:
        return Verifier.from_vkey(self.vkey)
