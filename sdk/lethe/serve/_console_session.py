"""Console sessions as stateless signed cookies: no server memory, no table.

The cookie is ``v1.<payload>.<mac>``: ``payload`` is base64url JSON ``{"n": token name, "b":
binding, "s": nonce, "e": expiry}`` and ``mac`` its HMAC-SHA256 under the console key (32
random bytes in ``console-session.key`` beside the log's keys, mode 0600, made on first use).
So a session survives a restart and works on every worker that shares the project's keys.
``b`` is an HMAC of the token's stored hash: the session belongs to that one token, and every
page re-reads the token's row, so revoking the token ends its sessions at once. The CSRF
token of a session is an HMAC of its nonce. Logging out deletes the cookie; a copied cookie
stays valid until it expires (8 hours) or its token is revoked. Deleting the key file ends
every session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lethe._io import create_once
from lethe.errors import ConfigError
from lethe.workflow import Principal
from lethe_audit.store import TokenRow, retry_transient

__all__ = ["KEY_FILE", "SESSION_TTL", "ConsoleSession", "SessionSigner", "load_or_create_key"]

KEY_FILE = "console-session.key"
SESSION_TTL = 8 * 3600
_VERSION = "v1"


class _Payload(NamedTuple):
    name: str
    binding: str
    nonce: str
    expires: int


@dataclass(frozen=True)
class ConsoleSession:
    """A valid session: its principal and its CSRF token."""

    principal: Principal
    csrf: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(directory: Path) -> bytes:
    """The console key in ``directory`` (created once, atomically, readable by its owner)."""
    path = directory / KEY_FILE
    if not path.exists():
        try:
            create_once(path, secrets.token_bytes(32).hex().encode("ascii") + b"\n")
        except OSError as e:
            raise ConfigError(
                f"cannot create the console key in {directory} ({e.strerror or e}): let the "
                "`lethe serve` user write the key directory once, or put 64 random hex digits in "
                f"{path} (mode 0600)"
            ) from e
    try:
        key = bytes.fromhex(path.read_text("ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"console key {path} is unreadable or damaged ({type(e).__name__}): delete it and "
            "restart `lethe serve` (everyone logs in again)"
        ) from e
    if len(key) < 32:
        raise ConfigError(f"console key {path} is too short: delete it and restart `lethe serve`")
    return key


@dataclass(frozen=True)
class SessionSigner:
    """Issues and checks console session cookies for the tokens of ``engine``."""

    engine: Engine
    key: bytes
    ttl: int = SESSION_TTL

    def _mac(self, purpose: bytes, data: bytes) -> bytes:
        return hmac.new(self.key, purpose + b"\0" + data, hashlib.sha256).digest()

    def _binding(self, token_hash: str) -> str:
        return _b64(self._mac(b"bind", token_hash.encode("ascii"))[:16])

    def csrf(self, nonce: str) -> str:
        return _b64(self._mac(b"csrf", nonce.encode("ascii")))

    def issue(self, name: str, token_hash: str, *, now: float | None = None) -> str:
        """A cookie value for the token ``name`` whose stored hash is ``token_hash``."""
        payload = {
            "n": name,
            "b": self._binding(token_hash),
            "s": secrets.token_urlsafe(16),
            "e": int((now if now is not None else time.time()) + self.ttl),
        }
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        return f"{_VERSION}.{body}.{_b64(self._mac(b'session', body.encode('ascii')))}"

    def check(self, cookie: str | None, *, now: float | None = None) -> ConsoleSession | None:
        """The session of a cookie, or None (forged, expired, unknown or revoked token)."""
        payload = self._payload(cookie)
        if payload is None or payload.expires < (now if now is not None else time.time()):
            return None
        row = self._token(payload.name)
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(payload.binding, self._binding(row.token_hash)):
            return None
        return ConsoleSession(Principal(row.name, row.role), self.csrf(payload.nonce))

    def _payload(self, cookie: str | None) -> _Payload | None:
        if not cookie or len(cookie) > 1000:
            return None
        parts = cookie.split(".")
        if len(parts) != 3 or parts[0] != _VERSION:
            return None
        _, body, mac = parts
        try:
            good = hmac.compare_digest(_unb64(mac), self._mac(b"session", body.encode("ascii")))
            payload = json.loads(_unb64(body)) if good else None
        except (ValueError, UnicodeError):
            return None
        if not isinstance(payload, dict):
            return None
        types = {"n": str, "b": str, "s": str, "e": int}
        if set(payload) != set(types) or any(
            not isinstance(payload[k], t) for k, t in types.items()
        ):
            return None
        return _Payload(payload["n"], payload["b"], payload["s"], payload["e"])

    def _token(self, name: str) -> TokenRow | None:
        def run() -> TokenRow | None:
            with Session(self.engine) as s:
                return s.execute(select(TokenRow).where(TokenRow.name == name)).scalar_one_or_none()

        return retry_transient(run, what="checking the console session's token")
