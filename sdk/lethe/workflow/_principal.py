"""Principals: who (which API token) changes a request's state.

``lethe serve`` authenticates every call with a token; the token's name and role are the
principal. The workflow records it on the request (``filed_by``, ``decided_by``, ...) and in the
log event's ``details`` (token names are chosen by the admin and are not personal data, DESIGN
§5). In-process callers (the SDK, the CLI on the project) pass no principal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from lethe_audit.statements import LifecycleEvent

__all__ = ["PRINCIPAL_ROLES", "Principal", "apply_event"]

#: The roles of API tokens (same set as ``lethe_audit.store.TOKEN_ROLES``).
PRINCIPAL_ROLES = ("app", "dpo", "operator", "auditor")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class Principal:
    """An authenticated token: its ``name`` (1-100 of ``A-Za-z0-9._-``) and ``role``."""

    name: str
    role: str

    def __post_init__(self) -> None:
        from lethe.errors import ConfigError

        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(
                f"token name {self.name!r} is invalid: use 1-100 letters, digits, '.', '_' or "
                "'-', starting with a letter or digit"
            )
        if self.role not in PRINCIPAL_ROLES:
            raise ConfigError(f"role {self.role!r} is unknown; one of {', '.join(PRINCIPAL_ROLES)}")

    def to_details(self) -> dict[str, Any]:
        """What a log event's ``details`` carry: ``{"principal": {"name": ..., "role": ...}}``."""
        return {"principal": {"name": self.name, "role": self.role}}


def apply_event(
    principal: Principal, *, apply_id: str, model: str, phase: str, log_index: int, at: datetime
) -> LifecycleEvent:
    """The ``apply.principal`` event: who ran an apply or erase (``log_index``: its signed
    attestation). Appended in the apply's own transaction, so no apply by a principal commits
    without it."""
    from lethe_audit.statements import EventType, LifecycleEvent, rfc3339

    details = {"apply_id": apply_id, "model": model, "phase": phase, "log_index": log_index}
    return LifecycleEvent(
        EventType.APPLY_PRINCIPAL, rfc3339(at), details={**details, **principal.to_details()}
    )
