"""The request service: filing deletion requests and moving them through their states.

Every state change is one transaction that also appends its lifecycle event to the signed log.
What a call returns is built from what it committed, before the commit (no read-back that could
fail after it and make a caller retry).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lethe.classes import resolve_class_ids
from lethe.errors import (
    IdempotencyConflictError,
    InvalidTransitionError,
    RequestError,
    SampleLevelRequestError,
    SeparationOfDutiesError,
)
from lethe.workflow._principal import Principal
from lethe.workflow._store import ProjectStore, idempotent
from lethe.workflow._time import now as utcnow
from lethe.workflow._types import DeletionRequest
from lethe_audit.errors import StoreError
from lethe_audit.log import AuditLog
from lethe_audit.statements import (
    EventType,
    LifecycleEvent,
    RequestStatus,
    hmac_commitment,
    rfc3339,
)
from lethe_audit.store import RETRY_ATTEMPTS, ModelRow, RequestRow, SubjectKeyRow, is_transient

__all__ = ["LEGAL_BASES", "RequestService", "normalize_subject"]

#: GDPR Art. 17(1) grounds; any code matching ``_LEGAL_BASIS`` is accepted (no free text: the
#: legal basis is written to the log, which must hold no personal data).
LEGAL_BASES = {
    "gdpr-17-1-a": "data no longer necessary for the purposes collected",
    "gdpr-17-1-b": "consent withdrawn",
    "gdpr-17-1-c": "objection to processing",
    "gdpr-17-1-d": "unlawfully processed",
    "gdpr-17-1-e": "erasure required by a legal obligation",
    "gdpr-17-1-f": "data of a child collected for information society services",
}
_LEGAL_BASIS = re.compile(r"[a-z0-9][a-z0-9:._-]{0,63}")
_MAX_SUBJECT = 1024


def normalize_subject(subject: str) -> str:
    """The form of a subject identifier that is committed to (trimmed, Unicode NFC).

    Apps must pass identifiers consistently (e.g. lower-case e-mail addresses): the same
    person filed under two spellings gets two unrelated commitments.
    """
    if not isinstance(subject, str):
        raise RequestError("subject must be a string (the data subject's identifier)")
    s = unicodedata.normalize("NFC", subject.strip())
    if not s:
        raise RequestError("subject is empty: pass the data subject's identifier")
    if len(s) > _MAX_SUBJECT:
        raise RequestError(f"subject is longer than {_MAX_SUBJECT} characters")
    return s


@dataclass(frozen=True)
class _NewRequest:
    """A request about to be filed: everything its one transaction writes."""

    rid: str
    model: str
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    legal_basis: str
    idempotency_key: str | None
    key: bytes
    commitment: str
    received_at: datetime
    due_days: int
    principal: Principal | None = None


@dataclass(frozen=True)
class _Transition:
    """One decision of the request state machine."""

    allowed: tuple[RequestStatus, ...]
    to: RequestStatus
    event: EventType


_APPROVE = _Transition(
    (RequestStatus.RECEIVED, RequestStatus.FAILED),
    RequestStatus.APPROVED,
    EventType.REQUEST_APPROVED,
)
_REJECT = _Transition(
    (RequestStatus.RECEIVED, RequestStatus.APPROVED, RequestStatus.FAILED),
    RequestStatus.REJECTED,
    EventType.REQUEST_REJECTED,
)


class RequestService:
    """Deletion requests: filing (idempotent, retried), reading, deciding, shredding."""

    def __init__(self, store: ProjectStore, log: AuditLog) -> None:
        self._store = store
        self._log = log

    # -- filing -----------------------------------------------------------------------------

    def file(
        self,
        *,
        subject: str,
        classes: Iterable[int | str],
        legal_basis: str,
        model: str | None = None,
        idempotency_key: str | None = None,
        samples: Sequence[Any] | None = None,
        principal: Principal | None = None,
    ) -> DeletionRequest:
        """File a deletion request for a data subject.

        ``classes`` are class names or ids of ``model``; ``legal_basis`` a code such as
        ``gdpr-17-1-b`` (see :data:`LEGAL_BASES`). The subject identifier is never stored: only
        an HMAC-SHA256 commitment under a fresh per-request key (returned as
        ``request.subject_key`` so the subject can later check their receipt). The same
        ``idempotency_key`` with the same subject and contents returns the same request, also
        from concurrent processes; with another subject or other contents it raises
        :class:`~lethe.errors.IdempotencyConflictError` (and reveals nothing of the other
        request).

        A lost database connection is retried (the request keeps its id across tries, so a
        commit whose acknowledgement was lost is found, not repeated). The call returns only
        what was committed, built without a read-back; a :class:`StoreError` means nothing
        was filed, unless its message says that is unknown.

        ``principal`` (``lethe serve`` passes the authenticated token's) is recorded as the
        filer (``filed_by``) and in the log event; an idempotency key only ever names the
        request of the principal that filed it.
        """
        subj = _check_filing(subject, legal_basis, idempotency_key, samples)
        wanted = [classes] if isinstance(classes, str | int) else list(classes)  # retried below
        model_name, ids, names = self._store.retry(
            lambda: self._filing_target(model, wanted), what="reading the model"
        )
        if idempotency_key is not None:
            existing = self._by_idempotency_key(idempotency_key)
            if existing is not None:
                _check_filer(existing, principal)
                return _check_same(existing, model_name, ids, legal_basis, subj)
        key = secrets.token_bytes(32)
        new = _NewRequest(
            rid="req-" + secrets.token_hex(12),
            model=model_name,
            classes=ids,
            class_names=names,
            legal_basis=legal_basis,
            idempotency_key=idempotency_key,
            key=key,
            commitment=hmac_commitment(key, subj),
            received_at=utcnow(),
            due_days=self._store.settings.due_days,
            principal=principal,
        )
        return self._insert_retried(new, subj)

    def _insert_retried(self, new: _NewRequest, subj: str) -> DeletionRequest:
        """Insert ``new``, retrying a lost connection (the request keeps its id across tries,
        so a commit whose acknowledgement was lost is found, not repeated)."""
        for attempt in range(RETRY_ATTEMPTS):
            try:
                return self._insert_request(new)
            except StoreError as e:
                if isinstance(e.__cause__, IntegrityError) and new.idempotency_key is not None:
                    existing = self._by_idempotency_key(new.idempotency_key)
                    if existing is None:
                        raise
                    _check_filer(existing, new.principal)
                    return _check_same(existing, new.model, new.classes, new.legal_basis, subj)
                if not is_transient(e):
                    raise
                # The connection may have died after the commit went through: the same id
                # then exists and is what was filed (no duplicate, no second row).
                try:
                    done = self._filed(new.rid)
                except StoreError as e2:
                    raise StoreError(
                        f"{e}; whether request {new.rid} was filed is unknown ({e2}): file it "
                        "again with an idempotency key, or check `lethe request list`"
                    ) from e
                if done is not None:
                    return replace(done, subject_key=new.key.hex())
                if attempt == RETRY_ATTEMPTS - 1:
                    raise StoreError(f"{e}; nothing was filed") from e
                time.sleep(0.1 * (attempt + 1))
        raise StoreError("nothing was filed: the database kept failing")  # pragma: no cover

    def _filing_target(
        self, model: str | None, classes: Iterable[int | str]
    ) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
        with self._store.read() as s:
            mrow = self._store.model_row(s, model)
            names = tuple(json.loads(mrow.class_names))
            return mrow.name, resolve_classes(mrow, classes), names

    def _insert_request(self, new: _NewRequest) -> DeletionRequest:
        """One transaction: the request, its subject key and its ``request.received`` entry.
        What was committed is returned from memory: no read-back that could fail after the
        commit and make a caller retry (and file a duplicate)."""
        due = new.received_at + timedelta(days=new.due_days)
        with self._store.write() as s:
            row = RequestRow(
                id=new.rid,
                model_name=new.model,
                subject_commitment=new.commitment,
                classes=json.dumps(list(new.classes)),
                legal_basis=new.legal_basis,
                status=RequestStatus.RECEIVED.value,
                idempotency_key=new.idempotency_key,
                received_at=new.received_at,
                due_at=due,
                filed_by=new.principal.name if new.principal else None,
                filed_by_role=new.principal.role if new.principal else None,
            )
            s.add(row)
            s.add(SubjectKeyRow(request_id=new.rid, key=new.key))
            s.flush()  # the unique idempotency key is checked here, before logging
            event = LifecycleEvent(
                EventType.REQUEST_RECEIVED,
                rfc3339(new.received_at),
                request_id=new.rid,
                details={
                    "model": new.model,
                    "classes": list(new.classes),
                    "legal_basis": new.legal_basis,
                    "subject_commitment": new.commitment,
                    "due_at": rfc3339(due),
                    **(new.principal.to_details() if new.principal else {}),
                },
            )
            row.received_index = self._log.append(event, session=s).index
            s.flush()
            filed = DeletionRequest.from_row(row, new.class_names, new.key)
        return filed

    def _filed(self, request_id: str) -> DeletionRequest | None:
        def run() -> DeletionRequest | None:
            with self._store.read() as s:
                row = s.get(RequestRow, request_id)
                return None if row is None else self._request(s, row)

        return self._store.retry(run, what="checking whether the request was filed")

    def _by_idempotency_key(self, key: str) -> DeletionRequest | None:
        def run() -> DeletionRequest | None:
            with self._store.read() as s:
                row = s.execute(
                    select(RequestRow).where(RequestRow.idempotency_key == key)
                ).scalar_one_or_none()
                return None if row is None else self._request(s, row, with_key=True)

        return self._store.retry(run, what="looking up the idempotency key")

    # -- reading ----------------------------------------------------------------------------

    def _request(self, s: Session, row: RequestRow, *, with_key: bool = False) -> DeletionRequest:
        """The request as callers see it. Its subject key is loaded only for the idempotency
        check: only :meth:`file` hands a key out, and only to whoever filed the request."""
        names = tuple(json.loads(self._store.model_row(s, row.model_name).class_names))
        key = s.get(SubjectKeyRow, row.id) if with_key else None
        return DeletionRequest.from_row(row, names, key.key if key is not None else None)

    @idempotent
    def get(self, request_id: str) -> DeletionRequest:
        """One request (:class:`~lethe.errors.UnknownRequestError` if there is none)."""
        with self._store.read() as s:
            return self._request(s, self._store.request_row(s, request_id))

    @idempotent
    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        overdue: bool | None = None,
        model: str | None = None,
    ) -> list[DeletionRequest]:
        """Requests, oldest first; filter by status (one or several
        :class:`~lethe_audit.statements.RequestStatus` values), overdue, model."""
        statuses = [status] if isinstance(status, str) else list(status or [])
        known = [s.value for s in RequestStatus]
        bad = [x for x in statuses if x not in known]
        if bad:
            raise RequestError(f"unknown status {bad}; one of {', '.join(known)}")
        with self._store.read() as s:
            stmt = select(RequestRow).order_by(RequestRow.received_at, RequestRow.id)
            if statuses:
                stmt = stmt.where(RequestRow.status.in_(statuses))
            if model is not None:
                stmt = stmt.where(RequestRow.model_name == self._store.model_row(s, model).name)
            out = [self._request(s, r) for r in s.execute(stmt).scalars()]
        if overdue is not None:
            out = [r for r in out if r.overdue == overdue]
        return out

    # -- deciding ---------------------------------------------------------------------------

    def approve(
        self,
        request_id: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
        principal: Principal | None = None,
    ) -> DeletionRequest:
        """Approve a received (or failed, to retry it) request; it is applied by
        :meth:`ApplyService.apply`.

        Who decides is ``principal`` (an authenticated token: its name and role are recorded
        and logged) or else ``actor`` (free text, kept in the database only). The principal
        that filed the request cannot approve it (:class:`SeparationOfDutiesError`)."""
        return self._transition(
            request_id, _APPROVE, actor=actor, reason=reason, principal=principal
        )

    def reject(
        self,
        request_id: str,
        *,
        actor: str | None = None,
        reason: str,
        principal: Principal | None = None,
    ) -> DeletionRequest:
        """Reject a request that is not applied yet (a reason is required)."""
        if not reason or not reason.strip():
            raise RequestError("a rejection needs a reason")
        return self._transition(
            request_id, _REJECT, actor=actor, reason=reason, principal=principal
        )

    def _transition(
        self,
        request_id: str,
        t: _Transition,
        *,
        actor: str | None,
        reason: str | None,
        principal: Principal | None = None,
    ) -> DeletionRequest:
        who = _actor(actor, principal)
        for attempt in range(RETRY_ATTEMPTS):
            try:
                return self._decide(
                    request_id, t, who, reason, principal=principal, retried=attempt > 0
                )
            except StoreError as e:
                if not is_transient(e) or attempt == RETRY_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))
        raise StoreError(f"request {request_id}: the database kept failing")  # pragma: no cover

    def _decide(
        self,
        request_id: str,
        t: _Transition,
        actor: str,
        reason: str | None,
        *,
        principal: Principal | None,
        retried: bool,
    ) -> DeletionRequest:
        with self._store.write() as s:
            row = self._store.request_row(s, request_id, lock=True)
            if retried and (row.status, row.decided_by) == (t.to, actor):
                # The earlier try committed before its connection was lost.
                return self._request(s, row)
            if row.status not in t.allowed:
                raise InvalidTransitionError(
                    f"request {request_id} is {row.status}; it can be {t.to} only when "
                    f"{' or '.join(t.allowed)}"
                )
            if (
                t.to is RequestStatus.APPROVED
                and row.filed_by is not None
                and actor == row.filed_by
            ):
                raise SeparationOfDutiesError(
                    f"request {request_id} was filed by {actor!r}, who cannot also approve it: "
                    "another principal (a dpo token) must approve it"
                )
            now = utcnow()
            row.status = t.to.value
            row.decided_at = now
            row.decided_by = actor
            row.decided_by_role = principal.role if principal else None
            row.decision_reason = reason
            if t.to is RequestStatus.APPROVED:
                row.failure_reason = None
            s.flush()
            details = principal.to_details() if principal else None
            event = LifecycleEvent(t.event, rfc3339(now), request_id=row.id, details=details)
            self._log.append(event, session=s)
            s.flush()
            done = self._request(s, row)
        return done  # built before the commit: no read-back that could fail after it

    @idempotent  # a retry finds the key gone and returns the shredded request
    def shred(
        self, request_id: str, *, actor: str | None = None, principal: Principal | None = None
    ) -> DeletionRequest:
        """Destroy the key of the request's subject commitment (crypto-shredding).

        The commitment stays in the database and the log but can no longer be linked to anyone.
        The request itself keeps its state (an approved deletion is still applied). Logged.
        """
        who = _actor(actor, principal)
        with self._store.write() as s:
            row = self._store.request_row(s, request_id, lock=True)
            if row.shredded_at is not None:
                return self._request(s, row)
            key = s.get(SubjectKeyRow, row.id)
            if key is not None:
                s.delete(key)
            now = utcnow()
            row.shredded_at = now
            row.shredded_by = who
            row.shredded_by_role = principal.role if principal else None
            s.flush()
            details = principal.to_details() if principal else None
            event = LifecycleEvent(
                EventType.REQUEST_SHREDDED, rfc3339(now), request_id=row.id, details=details
            )
            self._log.append(event, session=s)
        return self.get(request_id)


def resolve_classes(row: ModelRow, classes: Iterable[int | str]) -> tuple[int, ...]:
    """Class names or ids of the model ``row`` as sorted ids (a request's classes:
    :func:`lethe.classes.resolve_class_ids`, then at least one class and not all of them)."""
    names: list[str] = json.loads(row.class_names)
    hint = f"its classes are listed by `lethe model show {row.name}`"
    out = resolve_class_ids(classes, names, owner=f"model {row.name!r}", hint=hint)
    if not out:
        raise RequestError("a request must name at least one class")
    if len(out) == len(names):
        raise RequestError("a request cannot forget every class of the model")
    return out


def _actor(actor: str | None, principal: Principal | None) -> str:
    """Who decides: the authenticated principal's name, else the caller's ``actor``."""
    if principal is not None:
        return principal.name
    if not isinstance(actor, str) or not actor.strip():
        raise RequestError("actor is required: who decides (kept in the database, not the log)")
    return actor.strip()


def _check_filer(existing: DeletionRequest, principal: Principal | None) -> None:
    """An idempotency key names the request of the principal that filed it, nobody else's."""
    if existing.filed_by != (principal.name if principal else None):
        raise IdempotencyConflictError(
            "this idempotency key was used for another request: use a new key"
        )


def _check_filing(
    subject: str, legal_basis: str, idempotency_key: str | None, samples: Sequence[Any] | None
) -> str:
    """Validate what :meth:`RequestService.file` is given; the normalised subject."""
    if samples:
        raise SampleLevelRequestError(
            "Lethe unlearns whole classes (an identity, a contributor's category, a product "
            "line): a request for individual samples cannot be served by class filters. "
            "Name the classes to forget, or delete those samples from the training data and "
            "retrain the model."
        )
    subj = normalize_subject(subject)
    if not isinstance(legal_basis, str) or not _LEGAL_BASIS.fullmatch(legal_basis):
        raise RequestError(
            f"legal basis {legal_basis!r} must be a short code (e.g. "
            f"{', '.join(sorted(LEGAL_BASES)[:2])}, ...): lower-case letters, digits and "
            ": . _ -, no free text (it is written to the log)"
        )
    if idempotency_key is not None and (not idempotency_key or len(idempotency_key) > 255):
        raise RequestError("idempotency_key must be 1..255 characters")
    return subj


def _check_same(
    req: DeletionRequest, model: str, classes: tuple[int, ...], legal_basis: str, subject: str
) -> DeletionRequest:
    """The request filed earlier under the same idempotency key, if this call is a replay of
    that filing: same contents and the same subject (checked against the commitment under
    the request's own key). Anything else is a conflict, and nothing of the other request
    (above all its subject key) is returned."""
    same_subject = req.subject_key is not None and hmac.compare_digest(
        hmac_commitment(bytes.fromhex(req.subject_key), subject), req.subject_commitment
    )
    if (req.model, req.classes, req.legal_basis) != (model, classes, legal_basis) or not (
        same_subject
    ):
        shredded = " (its subject key was shredded, so the subject cannot be checked)"
        raise IdempotencyConflictError(
            f"idempotency key {req.idempotency_key!r} was already used for another request "
            "(other subject, model, classes or legal basis"
            + (shredded if req.subject_key is None else "")
            + "); use a new key for a new request"
        )
    return req
