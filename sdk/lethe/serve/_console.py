"""The DPO console: server-rendered pages for the ``dpo`` and ``operator`` roles.

Log in with a token; the browser gets a signed, stateless session cookie (HttpOnly,
SameSite=Strict; :mod:`lethe.serve._console_session`), so sessions survive a restart and are
shared by workers, and revoking the token ends them. Every form that changes state carries the
session's CSRF token (login: a double-submit cookie). Jinja2 autoescapes everything; subjects
are never shown, only commitments. No script and no remote asset: the CSP forbids both.

Roles: a ``dpo`` approves, rejects and shreds; an ``operator`` applies, erases and exports
the bundle; both read requests, applies (metrics, verdicts), receipts, the auditor report and
the log head. A page or form a role may not use is not shown, and refused with 403 if called.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime.

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import DictLoader, Environment, select_autoescape

from lethe.errors import LetheError
from lethe.serve._console_pages import CSS, TEMPLATES
from lethe.serve._console_session import (
    SESSION_TTL,
    ConsoleSession,
    SessionSigner,
    load_or_create_key,
)
from lethe.serve._console_views import apply_rows, apply_summary, download, report_bytes
from lethe.serve._tokens import authenticate, token_hash
from lethe.workflow import Lethe
from lethe_audit.statements import RequestStatus

__all__ = ["CSP", "install_console"]

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_ROLES = ("dpo", "operator")
#: What each action needs (the API's table, docs/service.md).
_NEEDS = {"decide": "dpo", "apply": "operator", "bundle": "operator"}
_COOKIE, _LOGIN_COOKIE = "lethe_session", "lethe_login_csrf"
_ID = PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
_MODEL = PathParam(pattern=r"^[A-Za-z0-9._-]{1,100}$")


def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"
    return resp


def _redirect(to: str) -> Response:
    return _headers(RedirectResponse(to, status_code=303))


def _done(what: str) -> Response:
    return _redirect("/console?msg=" + quote(what[:300]))


@dataclass
class _Console:
    lt: Lethe
    signer: SessionSigner
    env: Environment

    def page(self, name: str, code: int = 200, **ctx: Any) -> Response:
        html = self.env.get_template(name).render(**ctx)
        return _headers(HTMLResponse(html, status_code=code))

    def who(self, request: Request) -> ConsoleSession | None:
        """The signed-in session (its token re-checked: a revoked token logs out)."""
        s = self.signer.check(request.cookies.get(_COOKIE))
        return s if s is not None and s.principal.role in _ROLES else None

    def forbidden(self, s: ConsoleSession, action: str) -> Response:
        error = f"this needs a {_NEEDS[action]} token; you are {s.principal.role}"
        return self.page("denied.html", 403, session=s, error=error)

    def reading(self, request: Request, action: str | None = None) -> ConsoleSession | Response:
        """The session of a page (``action``: the role it needs), or the response refusing it."""
        s = self.who(request)
        if s is None:
            return _redirect("/console/login")
        if action is not None and s.principal.role != _NEEDS[action]:
            return self.forbidden(s, action)
        return s

    def acting(self, request: Request, csrf: str, action: str | None) -> ConsoleSession | Response:
        """The session of a state-changing form, or the response that refuses it."""
        s = self.who(request)
        if s is None:
            return _redirect("/console/login")
        if not secrets.compare_digest(csrf.encode(), s.csrf.encode()):
            return self.page("login.html", 403, error="the form expired: log in again", csrf="")
        if action is not None and s.principal.role != _NEEDS[action]:
            return self.forbidden(s, action)
        return s

    def home(self, request: Request, status: str, overdue: bool, sort: str, msg: str) -> Any:
        s = self.reading(request)
        if isinstance(s, Response):
            return s
        known = [x.value for x in RequestStatus]
        rs = self.lt.list(status=status if status in known else None, overdue=overdue or None)
        if sort == "due":
            rs = sorted(rs, key=lambda r: r.due_at)
        head = self.lt.log.head()
        models = [m.name for m in self.lt.models()]
        return self.page(
            "home.html",
            session=s,
            principal=s.principal,
            csrf=s.csrf,
            requests=rs,
            statuses=known,
            status=status,
            overdue=overdue,
            sort=sort,
            message=msg,
            models=models,
            applies=apply_rows(self.lt, models),
            head_size=head.size,
            head_root=head.root.hex() if isinstance(head.root, bytes) else str(head.root),
        )


def install_console(app: FastAPI, lt: Lethe) -> None:
    """Mount the console under ``/console`` (not part of the OpenAPI schema)."""
    env = Environment(loader=DictLoader(TEMPLATES), autoescape=select_autoescape(default=True))
    signer = SessionSigner(lt.engine, load_or_create_key(lt.keyring.directory))
    c = _Console(lt, signer, env)
    router = APIRouter(prefix="/console", include_in_schema=False)
    _login_routes(router, c)
    _read_routes(router, c)
    _decision_routes(router, c)
    _operator_routes(router, c)
    app.include_router(router)


def _login_cookie(resp: Response, value: str, request: Request) -> Response:
    resp.set_cookie(_LOGIN_COOKIE, value, httponly=True, samesite="strict", path="/console",
                    secure=request.url.scheme == "https")  # fmt: skip
    return resp


def _login_routes(router: APIRouter, c: _Console) -> None:
    @router.get("/style.css")
    def style() -> Response:
        return _headers(Response(CSS, media_type="text/css"))

    @router.get("/login")
    def login_page(request: Request) -> Response:
        csrf = secrets.token_urlsafe(32)
        return _login_cookie(c.page("login.html", csrf=csrf, error=None), csrf, request)

    @router.post("/login")
    def login(request: Request, token: str = Form(""), csrf: str = Form("")) -> Response:
        expected = request.cookies.get(_LOGIN_COOKIE, "")
        if not expected or not secrets.compare_digest(csrf.encode(), expected.encode()):
            return c.page("login.html", 403, error="the form expired: reload it", csrf="")
        token = token.strip()
        p = authenticate(c.lt.engine, token)
        if p is None or p.role not in _ROLES:
            fresh = secrets.token_urlsafe(32)
            err = "unknown, revoked or not a dpo/operator token"
            return _login_cookie(c.page("login.html", 401, error=err, csrf=fresh), fresh, request)
        resp = _redirect("/console")
        resp.set_cookie(
            _COOKIE, c.signer.issue(p.name, token_hash(token)), httponly=True,
            samesite="strict", path="/console", secure=request.url.scheme == "https",
            max_age=SESSION_TTL,
        )  # fmt: skip
        resp.delete_cookie(_LOGIN_COOKIE, path="/console")
        return resp

    @router.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        got = c.acting(request, csrf, None)
        if isinstance(got, Response):
            return got
        resp = _redirect("/console/login")
        resp.delete_cookie(_COOKIE, path="/console")
        return resp


def _read_routes(router: APIRouter, c: _Console) -> None:
    @router.get("")
    def home(
        request: Request, status: str = "", overdue: str = "", sort: str = "received", msg: str = ""
    ) -> Any:
        return c.home(request, status, overdue == "1", sort, msg[:300])

    @router.get("/requests/{request_id}/receipt")
    def receipt(request: Request, request_id: str = _ID) -> Response:
        got = c.reading(request)
        if isinstance(got, Response):
            return got
        try:
            text = c.lt.receipt(request_id)
        except LetheError as e:
            return _done(f"{type(e).__name__}: {e}")
        return download(text.encode("utf-8"), f"{request_id}.receipt", "text/plain")

    @router.get("/checkpoint")
    def checkpoint(request: Request) -> Response:
        got = c.reading(request)
        if isinstance(got, Response):
            return got
        return download(c.lt.log.checkpoint().encode("utf-8"), "checkpoint.txt", "text/plain")

    @router.get("/report.{fmt}")
    def report(request: Request, fmt: str = PathParam(pattern="^(html|pdf)$")) -> Response:
        got = c.reading(request)
        if isinstance(got, Response):
            return got
        try:
            data = report_bytes(c.lt, fmt)
        except LetheError as e:
            return _done(f"{type(e).__name__}: {e}")
        media = "application/pdf" if fmt == "pdf" else "text/html"
        return download(data, f"lethe-report.{fmt}", media)

    @router.get("/bundle.zip")
    def bundle(request: Request) -> Response:
        got = c.reading(request, "bundle")
        if isinstance(got, Response):
            return got
        return download(report_bytes(c.lt, "zip"), "lethe-bundle.zip", "application/zip")


def _decision_routes(router: APIRouter, c: _Console) -> None:
    @router.post("/requests/{request_id}/{action}")
    def decide(
        request: Request,
        request_id: str = _ID,
        action: str = PathParam(pattern="^(approve|reject|shred)$"),
        csrf: str = Form(""),
        reason: str = Form(""),
    ) -> Response:
        got = c.acting(request, csrf, "decide")
        if isinstance(got, Response):
            return got
        p = got.principal
        try:
            if action == "approve":
                r = c.lt.approve(request_id, reason=reason or None, principal=p)
            elif action == "reject":
                r = c.lt.reject(request_id, reason=reason, principal=p)
            else:
                r = c.lt.shred(request_id, principal=p)
                return _done(f"{r.id}: the subject key is shredded")
        except LetheError as e:
            return _done(f"{type(e).__name__}: {e}")
        return _done(f"{r.id} is {r.status}")


def _operator_routes(router: APIRouter, c: _Console) -> None:
    @router.post("/models/{model}/{action}")
    def run(
        request: Request,
        model: str = _MODEL,
        action: str = PathParam(pattern="^(apply|erase)$"),
        csrf: str = Form(""),
        phase: str = Form("mask"),
    ) -> Response:
        """Apply (phase 1, or both phases) or erase (phase 2); synchronous: the page waits."""
        got = c.acting(request, csrf, "apply")
        if isinstance(got, Response):
            return got
        p = got.principal
        try:
            if action == "apply":
                ph = "both" if phase == "both" else "mask"
                res = c.lt.apply(model, phase=ph, progress=False, principal=p)
            else:
                res = c.lt.erase(model, progress=False, principal=p)
        except LetheError as e:
            return _done(f"{type(e).__name__}: {e}")
        return _done(apply_summary(res))
