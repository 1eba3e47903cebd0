"""RFC 9457 problem details: each error class -> HTTP status and a stable ``type`` URI."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from lethe import errors as E
from lethe.serve import _errors as S
from lethe_audit.errors import LetheAuditError, StoreError

__all__ = ["PROBLEM_BASE", "STATUS_OF", "problem", "problem_type", "status_of"]

#: ``type`` of a problem: this prefix + the error's class name (``urn:lethe:problem:...``).
PROBLEM_BASE = "urn:lethe:problem:"

#: Error class -> HTTP status; a class without an entry takes its nearest listed base's.
STATUS_OF: Mapping[type[BaseException], int] = MappingProxyType(
    {
        LetheAuditError: 500,
        StoreError: 503,
        E.LetheError: 500,
        E.ConfigError: 422,
        E.RequestError: 422,
        E.UnknownRequestError: 404,
        E.UnknownModelError: 404,
        E.InvalidTransitionError: 409,
        E.IdempotencyConflictError: 409,
        E.ReceiptUnavailableError: 409,
        E.ApplyError: 409,
        E.PolicyError: 422,
        E.ApplyLockLostError: 503,
        E.InsufficientSpaceError: 507,
        S.TokenError: 422,
        S.AuthenticationError: 401,
        S.ForbiddenError: 403,
        E.SeparationOfDutiesError: 403,
        S.RateLimitedError: 429,
        S.FidesError: 422,
        S.FidesNotConfiguredError: 409,
    }
)


def status_of(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def problem_type(name: str) -> str:
    return PROBLEM_BASE + name


def problem(
    status: int, name: str, detail: str, *, instance: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A problem+json body: ``type``, ``title`` (the error name), ``status``, ``detail``."""
    body: dict[str, Any] = {
        "type": problem_type(name),
        "title": name,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    body.update(extra)
    return body
