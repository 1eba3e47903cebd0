"""Fides' two-way policy webhook: file the mapped deletions, halt Fides, resume it when applied.

Fides (ethyca-fides) calls a *pre-execution policy webhook* with its privacy request (id, status,
identities, policy action) and, for a ``two_way`` webhook, the headers ``reply-to``
(``/privacy-request/<id>/resume``, relative to Fides' API base URL) and ``reply-to-token`` (a
JWE). The webhook answers ``{"derived_identity": ..., "halt": bool}``; a halted request waits
until someone POSTs ``{"derived_identity": {}}`` to the reply-to URL with
``Authorization: Bearer <reply-to-token>``. See docs/service.md ("Fides") for the sources.

:class:`FidesBridge` does Lethe's side: :meth:`~FidesBridge.webhook` maps the identities to the
classes registered for them (:class:`~lethe.workflow.SubjectMap`), files one deletion
request per model (idempotency key derived from the privacy request id, so Fides' retries never
file twice), keeps the reply-to path and the token (AES-GCM encrypted) and answers ``halt``;
:meth:`~FidesBridge.resume_due` resumes, once each, every halted privacy request whose
deletions are all applied.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import re
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from lethe.errors import UnknownRequestError
from lethe.serve._errors import FidesError, FidesNotConfiguredError, ForbiddenError
from lethe.serve._fides_schemas import (
    FidesOutcome,
    FidesReply,
    FidesResumeReport,
    FidesWebhookBody,
)
from lethe.workflow import Principal, SubjectMap, normalize_identity
from lethe_audit.cli import safe_text
from lethe_audit.errors import StoreError
from lethe_audit.store import FidesRequestRow

__all__ = ["FidesBridge"]

_log = logging.getLogger("lethe.serve.fides")
#: Fides' reply-to-token is a compact JWE (base64url parts and dots); anything else (spaces,
#: control or non-ASCII characters) is refused before it is stored or sent anywhere.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{1,8192}")
_DONE = ("applied", "superseded")
#: A claim ("resuming") older than this is taken to be a crashed resumer and is retried.
_STALE_CLAIM = timedelta(minutes=5)


def _utcnow() -> datetime:
    """Now, timezone-aware UTC (as the workflow stores times)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class _Decision:
    status: str
    halt: bool
    detail: str


class FidesBridge:
    """Lethe's end of Fides' policy webhook over one open project."""

    def __init__(
        self,
        lt: Any,
        subjects: SubjectMap,
        *,
        fides_url: str | None,
        legal_basis: str = "fides-erasure",
        timeout: float = 10.0,
        callers: Collection[str] | None = None,
    ) -> None:
        self._lt = lt
        #: The token names that may call the webhook (None: any ``app`` token).
        self._callers = frozenset(callers) if callers else None
        self._subjects = subjects
        self._base = _check_base(fides_url)
        self._legal_basis = legal_basis
        self._timeout = timeout
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return self._base is not None

    # -- the webhook ------------------------------------------------------------------------

    def webhook(
        self,
        body: FidesWebhookBody,
        *,
        reply_to: str | None,
        reply_token: str | None,
        principal: Principal,
    ) -> FidesReply:
        if self._callers is not None and principal.name not in self._callers:
            raise ForbiddenError(
                "this token may not call the Fides webhook: only the tokens named in "
                "LETHE_FIDES_TOKENS may (give Fides its own token)"
            )
        prid = body.privacy_request_id
        row = self._row(prid)
        if row is not None and row.filed_by != principal.name:
            raise ForbiddenError(
                f"privacy request {prid!r} came through another token: configure one Lethe "
                "token per Fides instance"
            )
        if body.policy_action not in (None, "erasure"):
            d = _Decision("not_halted", False, f"policy action {body.policy_action}: no deletion")
            return self._answer(prid, principal, [], d, None, None)
        pausable = body.callback_type == "pre" and body.direction == "two_way"
        if pausable and (not reply_to or not reply_token):
            raise FidesError(
                "a two-way pre-execution webhook needs the reply-to and reply-to-token headers "
                "Fides sends: without them Lethe could never resume the request"
            )
        if pausable and self._base is None:
            raise FidesNotConfiguredError(
                "the Fides integration is not configured: start the server with LETHE_FIDES_URL "
                "set to Fides' API base URL (e.g. https://fides.example.com/api/v1)"
            )
        path = _check_reply_to(reply_to, prid) if pausable else None
        if pausable and not _TOKEN.fullmatch(reply_token or ""):
            raise FidesError(
                "the reply-to-token header is not a JWE (base64url parts joined by '.') as "
                "Fides sends it"
            )
        ids = json.loads(row.request_ids) if row is not None else []
        if not ids:  # first call, or nothing was mapped then (the app may have mapped since)
            ids = self._file(body, principal)
        d = self._decide(ids, pausable, row.status if row is not None else None)
        sealed = self._subjects.seal(reply_token) if d.halt and reply_token else None
        return self._answer(prid, principal, ids, d, path, sealed)

    def _file(self, body: FidesWebhookBody, p: Principal) -> list[str]:
        """One deletion request per model the identities are mapped in (idempotent)."""
        identities = _identities(body.identity.model_dump())
        ids = []
        for model, (kind, classes) in self._subjects.lookup(identities).items():
            digest = hashlib.sha256(f"{body.privacy_request_id}\x00{model}".encode()).hexdigest()
            r = self._lt.file(
                subject=normalize_identity(kind, identities[kind]),
                classes=list(classes),
                legal_basis=self._legal_basis,
                model=model,
                idempotency_key=f"{p.name}/fides:{digest[:40]}",
                principal=p,
            )
            ids.append(r.id)
        return ids

    def _decide(self, ids: list[str], pausable: bool, before: str | None) -> _Decision:
        if not ids:
            return _Decision("unmapped", False, "no subject mapping matches these identities: "
                             "nothing to delete in Lethe")  # fmt: skip
        state = self._state(ids)
        if before in ("resumed", "resuming", "resume_failed"):
            return _Decision(before, False, f"already {before}")
        if state == "done":
            return _Decision("not_halted", False, "the deletions are applied already")
        if not pausable:
            return _Decision("not_halted", False, "deletion filed; this webhook cannot pause Fides")
        if state == "rejected":
            return _Decision("rejected", True, "a deletion was rejected: Lethe will not resume")
        return _Decision("halted", True, "deletion filed: Lethe resumes Fides once it is applied")

    def _state(self, ids: list[str]) -> str:
        statuses = [self._lt.get(i).status for i in ids]
        if any(s == "rejected" for s in statuses):
            return "rejected"
        return "done" if all(s in _DONE for s in statuses) else "waiting"

    def _answer(
        self,
        prid: str,
        p: Principal,
        ids: list[str],
        d: _Decision,
        reply_to: str | None,
        sealed: bytes | None,
    ) -> FidesReply:
        try:
            row = self._save(prid, p, ids, d, reply_to, sealed)
        except StoreError as e:
            if not isinstance(e.__cause__, IntegrityError):
                raise
            row = self._save(prid, p, ids, d, reply_to, sealed)  # a concurrent first call won
        _log.info("fides %s: %s (%d request(s))", safe_text(prid), d.status, len(ids))
        return FidesReply(derived_identity={}, halt=d.halt, lethe=_outcome(row, d.detail))

    def _save(
        self,
        prid: str,
        p: Principal,
        ids: list[str],
        d: _Decision,
        reply_to: str | None,
        sealed: bytes | None,
    ) -> FidesRequestRow:
        now = _utcnow()
        with self._lt.store.write() as s:
            row: FidesRequestRow | None = s.get(FidesRequestRow, prid)
            if row is None:
                row = FidesRequestRow(
                    privacy_request_id=prid,
                    filed_by=p.name,
                    request_ids=json.dumps(ids),
                    received_at=now,
                    attempts=0,
                )
                s.add(row)
            if ids and row.request_ids == "[]":
                row.request_ids = json.dumps(ids)
            if row.status not in ("resuming", "resumed", "resume_failed"):
                row.status = d.status
                row.reply_to = reply_to if d.halt else None
                row.reply_token = sealed if d.halt else None
            row.updated_at = now
            s.flush()
            s.expunge(row)
        return row

    # -- reading ----------------------------------------------------------------------------

    def _row(self, prid: str) -> FidesRequestRow | None:
        with self._lt.store.read() as s:
            row: FidesRequestRow | None = s.get(FidesRequestRow, prid)
            if row is not None:
                s.expunge(row)
            return row

    def outcome(self, prid: str, p: Principal) -> FidesOutcome:
        row = self._row(prid)
        if row is None or (p.role == "app" and row.filed_by != p.name):
            raise UnknownRequestError(f"no Fides privacy request {prid!r} reached Lethe")
        return _outcome(row, _DETAIL.get(row.status, row.status))

    # -- resuming ---------------------------------------------------------------------------

    def resume_due(self) -> FidesResumeReport:
        """Resume every halted privacy request whose deletions are all applied (each once: a
        row is claimed before its callback, so two resumers never both call)."""
        if self._base is None:
            raise FidesNotConfiguredError(
                "the Fides integration is not configured: set LETHE_FIDES_URL"
            )
        report = FidesResumeReport(resumed=[], waiting=[], failed=[], rejected=[])
        with self._lock:
            for row in self._candidates():
                prid = row.privacy_request_id
                state = self._state(json.loads(row.request_ids))
                if state == "waiting":
                    report.waiting.append(prid)
                elif state == "rejected":
                    self._finish(prid, "rejected", "a deletion was rejected", count=False)
                    report.rejected.append(prid)
                elif self._claim(row):
                    ok = self._resume(row)
                    (report.resumed if ok else report.failed).append(prid)
        return report

    def resume_quietly(self) -> None:
        """:meth:`resume_due` for background use: logs instead of raising."""
        if self._base is None:
            return
        try:
            report = self.resume_due()
        except Exception:
            _log.exception("resuming Fides privacy requests failed")
            return
        if report.resumed or report.failed:
            _log.info("fides: resumed %d, failed %d", len(report.resumed), len(report.failed))

    def _candidates(self) -> list[FidesRequestRow]:
        stale = _utcnow() - _STALE_CLAIM
        with self._lt.store.read() as s:
            rows = s.execute(
                select(FidesRequestRow)
                .where(
                    or_(
                        FidesRequestRow.status == "halted",
                        (FidesRequestRow.status == "resuming")
                        & (FidesRequestRow.updated_at < stale),
                    )
                )
                .order_by(FidesRequestRow.received_at)
            ).scalars()
            out = list(rows)
            for r in out:
                s.expunge(r)
            return out

    def _claim(self, row: FidesRequestRow) -> bool:
        """Move the row to ``resuming`` if nobody else did since it was read."""
        stmt = (
            update(FidesRequestRow)
            .where(FidesRequestRow.privacy_request_id == row.privacy_request_id)
            .where(FidesRequestRow.status == row.status)
        )
        if row.status == "resuming":  # a stale claim: still stale (nobody took it since)
            stmt = stmt.where(FidesRequestRow.updated_at < _utcnow() - _STALE_CLAIM)
        with self._lt.store.write() as s:
            res = s.execute(stmt.values(status="resuming", updated_at=_utcnow()))
            return bool(getattr(res, "rowcount", 0) == 1)

    def _resume(self, row: FidesRequestRow) -> bool:
        prid = row.privacy_request_id
        if not row.reply_to or row.reply_token is None:
            self._finish(prid, "resume_failed", "no reply-to stored")
            return False
        try:  # re-checked: the row may predate the check, or the database may be edited
            url = f"{self._base}{_check_reply_to(row.reply_to, prid)}"
        except FidesError:
            self._finish(prid, "resume_failed", "the stored reply-to is not this request's")
            return False
        try:
            token = self._subjects.open(row.reply_token)
            resp = httpx.post(  # only to LETHE_FIDES_URL; a redirect is an answer, not followed
                url,
                json={"derived_identity": {}},
                headers={"Authorization": f"Bearer {token}"},
                timeout=self._timeout,
                follow_redirects=False,
            )
        except httpx.HTTPError as e:
            self._finish(prid, "halted", f"cannot reach Fides: {type(e).__name__}")
            return False
        except Exception as e:
            self._finish(
                prid, "resume_failed", f"cannot open the reply-to token: {type(e).__name__}"
            )
            return False
        if resp.is_success:
            self._finish(prid, "resumed", None)
            return True
        retry = resp.status_code >= 500 or resp.status_code in (408, 429)
        error = f"Fides answered HTTP {resp.status_code} to the resume call"
        self._finish(prid, "halted" if retry else "resume_failed", error)
        return False

    def _finish(self, prid: str, status: str, error: str | None, *, count: bool = True) -> None:
        now = _utcnow()
        with self._lt.store.write() as s:
            row = s.get(FidesRequestRow, prid)
            if row is None:  # pragma: no cover - rows are never deleted
                return
            row.status = status
            row.updated_at = now
            row.last_error = error
            if count:
                row.attempts = (row.attempts or 0) + 1
            if status == "resumed":
                row.resumed_at = now
            if status in ("resumed", "resume_failed", "rejected"):
                row.reply_token = None  # no longer needed: do not keep the secret


_DETAIL = {
    "halted": "waiting for the deletions to be applied",
    "resuming": "calling Fides back",
    "resumed": "Fides was resumed",
    "resume_failed": "the resume call failed for good: resume the request in Fides",
    "rejected": "a deletion was rejected: Lethe will not resume; deny the request in Fides",
    "not_halted": "Fides was not paused",
    "unmapped": "no subject mapping matched: nothing to delete in Lethe",
}


def _outcome(row: FidesRequestRow, detail: str) -> FidesOutcome:
    return FidesOutcome(
        privacy_request_id=row.privacy_request_id,
        status=row.status,
        request_ids=json.loads(row.request_ids),
        detail=detail,
        resumed_at=row.resumed_at.isoformat() if row.resumed_at else None,
        attempts=row.attempts or 0,
        last_error=row.last_error,
    )


def _identities(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Fides identities as ``type -> value``: plain values, and custom identities'
    ``{"label", "value"}``; anything else (lists, empty values) is left out."""
    out: dict[str, Any] = {}
    for kind, v in raw.items():
        if isinstance(v, Mapping):
            v = v.get("value")
        if isinstance(v, str | int) and not isinstance(v, bool) and str(v).strip():
            out[str(kind)] = v
    return out


def _check_base(url: str | None) -> str | None:
    if url is None or not url.strip():
        return None
    url = url.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        raise FidesError(
            f"LETHE_FIDES_URL {safe_text(url)!r} must be an http(s) URL without query, e.g. "
            "https://fides.example.com/api/v1"
        )
    plain = url.startswith("http://") and not _loopback(httpx.URL(url).host)
    if plain and os.environ.get("LETHE_FIDES_ALLOW_HTTP") != "1":
        raise FidesError(
            "LETHE_FIDES_URL is plain http to another host: the reply-to token (it resumes "
            "the privacy request in Fides) would cross the network unencrypted; use https, "
            "or set LETHE_FIDES_ALLOW_HTTP=1 on a private network you trust"
        )
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_reply_to(reply_to: str | None, prid: str) -> str:
    """The reply-to path, which must be exactly the one Fides sends for this privacy request
    (``/privacy-request/<privacy_request_id>/resume``, joined to LETHE_FIDES_URL): a caller can
    neither aim the resume call (and its token) at another host nor at another Fides path."""
    expected = f"/privacy-request/{prid}/resume"
    if reply_to is None or reply_to != expected or prid.strip(".") == "":  # no "/../resume"
        raise FidesError(
            "the reply-to header must be /privacy-request/<privacy_request_id>/resume for the "
            "privacy request in the body, as Fides sends it (Lethe joins it to LETHE_FIDES_URL)"
        )
    return expected
