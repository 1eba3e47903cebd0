"""Exception handlers: every error leaves as RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lethe.errors import LetheError
from lethe.serve._problems import problem, status_of
from lethe_audit.cli import safe_text
from lethe_audit.errors import LetheAuditError

__all__ = ["install_handlers"]

_log = logging.getLogger("lethe.serve")
PROBLEM_JSON = "application/problem+json"
_HTTP_NAMES = {
    400: "BadRequest",
    401: "AuthenticationError",
    403: "ForbiddenError",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}
#: What a client is told of a 5xx (the real message goes to the server's log only: it may name
#: server paths, hosts or database errors).
_SERVER_DETAIL = {
    503: "the service is temporarily unavailable: retry after the Retry-After delay",
    507: "the server lacks the disk space for this call: its log has the details",
}
_FAILED = "the server failed; its log has the details"


def _client_detail(status: int, detail: str) -> str:
    """``detail`` for a 4xx; for a 5xx, a generic line (no internal detail leaves the server)."""
    return _SERVER_DETAIL.get(status, _FAILED) if status >= 500 else detail


def _response(body: dict[str, Any], *, headers: dict[str, str] | None = None) -> JSONResponse:
    h = dict(headers or {})
    if body["status"] == 401:
        h["WWW-Authenticate"] = 'Bearer realm="lethe"'
    if body["status"] in (429, 503):
        h["Retry-After"] = "1"
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=h)


async def _typed(request: Request, exc: Exception) -> JSONResponse:
    status = status_of(exc)
    name = type(exc).__name__
    detail = safe_text(str(exc), one_line=True)
    if status >= 500:
        _log.error("%s on %s %s: %s", name, request.method, request.url.path, detail)
    body = problem(status, name, _client_detail(status, detail), instance=request.url.path)
    return _response(body)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    malformed = any(e.get("type") == "json_invalid" for e in errors)
    status, name = (400, "MalformedBodyError") if malformed else (422, "ValidationError")
    clean = [
        {"loc": [str(x) for x in e.get("loc", ())], "msg": safe_text(str(e.get("msg", "")))}
        for e in errors
    ]
    detail = "the request body is not JSON" if malformed else "the request is invalid: see errors"
    return _response(problem(status, name, detail, instance=request.url.path, errors=clean))


async def _http(request: Request, exc: Exception) -> JSONResponse:
    code = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    detail = str(exc.detail) if isinstance(exc, StarletteHTTPException) else "error"
    name = _HTTP_NAMES.get(code, "HTTPError")
    if code >= 500:
        _log.error("HTTP %d on %s %s: %s", code, request.method, request.url.path, detail)
    return _response(problem(code, name, _client_detail(code, safe_text(detail, one_line=True))))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _response(problem(500, "InternalError", _FAILED))


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LetheError, _typed)
    app.add_exception_handler(LetheAuditError, _typed)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
