"""The DPO console: server-rendered pages for the ``dpo`` and ``operator`` roles.

Log in with a token (kept in server memory only; the browser gets a random session id in an
HttpOnly, SameSite=Strict cookie). Every form that changes state carries the session's CSRF
token (login: a double-submit cookie). Jinja2 autoescapes everything; subjects are never shown,
only commitments. No script and no remote asset: the CSP forbids both.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime.

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import DictLoader, Environment, select_autoescape

from lethe.errors import LetheError
from lethe.serve._console_pages import CSS, TEMPLATES
from lethe.serve._tokens import authenticate
from lethe.workflow import Lethe
from lethe.workflow._principal import Principal
from lethe_audit.statements import RequestStatus

__all__ = ["CSP", "install_console"]

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_ROLES = ("dpo", "operator")
_COOKIE, _LOGIN_COOKIE = "lethe_session", "lethe_login_csrf"
_TTL = 8 * 3600
_ID = PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")


@dataclass
class _Session:
    token: str
    csrf: str
    expires: float


@dataclass
class _Sessions:
    """Console sessions in this server's memory (a restart logs everyone out)."""

    items: dict[str, _Session] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new(self, token: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self.lock:
            now = time.time()
            self.items = {k: v for k, v in self.items.items() if v.expires > now}
            self.items[sid] = _Session(token, secrets.token_urlsafe(32), now + _TTL)
        return sid

    def get(self, sid: str | None) -> _Session | None:
        with self.lock:
            s = self.items.get(sid or "")
            return s if s is not None and s.expires > time.time() else None

    def drop(self, sid: str | None) -> None:
        with self.lock:
            self.items.pop(sid or "", None)


def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"
    return resp


def _redirect(to: str) -> Response:
    return _headers(RedirectResponse(to, status_code=303))


@dataclass
class _Console:
    lt: Lethe
    sessions: _Sessions = field(default_factory=_Sessions)
    env: Environment = field(
        default_factory=lambda: Environment(
            loader=DictLoader(TEMPLATES), autoescape=select_autoescape(default=True)
        )
    )

    def page(self, name: str, code: int = 200, **ctx: Any) -> Response:
        html = self.env.get_template(name).render(**ctx)
        return _headers(HTMLResponse(html, status_code=code))

    def who(self, request: Request) -> tuple[Principal, _Session] | None:
        """The signed-in principal (its token re-checked: a revoked token logs out)."""
        s = self.sessions.get(request.cookies.get(_COOKIE))
        if s is None:
            return None
        p = authenticate(self.lt.engine, s.token)
        return (p, s) if p is not None and p.role in _ROLES else None

    def acting(self, request: Request, csrf: str) -> tuple[Principal, _Session] | Response:
        """The principal of a state-changing form, or the response that refuses it."""
        got = self.who(request)
        if got is None:
            return _redirect("/console/login")
        if not secrets.compare_digest(csrf, got[1].csrf):
            return self.page("login.html", 403, error="the form expired: log in again", csrf="")
        return got

    def home(self, request: Request, status: str, overdue: bool, sort: str, msg: str) -> Any:
        got = self.who(request)
        if got is None:
            return _redirect("/console/login")
        p, s = got
        known = [x.value for x in RequestStatus]
        rs = self.lt.list(status=status if status in known else None, overdue=overdue or None)
        if sort == "due":
            rs = sorted(rs, key=lambda r: r.due_at)
        head = self.lt.log.head()
        return self.page(
            "home.html",
            principal=p,
            csrf=s.csrf,
            requests=rs,
            statuses=known,
            status=status,
            overdue=overdue,
            sort=sort,
            message=msg,
            models=[m.name for m in self.lt.models()],
            head_size=head.size,
            head_root=head.root.hex() if isinstance(head.root, bytes) else str(head.root),
        )


def _done(what: str) -> Response:
    return _redirect("/console?msg=" + quote(what))


def install_console(app: FastAPI, lt: Lethe) -> None:
    """Mount the console under ``/console`` (not part of the OpenAPI schema)."""
    c = _Console(lt)
    router = APIRouter(prefix="/console", include_in_schema=False)
    _page_routes(router, c)
    _action_routes(router, c)
    app.include_router(router)


def _page_routes(router: APIRouter, c: _Console) -> None:
    @router.get("/style.css")
    def style() -> Response:
        return _headers(Response(CSS, media_type="text/css"))

    @router.get("/login")
    def login_page() -> Response:
        csrf = secrets.token_urlsafe(32)
        resp = c.page("login.html", csrf=csrf, error=None)
        resp.set_cookie(_LOGIN_COOKIE, csrf, httponly=True, samesite="strict", path="/console")
        return resp

    @router.post("/login")
    def login(request: Request, token: str = Form(""), csrf: str = Form("")) -> Response:
        expected = request.cookies.get(_LOGIN_COOKIE, "")
        if not expected or not secrets.compare_digest(csrf, expected):
            return c.page("login.html", 403, error="the form expired: reload it", csrf="")
        p = authenticate(c.lt.engine, token.strip())
        if p is None or p.role not in _ROLES:
            fresh = secrets.token_urlsafe(32)
            resp = c.page(
                "login.html", 401, error="unknown, revoked or not a dpo/operator token", csrf=fresh
            )
            resp.set_cookie(_LOGIN_COOKIE, fresh, httponly=True, samesite="strict", path="/console")
            return resp
        resp = _redirect("/console")
        resp.set_cookie(
            _COOKIE, c.sessions.new(token.strip()), httponly=True, samesite="strict",
            path="/console", secure=request.url.scheme == "https", max_age=_TTL,
        )  # fmt: skip
        resp.delete_cookie(_LOGIN_COOKIE, path="/console")
        return resp

    @router.get("")
    def home(
        request: Request, status: str = "", overdue: str = "", sort: str = "received", msg: str = ""
    ) -> Any:
        return c.home(request, status, overdue == "1", sort, msg[:300])

    @router.get("/requests/{request_id}/receipt")
    def receipt(request: Request, request_id: str = _ID) -> Response:
        if c.who(request) is None:
            return _redirect("/console/login")
        text = c.lt.receipt(request_id)
        disp = {"Content-Disposition": f'attachment; filename="{request_id}.receipt"'}
        return _headers(PlainTextResponse(text, headers=disp))


def _action_routes(router: APIRouter, c: _Console) -> None:
    @router.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        got = c.acting(request, csrf)
        if isinstance(got, Response):
            return got
        c.sessions.drop(request.cookies.get(_COOKIE))
        resp = _redirect("/console/login")
        resp.delete_cookie(_COOKIE, path="/console")
        return resp

    @router.post("/requests/{request_id}/{action}")
    def decide(
        request: Request,
        request_id: str = _ID,
        action: str = PathParam(pattern="^(approve|reject)$"),
        csrf: str = Form(""),
        reason: str = Form(""),
    ) -> Response:
        got = c.acting(request, csrf)
        if isinstance(got, Response):
            return got
        p = got[0]
        if p.role != "dpo":
            return _done("only a dpo token approves or rejects")
        try:
            if action == "approve":
                r = c.lt.approve(request_id, reason=reason or None, principal=p)
            else:
                r = c.lt.reject(request_id, reason=reason, principal=p)
        except LetheError as e:
            return _done(f"{type(e).__name__}: {e}")
        return _done(f"{r.id} is {r.status}")

    @router.post("/models/{model}/apply")
    def apply(
        request: Request,
        model: str = PathParam(pattern=r"^[A-Za-z0-9._-]{1,100}$"),
        csrf: str = Form(""),
        phase: str = Form("mask"),
    ) -> Response:
        got = c.acting(request, csrf)
        if isinstance(got, Response):
            return got
        if got[0].role != "operator":
            return _done("only an operator token applies")
        try:
            res = c.lt.apply(model, phase="both" if phase == "both" else "mask", progress=False)
        except LetheError as e:
            return _done(f"{type(e).__name__}: {e}")
        return _done(f"apply {res.id}: {res.outcome}, requests {', '.join(res.request_ids)}")
