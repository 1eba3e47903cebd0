"""Routes of the subject mapping (``POST /v1/subjects``) and of Fides' policy webhook
(``/v1/fides/...``), and the two things that resume halted Fides requests: a pass right after
every apply or erase the server runs, and a periodic pass while the server runs.

Who may call what is :data:`FIDES_ROLES` (docs/service.md, "Fides"). Fides authenticates as an
``app`` token: its HTTPS connection's ``authorization`` secret is ``Bearer <token>``.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime.

import os
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from lethe.serve._auth import Gate
from lethe.serve._errors import ForbiddenError
from lethe.serve._fides import FidesBridge
from lethe.serve._fides_schemas import (
    FidesOutcome,
    FidesReply,
    FidesResumeReport,
    FidesWebhookBody,
    SubjectBody,
    SubjectOut,
)
from lethe.workflow import Principal, SubjectMap

__all__ = ["FIDES_ROLES", "install_fides"]

#: Endpoint -> roles allowed (``app`` reads only the Fides requests that came with its token).
FIDES_ROLES: dict[str, tuple[str, ...]] = {
    "map": ("app", "operator"),
    "webhook": ("app",),
    "fides_read": ("app", "dpo", "operator", "auditor"),
    "resume": ("operator",),
}
_PRID = PathParam(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
_APPLIES = re.compile(r"/(?:v1|console)/models/[^/]+/(?:apply|erase)")
_ENV_URL = "LETHE_FIDES_URL"
_ENV_BASIS = "LETHE_FIDES_LEGAL_BASIS"
_ENV_EVERY = "LETHE_FIDES_RESUME_INTERVAL"
#: Comma-separated token names that may call the webhook (unset: any ``app`` token).
_ENV_TOKENS = "LETHE_FIDES_TOKENS"


def install_fides(app: FastAPI, lt: Any, gate: Gate, *, fides_url: str | None = None) -> None:
    """Add the routes, the after-apply resume and the periodic resumer to ``app``.
    ``fides_url`` (else ``$LETHE_FIDES_URL``): Fides' API base URL, e.g.
    ``https://fides.example.com/api/v1``."""
    subjects = SubjectMap(lt.store, lt.settings.keys)
    bridge = FidesBridge(
        lt,
        subjects,
        fides_url=fides_url if fides_url is not None else os.environ.get(_ENV_URL),
        legal_basis=os.environ.get(_ENV_BASIS) or "fides-erasure",
        callers=[n.strip() for n in os.environ.get(_ENV_TOKENS, "").split(",") if n.strip()],
    )
    app.state.fides = bridge
    router = APIRouter(prefix="/v1")
    _subject_routes(router, subjects, gate)
    _webhook_routes(router, bridge, gate)
    app.include_router(router)
    _resume_after_applies(app, bridge)
    _periodic_resumer(app, bridge, _interval())


def _subject_routes(router: APIRouter, subjects: SubjectMap, gate: Gate) -> None:
    @router.post("/subjects", status_code=201, response_model=SubjectOut, tags=["fides"],
                 responses={200: {"model": SubjectOut}})  # fmt: skip
    def map_subject(
        body: SubjectBody,
        response: Response,
        p: Principal = Depends(gate.allow(*FIDES_ROLES["map"])),  # noqa: B008
    ) -> SubjectOut:
        """Map a data subject to classes of a model (training time). Only a keyed commitment of
        the identity is stored. 201 when new, 200 when it was mapped already."""
        if body.replace and p.role == "app":  # an app may not shrink another app's mapping
            owner = subjects.owner(body.identity_type, body.value, body.model)
            if owner is not None and owner != p.name:
                raise ForbiddenError(
                    "this subject's mapping was registered with another token: only that token "
                    "or an operator may replace it (without replace, classes are added)"
                )
        m = subjects.register(
            identity_type=body.identity_type,
            value=body.value,
            classes=body.classes,
            model=body.model,
            replace=body.replace,
            registered_by=p.name,
        )
        if not m.created:
            response.status_code = 200
        return SubjectOut(**m.to_dict())


def _webhook_routes(router: APIRouter, bridge: FidesBridge, gate: Gate) -> None:
    @router.post("/fides/webhook", response_model=FidesReply, tags=["fides"])
    def fides_webhook(
        body: FidesWebhookBody,
        p: Principal = Depends(gate.allow(*FIDES_ROLES["webhook"])),  # noqa: B008
        reply_to: str | None = Header(default=None, max_length=500),
        reply_to_token: str | None = Header(default=None, max_length=8192),
    ) -> FidesReply:
        """Fides' policy webhook: file the mapped deletions, answer ``halt`` (two-way,
        pre-execution); Lethe resumes Fides through ``reply-to`` once they are applied."""
        return bridge.webhook(body, reply_to=reply_to, reply_token=reply_to_token, principal=p)

    @router.get("/fides/requests/{privacy_request_id}", response_model=FidesOutcome,
                tags=["fides"])  # fmt: skip
    def fides_request(
        privacy_request_id: str = _PRID,
        p: Principal = Depends(gate.allow(*FIDES_ROLES["fides_read"])),  # noqa: B008
    ) -> FidesOutcome:
        """What Lethe did with a Fides privacy request (an app: only those it sent)."""
        return bridge.outcome(privacy_request_id, p)

    @router.post("/fides/resume", response_model=FidesResumeReport, tags=["fides"])
    def fides_resume(
        p: Principal = Depends(gate.allow(*FIDES_ROLES["resume"])),  # noqa: B008
    ) -> FidesResumeReport:
        """Resume now every halted Fides request whose deletions are applied (operator)."""
        return bridge.resume_due()


def _resume_after_applies(app: FastAPI, bridge: FidesBridge) -> None:
    """After an apply or erase the server ran (API or console), resume what it completed, before
    the apply's answer leaves (so a caller that sees the apply sees Fides resumed)."""

    @app.middleware("http")
    async def resume_after_apply(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if (
            bridge.configured
            and request.method == "POST"
            and response.status_code < 400
            and _APPLIES.fullmatch(request.url.path)
        ):
            await run_in_threadpool(bridge.resume_quietly)
        return response


def _interval() -> float:
    raw = os.environ.get(_ENV_EVERY, "60")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 60.0


def _periodic_resumer(app: FastAPI, bridge: FidesBridge, every: float) -> None:
    """While the server runs (its lifespan), a pass every ``every`` seconds (0: never): it
    catches applies run elsewhere (``lethe apply``) and retries callbacks that failed."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            bridge.resume_quietly()

    def start() -> None:
        if every > 0 and bridge.configured:
            threading.Thread(target=loop, name="lethe-fides-resume", daemon=True).start()

    app.router.on_startup.append(start)
    app.router.on_shutdown.append(stop.set)
