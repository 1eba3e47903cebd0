"""API tokens: created once (printed once), stored as a SHA-256 hash, listed, revoked.

A token is ``lethe_`` + 32 random bytes (base64url). Only ``sha256(token)`` is stored. A slow
password KDF (scrypt, Argon2) would add nothing: it protects *guessable* secrets against an
offline search, and a 256-bit random token cannot be searched whatever the hash costs; a fast
hash also keeps authenticating every request cheap. Lookups go by the hash, and the hash is
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lethe.errors import ConfigError
from lethe.serve._errors import TokenError
from lethe.workflow import Principal
from lethe_audit.store import TokenRow, retry_transient

__all__ = [
    "TOKEN_PREFIX",
    "TokenInfo",
    "authenticate",
    "create_token",
    "list_tokens",
    "revoke_token",
]

TOKEN_PREFIX = "lethe_"


@dataclass(frozen=True)
class TokenInfo:
    """A token as ``lethe tokens list`` shows it (never the token itself)."""

    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "created_at": _iso(self.created_at),
            "revoked_at": _iso(self.revoked_at),
        }


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).isoformat()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(engine: Engine, *, name: str, role: str) -> tuple[str, TokenInfo]:
    """A new token for principal ``name`` with ``role``: (the token, shown once; its info)."""
    try:
        Principal(name, role)
    except ConfigError as e:
        raise TokenError(str(e)) from e
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(timezone.utc)
    row = TokenRow(name=name, role=role, token_hash=token_hash(token), created_at=now)
    try:
        with Session(engine) as s, s.begin():
            s.add(row)
    except IntegrityError as e:
        raise TokenError(
            f"a token named {name!r} exists (names are never reused, even once revoked, so "
            "the log's principals stay unambiguous): choose another name"
        ) from e
    return token, TokenInfo(name, role, now, None)


def list_tokens(engine: Engine) -> list[TokenInfo]:
    def run() -> list[TokenInfo]:
        with Session(engine) as s:
            rows = s.execute(select(TokenRow).order_by(TokenRow.created_at, TokenRow.name))
            return [TokenInfo(r.name, r.role, r.created_at, r.revoked_at) for r in rows.scalars()]

    return retry_transient(run, what="listing tokens")


def revoke_token(engine: Engine, name: str) -> TokenInfo:
    """Revoke the token ``name`` (idempotent: revoking twice keeps the first time)."""
    with Session(engine) as s, s.begin():
        row = s.get(TokenRow, name)
        if row is None:
            raise TokenError(f"no token named {name!r}: see `lethe tokens list`")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(timezone.utc)
        return TokenInfo(row.name, row.role, row.created_at, row.revoked_at)


def authenticate(engine: Engine, token: str) -> Principal | None:
    """The principal of a valid, unrevoked token; None for anything else."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = token_hash(token)

    def run() -> TokenRow | None:
        with Session(engine) as s:
            return s.execute(
                select(TokenRow).where(TokenRow.token_hash == digest)
            ).scalar_one_or_none()

    row = retry_transient(run, what="checking the token")
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.token_hash, digest):
        return None  # pragma: no cover - the lookup matched by equality
    return Principal(row.name, row.role)
