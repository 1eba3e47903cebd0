"""Errors of ``lethe serve`` and ``lethe.Client`` (torch-free, no server imports).

Every error keeps its typed name: the server answers ``application/problem+json`` with
``type`` = ``urn:lethe:problem:<ErrorName>`` (stable), ``title`` = the error name and ``detail``
= its message; the client raises the same class again when it is one of Lethe's.
"""

from __future__ import annotations

from lethe.errors import LetheError

__all__ = [
    "AuthenticationError",
    "ClientError",
    "FidesError",
    "FidesNotConfiguredError",
    "ForbiddenError",
    "RateLimitedError",
    "ServiceError",
    "TokenError",
]


class ServiceError(LetheError):
    """Base class of the HTTP service's errors (tokens, authentication, the client)."""


class TokenError(ServiceError):
    """A token cannot be created or revoked as asked (bad name or role, name taken, unknown)."""


class AuthenticationError(ServiceError):
    """No token, an unknown token or a revoked one (HTTP 401): send ``Authorization: Bearer``
    with a valid token (``lethe tokens create``)."""


class ForbiddenError(ServiceError):
    """The token's role may not do this, or the principal may not (HTTP 403): e.g. the
    principal that filed a request cannot approve it."""


class RateLimitedError(ServiceError):
    """Too many concurrent calls for this token (HTTP 429): retry after a short wait."""


class ClientError(ServiceError):
    """``lethe.Client`` got an answer it cannot read, or could not reach the server."""


class FidesError(ServiceError):
    """A Fides policy webhook Lethe cannot act on as sent (HTTP 422): a two-way pre-execution
    webhook without its ``reply-to`` / ``reply-to-token`` headers, or a reply-to that is not a
    plain path."""


class FidesNotConfiguredError(FidesError):
    """The server was started without ``LETHE_FIDES_URL`` (HTTP 409), so it could never resume a
    halted Fides privacy request: set it to Fides' API base URL and restart."""
