"""``lethe.Client``: the HTTP client of ``lethe serve`` (torch-free; needs only ``httpx``).

Same method names as the in-process SDK (:class:`lethe.Lethe`): ``file``, ``get``, ``list``,
``approve``, ``reject``, ``shred``, ``apply``, ``erase``, ``receipt``, ``export_bundle``; the
token's role decides which of them the server allows. Errors come back as the same typed
classes (``UnknownRequestError``, ``IdempotencyConflictError``, ...), found by the problem's
name; anything else is a :class:`ServiceError`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx

from lethe._client import _errors
from lethe._client._errors import ClientError, ServiceError
from lethe._client._types import RemoteRequest

__all__ = ["Client", "RemoteRequest"]

_RETRY_STATUS = (429, 502, 503, 504)


def _error_class(name: str) -> type[Exception]:
    """The typed error class a problem names (Lethe's or lethe_audit's), else ServiceError."""
    from lethe import errors as sdk_errors

    for mod in (_errors, sdk_errors):
        cls = getattr(mod, name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            return cls
    try:
        from lethe_audit import errors as audit_errors
    except ImportError:  # pragma: no cover - lethe-sdk depends on lethe-audit
        return ServiceError
    cls = getattr(audit_errors, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, Exception) else ServiceError


def _raise_problem(resp: httpx.Response) -> None:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    name = str(body.get("title", "")) if isinstance(body, dict) else ""
    detail = str(body.get("detail", resp.reason_phrase)) if isinstance(body, dict) else ""
    cls = _error_class(name) if name.isidentifier() else ServiceError
    try:
        exc = cls(f"{detail} (HTTP {resp.status_code})")
    except TypeError:  # an error class with required keyword arguments
        exc = ServiceError(f"{name}: {detail} (HTTP {resp.status_code})")
    raise exc


class Client:
    """A client of a running ``lethe serve`` at ``url`` with an API ``token``.

    ``timeout`` (seconds) bounds every call except ``apply`` and ``erase``, which wait as long
    as the server works (``apply_timeout``, default: no limit). Reads, and filings (which
    always carry an idempotency key: yours, or a fresh random one per call), are retried
    ``retries`` times on connection errors and 429/502/503/504.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        apply_timeout: float | None = None,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ClientError(f"url {url!r} must start with http:// or https://")
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/v1",
            headers={"Authorization": f"Bearer {token}", "User-Agent": "lethe-client"},
            timeout=timeout,
            transport=transport,
        )
        self._apply_timeout = apply_timeout
        self._retries = max(0, int(retries))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, retry: bool = True, **kw: Any) -> httpx.Response:
        attempts = self._retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                resp = self._http.request(method, path, **kw)
            except httpx.TransportError as e:
                if attempt == attempts - 1:
                    raise ClientError(f"cannot reach the Lethe service: {e}") from e
            else:
                if resp.status_code not in _RETRY_STATUS or attempt == attempts - 1:
                    if resp.status_code >= 400:
                        _raise_problem(resp)
                    return resp
            time.sleep(min(2.0, 0.1 * 2**attempt))
        raise ClientError("unreachable")  # pragma: no cover

    def _request(self, method: str, path: str, **kw: Any) -> RemoteRequest:
        return RemoteRequest.from_json(self._call(method, path, **kw).json())

    # -- the SDK's methods -----------------------------------------------------------------------

    def file(
        self,
        *,
        subject: str,
        classes: Iterable[int | str],
        legal_basis: str,
        model: str | None = None,
        idempotency_key: str | None = None,
    ) -> RemoteRequest:
        """File a deletion request (role ``app``); the subject travels only in the body."""
        wanted = [classes] if isinstance(classes, str | int) else list(classes)
        body: dict[str, Any] = {"subject": subject, "classes": wanted, "legal_basis": legal_basis}
        if model is not None:
            body["model"] = model
        body["idempotency_key"] = idempotency_key or "auto-" + secrets.token_hex(16)
        return self._request("POST", "/requests", json=body)

    def get(self, request_id: str) -> RemoteRequest:
        return self._request("GET", f"/requests/{_seg(request_id)}")

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        overdue: bool | None = None,
        model: str | None = None,
    ) -> list[RemoteRequest]:
        params: dict[str, Any] = {}
        if status:
            params["status"] = [status] if isinstance(status, str) else list(status)
        if overdue is not None:
            params["overdue"] = "true" if overdue else "false"
        if model is not None:
            params["model"] = model
        data = self._call("GET", "/requests", params=params).json()
        return [RemoteRequest.from_json(d) for d in data["requests"]]

    def approve(self, request_id: str, *, reason: str | None = None) -> RemoteRequest:
        body = {"reason": reason} if reason is not None else {}
        return self._request(
            "POST", f"/requests/{_seg(request_id)}/approve", json=body, retry=False
        )

    def reject(self, request_id: str, *, reason: str) -> RemoteRequest:
        path = f"/requests/{_seg(request_id)}/reject"
        return self._request("POST", path, json={"reason": reason}, retry=False)

    def shred(self, request_id: str) -> RemoteRequest:
        return self._request("POST", f"/requests/{_seg(request_id)}/shred")

    def apply(self, model: str, *, phase: str = "mask") -> dict[str, Any]:
        """Apply the model's approved requests (role ``operator``); waits for the result."""
        resp = self._call(
            "POST",
            f"/models/{_seg(model)}/apply",
            json={"phase": phase},
            retry=False,
            timeout=self._apply_timeout,
        )
        return dict(resp.json())

    def erase(self, model: str) -> dict[str, Any]:
        resp = self._call(
            "POST", f"/models/{_seg(model)}/erase", retry=False, timeout=self._apply_timeout
        )
        return dict(resp.json())

    def receipt(self, request_id: str) -> str:
        """The request's C2SP tlog-proof (verify it with ``lethe-audit receipt verify``)."""
        return self._call("GET", f"/requests/{_seg(request_id)}/receipt").text

    def checkpoint(self) -> str:
        return self._call("GET", "/log/checkpoint").text

    def export_bundle(self, path: str | Path) -> Path:
        """Download the auditor bundle (zip) to ``path`` (role ``operator`` or ``auditor``)."""
        out = Path(path)
        out.write_bytes(self._call("GET", "/log/bundle", timeout=self._apply_timeout).content)
        return out

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/health").json())

    # -- subject mapping and Fides ----------------------------------------------------------------

    def map_subject(
        self,
        identity: str,
        *,
        classes: Iterable[int | str],
        model: str | None = None,
        identity_type: str = "email",
        replace: bool = False,
    ) -> dict[str, Any]:
        """Map a data subject to the classes of ``model`` that hold their data (role ``app``
        or ``operator``, at training time), so a Fides erasure for that identity files the
        deletion. Only a keyed commitment of ``identity`` is stored; it travels only in the
        body. Returns ``commitment``, ``identity_type``, ``model``, ``classes``,
        ``class_names`` and ``created``. Idempotent (retried like a filing)."""
        wanted = [classes] if isinstance(classes, str | int) else list(classes)
        body: dict[str, Any] = {
            "identity_type": identity_type,
            "value": identity,
            "classes": wanted,
            "replace": replace,
        }
        if model is not None:
            body["model"] = model
        return dict(self._call("POST", "/subjects", json=body).json())

    def fides_request(self, privacy_request_id: str) -> dict[str, Any]:
        """What Lethe did with a Fides privacy request: ``status`` (``halted``, ``resumed``,
        ``unmapped``, ...), ``request_ids``, ``detail``, ``resumed_at``, ``attempts``."""
        return dict(self._call("GET", f"/fides/requests/{_seg(privacy_request_id)}").json())

    def resume_fides(self) -> dict[str, Any]:
        """Resume every halted Fides request whose deletions are applied (role ``operator``):
        ``{"resumed", "waiting", "failed", "rejected"}`` lists of privacy request ids."""
        return dict(self._call("POST", "/fides/resume", retry=False).json())


def _seg(value: str) -> str:
    """One URL path segment (ids and model names never contain '/')."""
    from urllib.parse import quote

    return quote(value, safe="")
