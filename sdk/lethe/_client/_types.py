"""What the client returns: the SDK's request fields, parsed from the API's JSON."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

__all__ = ["RemoteRequest"]


def _time(v: Any) -> datetime | None:
    return datetime.fromisoformat(v) if isinstance(v, str) else None


@dataclass(frozen=True)
class RemoteRequest:
    """A deletion request as the service shows it (same names as ``lethe.DeletionRequest``,
    plus the principals). ``subject_key`` is set only on what :meth:`Client.file` returns."""

    id: str
    model: str
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    legal_basis: str
    status: str
    overdue: bool
    subject_commitment: str
    received_at: datetime
    due_at: datetime
    idempotency_key: str | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    decided_by_role: str | None = None
    decision_reason: str | None = None
    applied_at: datetime | None = None
    apply_id: str | None = None
    failure_reason: str | None = None
    shredded_at: datetime | None = None
    shredded_by: str | None = None
    shredded_by_role: str | None = None
    erased_at: datetime | None = None
    depth: str | None = None
    filed_by: str | None = None
    filed_by_role: str | None = None
    subject_key: str | None = field(default=None, repr=False)

    @property
    def shredded(self) -> bool:
        return self.shredded_at is not None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RemoteRequest:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["classes"] = tuple(kw.get("classes", ()))
        kw["class_names"] = tuple(kw.get("class_names", ()))
        for k in ("received_at", "due_at", "decided_at", "applied_at", "shredded_at", "erased_at"):
            kw[k] = _time(kw.get(k))
        return cls(**kw)
