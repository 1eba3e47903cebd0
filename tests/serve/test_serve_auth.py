"""Authorization matrix: every endpoint x every role x no / invalid / revoked token, over real
HTTP on loopback, exactly as docs/service.md documents it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.serve.conftest import ROLES, Service, file_body

# A one-way post-execution Fides webhook (needs no LETHE_FIDES_URL); see test_fides.py.
_FIDES_POST = {
    "privacy_request_id": "pri_1",
    "direction": "one_way",
    "callback_type": "post",
    "identity": {},
}
# Endpoint -> roles allowed (docs/service.md, "Who may call what"). "{rid}": a request the
# `app` token filed.
MATRIX: list[tuple[str, str, dict[str, object] | None, set[str]]] = [
    ("POST", "/v1/requests", file_body(), {"app"}),
    ("GET", "/v1/requests", None, {"app", "dpo", "operator", "auditor"}),
    ("GET", "/v1/requests/{rid}", None, {"app", "dpo", "operator", "auditor"}),
    ("GET", "/v1/requests/{rid}/receipt", None, {"app", "dpo", "operator", "auditor"}),
    ("POST", "/v1/requests/{rid}/approve", {}, {"dpo"}),
    ("POST", "/v1/requests/{rid}/reject", {"reason": "duplicate"}, {"dpo"}),
    ("POST", "/v1/requests/{rid}/shred", None, {"dpo"}),
    ("POST", "/v1/models/no-such-model/apply", {"phase": "mask"}, {"operator"}),
    ("POST", "/v1/models/no-such-model/erase", None, {"operator"}),
    ("GET", "/v1/log/checkpoint", None, {"app", "dpo", "operator", "auditor"}),
    ("GET", "/v1/log/bundle", None, {"operator", "auditor"}),
    ("POST", "/v1/subjects", {"value": "ann@example.com", "classes": ["3"]}, {"app", "operator"}),
    ("POST", "/v1/fides/webhook", _FIDES_POST, {"app"}),
    ("GET", "/v1/fides/requests/pri_1", None, {"app", "dpo", "operator", "auditor"}),
    ("POST", "/v1/fides/resume", None, {"operator"}),
]
WHO = (None, "invalid", "revoked", "app", "dpo", "operator", "auditor")


def test_authorization_matrix(service: Service) -> None:
    rid = service.client("app").file(**file_body()).id
    seen = 0
    with httpx.Client(base_url=service.url, timeout=60) as http:
        for method, path, body, allowed in MATRIX:
            for who in WHO:
                r = http.request(
                    method, path.format(rid=rid), json=body, headers=service.headers(who)
                )
                where = f"{method} {path} as {who}: {r.status_code} {r.text[:200]}"
                if who in (None, "invalid", "revoked"):
                    assert r.status_code == 401, where
                    assert r.headers["www-authenticate"].startswith("Bearer"), where
                    assert r.json()["type"] == "urn:lethe:problem:AuthenticationError", where
                elif who in allowed:
                    assert r.status_code not in (401, 403) and r.status_code < 500, where
                else:
                    assert r.status_code == 403, where
                    assert r.headers["content-type"] == "application/problem+json", where
                    assert r.json()["type"] == "urn:lethe:problem:ForbiddenError", where
                seen += 1
        assert http.get("/v1/health").status_code == 200  # no token needed
    assert seen == len(MATRIX) * len(WHO)


def test_health_tells_the_log_size_only_to_a_token(service: Service) -> None:
    """Unauthenticated health says only that the server lives (the log size is the filing
    volume); a valid token of any role also gets ``log_size``."""
    size = service.lt.log.size()
    with httpx.Client(base_url=service.url) as http:
        for who in (None, "invalid", "revoked"):
            r = http.get("/v1/health", headers=service.headers(who))
            assert r.status_code == 200 and "log_size" not in r.json(), (who, r.text)
        for who in ROLES:
            r = http.get("/v1/health", headers=service.headers(who))
            assert r.json()["log_size"] == size, who
    from lethe.serve import create_app

    op = create_app(service.lt).openapi()["paths"]["/v1/health"]["get"]
    assert {} in op["security"] and {"HTTPBearer": []} in op["security"]  # a token is optional


def test_an_app_sees_only_its_own_requests(service: Service) -> None:
    from lethe.errors import UnknownRequestError

    mine = service.client("app").file(**file_body("bob"))
    theirs = service.client("app2").file(**file_body("carol"))
    with service.client("app") as app:
        assert [r.id for r in app.list()] == [mine.id]
        assert app.get(mine.id).filed_by == "app"
        with pytest.raises(UnknownRequestError):  # 404, the same as a request that never was
            app.get(theirs.id)
        with pytest.raises(UnknownRequestError):
            app.receipt(theirs.id)
    with service.client("dpo") as dpo:
        assert {r.id for r in dpo.list()} == {mine.id, theirs.id}


def test_the_filer_cannot_approve_and_decisions_record_the_principal(service: Service) -> None:
    from lethe.errors import SeparationOfDutiesError
    from lethe.serve import ForbiddenError, Principal

    r = service.client("app").file(**file_body("dave"))
    with pytest.raises(ForbiddenError):  # an app token cannot approve at all
        service.client("app").approve(r.id)
    # Nor can the filing principal, through any path that names it (separation of duties).
    with pytest.raises(SeparationOfDutiesError):
        service.lt.approve(r.id, actor="app", principal=Principal("app", "dpo"))
    done = service.client("dpo").approve(r.id, reason="verified")
    assert (done.status, done.decided_by, done.decided_by_role) == ("approved", "dpo", "dpo")
    events = _events(service, r.id)
    assert events["request.received"]["details"]["principal"] == {"name": "app", "role": "app"}
    assert events["request.approved"]["details"]["principal"] == {"name": "dpo", "role": "dpo"}


def _events(service: Service, request_id: str) -> dict[str, dict[str, Any]]:
    from lethe_audit.statements import Envelope, Statement

    out: dict[str, dict[str, Any]] = {}
    for _, raw in service.lt.log.iter_entries():
        p = dict(Statement.from_envelope(Envelope.from_json(raw)).predicate)
        if p.get("request_id") == request_id and "event" in p:
            out[str(p["event"])] = p
    return out
