"""The ASGI app of ``lethe serve``: the deletion workflow over HTTP, under ``/v1``.

Routes call only the public :class:`lethe.Lethe` facade. Who may call what is the table in
docs/service.md (:data:`ROLES`); every state change passes the authenticated principal on.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime.

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, PlainTextResponse
from starlette.background import BackgroundTask

from lethe import __version__
from lethe.errors import RequestError, UnknownRequestError
from lethe.serve._auth import Gate
from lethe.serve._console import install_console
from lethe.serve._fides_routes import install_fides
from lethe.serve._handlers import install_handlers
from lethe.serve._keyfiles import check_key_files
from lethe.serve._openapi import install_links
from lethe.serve._schemas import (
    ApplyBody,
    ApplyOut,
    DecisionBody,
    FileBody,
    Health,
    Problem,
    RejectBody,
    RequestList,
    RequestOut,
)
from lethe.workflow import Lethe, Principal

__all__ = ["ROLES", "create_app"]

#: Endpoint -> roles allowed (``app`` only on the requests it filed). Health needs no token.
ROLES: dict[str, tuple[str, ...]] = {
    "file": ("app",),
    "read": ("app", "dpo", "operator", "auditor"),
    "decide": ("dpo",),
    "apply": ("operator",),
    "checkpoint": ("app", "dpo", "operator", "auditor"),
    "bundle": ("operator", "auditor"),
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}}
    for code in (400, 401, 403, 404, 409, 422, 429, 503, 507)
}
_ID = PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
_MODEL = PathParam(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
_ZIP: dict[int | str, dict[str, Any]] = {200: {"content": {"application/zip": {}}}}
_TEXT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}
}


def create_app(lt: Lethe, *, max_in_flight: int = 32, fides_url: str | None = None) -> FastAPI:
    """The app over an open project (its process holds the log's signing key). ``fides_url``
    (else ``$LETHE_FIDES_URL``): Fides' API base URL, for its policy webhook (docs/service.md).
    ``ConfigError`` when a private key file is readable by others than its owner (POSIX)."""
    ring = lt.keyring
    check_key_files(ring.directory, [e.file for e in ring.entries])
    app = FastAPI(
        title="Lethe",
        version=__version__,
        description="Deletion requests, approvals, applies and receipts (see docs/service.md).",
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        responses=_ERRORS,
    )
    gate = Gate(lt.engine, max_in_flight=max_in_flight)
    install_handlers(app)
    router = APIRouter(prefix="/v1")
    _request_routes(router, lt, gate)
    _decision_routes(router, lt, gate)
    _operator_routes(router, lt, gate)
    _log_routes(router, lt, gate)
    app.include_router(router)
    install_fides(app, lt, gate, fides_url=fides_url)
    install_console(app, lt)
    install_links(app)
    return app


def _out(r: Any, *, with_key: bool = False) -> RequestOut:
    d = r.to_dict(include_subject_key=with_key)
    for name in ("filed_by", "filed_by_role", "decided_by_role", "shredded_by", "shredded_by_role"):
        d.setdefault(name, getattr(r, name, None))
    filer, key = d.get("filed_by"), d.get("idempotency_key")
    if filer and key and key.startswith(f"{filer}/"):
        d["idempotency_key"] = key[len(filer) + 1 :]  # the key as its filer sent it
    return RequestOut(**d)


def _visible(r: Any, p: Principal) -> Any:
    """The request, unless ``p`` is an app that did not file it (then: not found, so an app
    cannot even learn that another app's request exists)."""
    if p.role == "app" and getattr(r, "filed_by", None) != p.name:
        raise UnknownRequestError(f"no deletion request with id {r.id!r}")
    return r


def _request_routes(router: APIRouter, lt: Lethe, gate: Gate) -> None:
    @router.post("/requests", status_code=201, response_model=RequestOut, tags=["requests"])
    def file_request(
        body: FileBody,
        response: Response,
        p: Principal = Depends(gate.allow(*ROLES["file"])),  # noqa: B008
        idempotency_key: str | None = Header(
            default=None, min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$"
        ),
    ) -> RequestOut:
        """File a deletion request (app). Same idempotency key -> same request."""
        if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
            raise RequestError("the Idempotency-Key header and body field differ: send one")
        key = body.idempotency_key or idempotency_key
        r = lt.file(
            subject=body.subject,
            classes=body.classes,
            legal_basis=body.legal_basis,
            model=body.model,
            idempotency_key=f"{p.name}/{key}" if key else None,
            principal=p,
        )
        response.headers["Location"] = f"/v1/requests/{r.id}"
        return _out(r, with_key=True)

    @router.get("/requests", response_model=RequestList, tags=["requests"])
    def list_requests(
        request: Request,
        p: Principal = Depends(gate.allow(*ROLES["read"])),  # noqa: B008
        status: list[str] | None = Query(default=None),  # noqa: B008
        overdue: bool | None = None,
        model: str | None = Query(default=None, min_length=1, max_length=100),
    ) -> RequestList:
        """Requests, oldest first (an app sees only the ones it filed)."""
        _known_query(request, ("status", "overdue", "model"))
        rs = lt.list(status=status or None, overdue=overdue, model=model)
        if p.role == "app":
            rs = [r for r in rs if getattr(r, "filed_by", None) == p.name]
        return RequestList(requests=[_out(r) for r in rs])

    @router.get("/requests/{request_id}", response_model=RequestOut, tags=["requests"])
    def get_request(
        request_id: str = _ID,
        p: Principal = Depends(gate.allow(*ROLES["read"])),  # noqa: B008
    ) -> RequestOut:
        return _out(_visible(lt.get(request_id), p))

    @router.get("/requests/{request_id}/receipt", response_class=PlainTextResponse,
                responses=_TEXT, tags=["requests"])  # fmt: skip
    def get_receipt(
        request_id: str = _ID,
        p: Principal = Depends(gate.allow(*ROLES["read"])),  # noqa: B008
    ) -> PlainTextResponse:
        """The C2SP tlog-proof of the request's applied deletion (verify it offline)."""
        _visible(lt.get(request_id), p)
        return PlainTextResponse(lt.receipt(request_id))


def _decision_routes(router: APIRouter, lt: Lethe, gate: Gate) -> None:
    dpo = Depends(gate.allow(*ROLES["decide"]))

    @router.post("/requests/{request_id}/approve", response_model=RequestOut, tags=["dpo"])
    def approve(
        body: DecisionBody | None = None, request_id: str = _ID, p: Principal = dpo
    ) -> RequestOut:
        """Approve (dpo). The principal that filed the request cannot approve it."""
        reason = body.reason if body else None
        return _out(lt.approve(request_id, actor=p.name, reason=reason, principal=p))

    @router.post("/requests/{request_id}/reject", response_model=RequestOut, tags=["dpo"])
    def reject(body: RejectBody, request_id: str = _ID, p: Principal = dpo) -> RequestOut:
        return _out(lt.reject(request_id, actor=p.name, reason=body.reason, principal=p))

    @router.post("/requests/{request_id}/shred", response_model=RequestOut, tags=["dpo"])
    def shred(request_id: str = _ID, p: Principal = dpo) -> RequestOut:
        """Crypto-shred the subject commitment's key (dpo)."""
        return _out(lt.shred(request_id, actor=p.name, principal=p))


def _result(res: Any) -> ApplyOut:
    d: dict[str, Any] = res.to_dict()
    for k in [k for k in d if k.endswith("_path")]:
        del d[k]  # server paths are no business of a client
    if isinstance(d.get("erase"), dict):
        d["erase"] = {k: v for k, v in d["erase"].items() if not k.endswith("_path")}
    return ApplyOut(**d)


def _operator_routes(router: APIRouter, lt: Lethe, gate: Gate) -> None:
    op = Depends(gate.allow(*ROLES["apply"]))

    @router.post("/models/{model}/apply", response_model=ApplyOut, tags=["operator"])
    def apply(body: ApplyBody | None = None, model: str = _MODEL, p: Principal = op) -> ApplyOut:
        """Apply the model's approved requests (operator). Synchronous: see docs/service.md."""
        phase = body.phase if body else "mask"
        # The operator is recorded (applied_by) and logged (apply.principal) in the apply's
        # own transaction.
        return _result(lt.apply(model, phase=phase, progress=False, principal=p))

    @router.post("/models/{model}/erase", response_model=ApplyOut, tags=["operator"])
    def erase(model: str = _MODEL, p: Principal = op) -> ApplyOut:
        """Erase (phase 2) the published deletion of the model (operator). Synchronous."""
        return _result(lt.erase(model, progress=False, principal=p))


def _log_routes(router: APIRouter, lt: Lethe, gate: Gate) -> None:
    # The token is optional here: ``{}`` joins the security requirements (OpenAPI: "or none").
    @router.get("/health", response_model=Health, response_model_exclude_none=True,
                openapi_extra={"security": [{}]}, tags=["log"])  # fmt: skip
    def health(p: Principal | None = Depends(gate.optional())) -> Health:  # noqa: B008
        """Liveness (no token needed; ``log_size`` only with a valid token)."""
        size = lt.log.size() if p is not None else None
        return Health(status="ok", version=__version__, log_size=size)

    @router.get("/log/checkpoint", response_class=PlainTextResponse, responses=_TEXT,
                tags=["log"])  # fmt: skip
    def checkpoint(
        p: Principal = Depends(gate.allow(*ROLES["checkpoint"])),  # noqa: B008
    ) -> PlainTextResponse:
        """The log's current signed checkpoint (C2SP signed note)."""
        return PlainTextResponse(lt.log.checkpoint())

    @router.get("/log/bundle", response_class=FileResponse, tags=["log"],
                responses=_ZIP)  # fmt: skip
    def bundle(
        p: Principal = Depends(gate.allow(*ROLES["bundle"])),  # noqa: B008
    ) -> FileResponse:
        """The auditor bundle (zip): entries, checkpoints, keys, filter figures."""
        tmp = Path(tempfile.mkdtemp(prefix="lethe-bundle-"))
        try:
            path = lt.export_bundle(tmp / "bundle.zip")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return FileResponse(
            path,
            media_type="application/zip",
            filename="lethe-bundle.zip",
            background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True),
        )


def _known_query(request: Request, known: tuple[str, ...]) -> None:
    """A misspelt filter (``?stauts=applied``) is a 422, not a silently unfiltered list."""
    extra = sorted(set(request.query_params) - set(known))
    if extra:
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": f"unknown query parameter; known: {', '.join(known)}",
                    "input": None,
                }
                for name in extra
            ]
        )
