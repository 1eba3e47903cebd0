"""Authentication (bearer tokens) and authorization (roles, per-token concurrency)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine

from lethe.serve._errors import AuthenticationError, ForbiddenError, RateLimitedError
from lethe.serve._tokens import authenticate
from lethe.workflow import Principal

__all__ = ["Gate"]

_bearer = HTTPBearer(auto_error=False, description="A token from `lethe tokens create`.")


@dataclass
class Gate:
    """Checks a call's token and role, and caps the calls one token has in flight."""

    engine: Engine
    max_in_flight: int = 32
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _in_flight: dict[str, int] = field(default_factory=dict)

    def principal(self, creds: HTTPAuthorizationCredentials | None) -> Principal:
        if creds is None or creds.scheme.lower() != "bearer":
            raise AuthenticationError(
                "no token: send `Authorization: Bearer <token>` (see `lethe tokens create`)"
            )
        p = authenticate(self.engine, creds.credentials)
        if p is None:
            raise AuthenticationError("the token is unknown or revoked: ask an admin for a token")
        return p

    def optional(self) -> Callable[..., Principal | None]:
        """A FastAPI dependency: the call's principal if it sends a valid token, else None
        (no token, an unknown or a revoked one: the call goes on unauthenticated)."""

        def dependency(
            creds: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
        ) -> Principal | None:
            if creds is None or creds.scheme.lower() != "bearer":
                return None
            return authenticate(self.engine, creds.credentials)

        return dependency

    def allow(self, *roles: str) -> Callable[..., Iterator[Principal]]:
        """A FastAPI dependency: the call's principal when its role is one of ``roles``."""

        def dependency(
            creds: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
        ) -> Iterator[Principal]:
            p = self.principal(creds)
            if p.role not in roles:
                raise ForbiddenError(
                    f"token {p.name!r} has role {p.role!r}; this needs role {' or '.join(roles)}"
                )
            self._enter(p)
            try:
                yield p
            finally:
                self._leave(p)

        return dependency

    def _enter(self, p: Principal) -> None:
        with self._lock:
            n = self._in_flight.get(p.name, 0)
            if n >= self.max_in_flight:
                raise RateLimitedError(
                    f"token {p.name!r} has {n} calls in flight (limit {self.max_in_flight}): "
                    "wait for them, then retry"
                )
            self._in_flight[p.name] = n + 1

    def _leave(self, p: Principal) -> None:
        with self._lock:
            n = self._in_flight.get(p.name, 1) - 1
            if n <= 0:
                self._in_flight.pop(p.name, None)
            else:
                self._in_flight[p.name] = n
