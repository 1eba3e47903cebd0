"""Fides' two-way policy webhook against a real ``lethe serve`` and a real loopback HTTP server
standing in for Fides' resume endpoint (it records the calls).

Payloads are Fides' documented JSON: ``SecondPartyRequestFormat`` (privacy_request_id,
privacy_request_status, direction, callback_type, identity, policy_action, privacy_request,
timestamp) with the ``reply-to`` / ``reply-to-token`` headers of a two-way pre-execution webhook;
the answer must parse as ``SecondPartyResponseFormat`` (derived_identity, halt); the resume call
is ``POST <fides>/privacy-request/<id>/resume`` with ``Authorization: Bearer <reply-to-token>``
and ``PrivacyRequestResumeFormat`` (``{"derived_identity": {}}``). ethyca-fides itself is not
installed in the test environment (its pins conflict with Lethe's), so the contract is the
documented JSON.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serve.conftest import MODEL, ROLES

FIDES_API = "/api/v1"


@dataclass
class FakeFides:
    """Fides' resume endpoint on a loopback port: records each call, answers ``status``."""

    url: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, then 200


def _fides_server(fides: FakeFides) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n) or b"null")
            fides.calls.append(
                {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
            )
            status = fides.statuses.pop(0) if fides.statuses else 200
            out = json.dumps({"id": self.path.split("/")[-2], "status": "in_processing"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@dataclass
class FidesSetup:
    url: str
    lt: Any
    tokens: dict[str, str]
    fides: FakeFides

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def client(self, who: str) -> Any:
        from lethe import Client

        return Client(self.url, self.tokens[who])


@pytest.fixture
def fides_setup(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FidesSetup]:
    yield from _start(project_dir, monkeypatch)


@pytest.fixture
def pg_fides_setup(pg_project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FidesSetup]:
    yield from _start(pg_project, monkeypatch)


def _start(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FidesSetup]:
    from lethe.serve import create_app, create_token, serve_in_thread
    from lethe.workflow import Lethe

    monkeypatch.delenv("LETHE_FIDES_URL", raising=False)
    fides = FakeFides()
    server = _fides_server(fides)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fides.url = f"http://127.0.0.1:{server.server_address[1]}{FIDES_API}"
    try:
        with Lethe.open(project_dir) as lt:
            tokens = {r: create_token(lt.engine, name=r, role=r)[0] for r in ROLES}
            tokens["fides"] = create_token(lt.engine, name="fides", role="app")[0]
            with serve_in_thread(create_app(lt, fides_url=fides.url)) as url:
                yield FidesSetup(url, lt, tokens, fides)
    finally:
        server.shutdown()
        server.server_close()


def fides_payload(prid: str, **identity: Any) -> dict[str, Any]:
    """Fides' SecondPartyRequestFormat, as ethyca-fides 2.78 sends it."""
    return {
        "privacy_request_id": prid,
        "privacy_request_status": "in_processing",
        "direction": "two_way",
        "callback_type": "pre",
        "identity": identity or {"email": "alice@example.com"},
        "policy_action": "erasure",
        "privacy_request": {"id": prid, "status": "in_processing", "policy": {"key": "erase"}},
        "timestamp": "2026-12-02T13:00:00+00:00",
    }


def _reply_headers(prid: str, token: str) -> dict[str, str]:
    return {"reply-to": f"/privacy-request/{prid}/resume", "reply-to-token": token}


def _webhook(s: FidesSetup, body: Any, *, token: str | None = None, who: str = "fides") -> Any:
    prid = body.get("privacy_request_id", "x") if isinstance(body, dict) else "x"
    headers = {**s.auth(who), **_reply_headers(str(prid), token or "jwe-" + secrets.token_hex(8))}
    return httpx.post(f"{s.url}/v1/fides/webhook", json=body, headers=headers, timeout=60)


def _second_party_response(data: dict[str, Any]) -> None:
    """What Fides reads from the answer (SecondPartyResponseFormat: halt bool, derived_identity
    an Identity or null)."""
    assert isinstance(data["halt"], bool)
    assert data.get("derived_identity") in ({}, None)


def test_mapped_identity_files_halts_and_is_resumed_once_after_apply(
    fides_setup: FidesSetup,
) -> None:
    s = fides_setup
    app, dpo, op = s.client("app"), s.client("dpo"), s.client("operator")
    m = app.map_subject("Alice@Example.com ", classes=["3"], model=MODEL)
    assert m["created"] and m["classes"] == [3] and len(m["commitment"]) == 64
    assert app.map_subject("alice@example.com", classes=[3])["created"] is False

    prid, jwe = "pri_" + secrets.token_hex(8), "eyJhbGciOiJBMjU2R0NNS1cifQ." + secrets.token_hex(20)
    r = _webhook(s, fides_payload(prid, email="ALICE@example.com"), token=jwe)
    assert r.status_code == 200, r.text
    data = r.json()
    _second_party_response(data)
    assert data["halt"] is True and data["lethe"]["status"] == "halted"
    (rid,) = data["lethe"]["request_ids"]
    req = s.lt.get(rid)
    assert req.classes == (3,) and req.status == "received" and req.filed_by == "fides"
    assert jwe not in r.text

    again = _webhook(s, fides_payload(prid, email="alice@example.com"), token=jwe)
    assert again.json()["lethe"]["request_ids"] == [rid] and again.json()["halt"] is True
    assert len([x for x in s.lt.list() if x.filed_by == "fides"]) == 1  # no duplicate

    _assert_token_stored_encrypted(s, prid, jwe)
    dpo.approve(rid, reason="Fides request verified")
    assert s.fides.calls == []  # approved is not applied: nothing to resume yet
    assert op.apply(MODEL)["outcome"] == "applied"
    assert s.fides.calls == [
        {
            "path": f"{FIDES_API}/privacy-request/{prid}/resume",
            "auth": f"Bearer {jwe}",
            "body": {"derived_identity": {}},
        }
    ]
    out = s.client("fides").fides_request(prid)
    assert out["status"] == "resumed" and out["resumed_at"] and out["attempts"] == 1
    assert op.resume_fides()["resumed"] == [] and len(s.fides.calls) == 1  # once only
    late = _webhook(s, fides_payload(prid, email="alice@example.com"), token=jwe)
    assert late.json()["halt"] is False and len(s.fides.calls) == 1


def _assert_token_stored_encrypted(s: FidesSetup, prid: str, jwe: str) -> None:
    from sqlalchemy.orm import Session

    from lethe_audit.store import FidesRequestRow

    with Session(s.lt.engine) as ses:
        row = ses.get(FidesRequestRow, prid)
        assert row is not None and row.reply_token is not None
        assert jwe.encode() not in bytes(row.reply_token)
        assert row.reply_to == f"/privacy-request/{prid}/resume"


def test_unknown_identity_is_not_halted_and_files_nothing(fides_setup: FidesSetup) -> None:
    s = fides_setup
    before = len(s.lt.list())
    r = _webhook(
        s, fides_payload("pri_unknown", email="nobody@example.com", phone_number="+15550100")
    )
    assert r.status_code == 200
    data = r.json()
    _second_party_response(data)
    assert data["halt"] is False and data["lethe"]["status"] == "unmapped"
    assert "nothing to delete" in data["lethe"]["detail"] and data["lethe"]["request_ids"] == []
    assert len(s.lt.list()) == before


def test_phone_and_custom_identities_map_and_access_requests_file_nothing(
    fides_setup: FidesSetup,
) -> None:
    s = fides_setup
    app = s.client("app")
    app.map_subject("+1 (555) 555-0123", identity_type="phone_number", classes=["5"])
    app.map_subject("cust-42", identity_type="loyalty_id", classes=["7"])
    ident = {"phone_number": "+15555550123", "loyalty_id": {"label": "Loyalty", "value": "cust-42"}}
    r = _webhook(s, fides_payload("pri_phone", **ident))
    (rid,) = r.json()["lethe"]["request_ids"]
    assert s.lt.get(rid).classes == (5, 7)
    access = {**fides_payload("pri_access", **ident), "policy_action": "access"}
    got = _webhook(s, access).json()
    assert got["halt"] is False and got["lethe"]["request_ids"] == []


def test_tokens_roles_and_another_fides_token(fides_setup: FidesSetup) -> None:
    s = fides_setup
    url = f"{s.url}/v1/fides/webhook"
    body = fides_payload("pri_auth")
    for headers in ({}, {"Authorization": "Bearer lethe_wrong"}, {"Authorization": "Basic x"}):
        r = httpx.post(url, json=body, headers={**headers, **_reply_headers("pri_auth", "t")})
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    for role in ("dpo", "operator", "auditor"):
        assert _webhook(s, body, who=role).status_code == 403
    assert _webhook(s, body, who="fides").status_code == 200
    assert _webhook(s, body, who="app").status_code == 403  # another app's privacy request
    r = httpx.get(f"{s.url}/v1/fides/requests/pri_auth", headers=s.auth("app"))
    assert r.status_code == 404  # an app sees only the Fides requests of its own token
    r = httpx.post(f"{s.url}/v1/subjects", json={"value": "a@b.c", "classes": [1]},
                   headers=s.auth("dpo"))  # fmt: skip
    assert r.status_code == 403
    assert httpx.post(f"{s.url}/v1/fides/resume", headers=s.auth("app")).status_code == 403


def test_a_failed_callback_is_retried_and_a_rejection_is_not_resumed(
    fides_setup: FidesSetup,
) -> None:
    s = fides_setup
    app, dpo, op = s.client("app"), s.client("dpo"), s.client("operator")
    app.map_subject("bob@example.com", classes=["2"])
    app.map_subject("carol@example.com", classes=["4"])
    bob = _webhook(s, fides_payload("pri_bob", email="bob@example.com")).json()
    carol = _webhook(s, fides_payload("pri_carol", email="carol@example.com")).json()
    dpo.approve(bob["lethe"]["request_ids"][0])
    dpo.reject(carol["lethe"]["request_ids"][0], reason="legal hold")
    s.fides.statuses = [503]  # Fides is down for the first call
    op.apply(MODEL)
    failed = s.client("fides").fides_request("pri_bob")
    assert failed["status"] == "halted" and failed["attempts"] == 1
    assert "503" in (failed["last_error"] or "")
    report = op.resume_fides()
    assert report["resumed"] == ["pri_bob"] and report["failed"] == []
    assert [c["path"].split("/")[-2] for c in s.fides.calls] == ["pri_bob", "pri_bob"]
    assert s.client("dpo").fides_request("pri_carol")["status"] == "rejected"
    assert op.resume_fides() == {"resumed": [], "waiting": [], "failed": [], "rejected": []}


def test_without_a_fides_url_a_pausable_webhook_is_refused(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lethe.serve import create_app, create_token, serve_in_thread
    from lethe.workflow import Lethe

    monkeypatch.delenv("LETHE_FIDES_URL", raising=False)
    with Lethe.open(project_dir) as lt:
        token = create_token(lt.engine, name="fides", role="app")[0]
        with serve_in_thread(create_app(lt)) as url:
            headers = {"Authorization": f"Bearer {token}", **_reply_headers("pri_x", "t")}
            r = httpx.post(f"{url}/v1/fides/webhook", json=fides_payload("pri_x"), headers=headers)
    assert r.status_code == 409 and r.json()["title"] == "FidesNotConfiguredError"
    assert "LETHE_FIDES_URL" in r.json()["detail"]


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
_hostile = st.one_of(
    _json,
    st.fixed_dictionaries(
        {
            "privacy_request_id": st.text(max_size=300) | _json,
            "direction": st.sampled_from(["one_way", "two_way", "sideways"]) | _json,
            "callback_type": st.sampled_from(["pre", "post", "pre_approval", ""]),
            "identity": st.dictionaries(
                st.sampled_from(["email", "phone_number", "external_id", "x" * 50, "é"]),
                _json | st.text(max_size=40),
                max_size=3,
            )
            | _json,
            "policy_action": st.sampled_from(["erasure", "access", None, 7]),
        }
    ),
)
_reply_to = st.sampled_from(
    ["/privacy-request/p/resume", "http://evil.example/x", "/../admin", "", "/a?b=c", "//evil"]
)


def test_hostile_webhooks_get_4xx_problems_never_500(fides_setup: FidesSetup) -> None:
    s = fides_setup
    s.client("app").map_subject("alice@example.com", classes=["3"])
    http = httpx.Client(base_url=s.url, timeout=60)

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(body=_hostile, reply_to=_reply_to)
    def check(body: Any, reply_to: str) -> None:
        headers = {**s.auth("fides"), "reply-to": reply_to, "reply-to-token": "t"}
        r = http.post("/v1/fides/webhook", json=body, headers=headers)
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["status"] == r.status_code
        else:
            _second_party_response(r.json())

    try:
        check()
        bad = {**s.auth("fides"), "Content-Type": "application/json"}
        raw = http.post("/v1/fides/webhook", content=b"{not json", headers=bad)
        assert raw.status_code == 400
    finally:
        http.close()
    assert s.fides.calls == []


def test_contract_with_fides_own_models(fides_setup: FidesSetup) -> None:
    """With ethyca-fides importable (not in Lethe's environment: run with its schemas on
    PYTHONPATH, see docs/service.md "Fides"): the identity is Fides' own ``Identity`` dumped the
    way ``trigger_policy_webhook`` sends it (``model_dump(mode="json")``, unset identities as
    null), the answer parses as Fides' ``SecondPartyResponseFormat`` and the resume body as its
    ``PrivacyRequestResumeFormat``."""
    https = pytest.importorskip("fides.api.schemas.external_https")
    cache = pytest.importorskip("fides.api.schemas.redis_cache")
    s = fides_setup
    s.client("app").map_subject("dana@example.com", classes=["6"])
    identity = cache.Identity(email="dana@example.com", phone_number="+15555550199")
    body = {**fides_payload("pri_contract"), "identity": identity.model_dump(mode="json")}
    r = _webhook(s, body, token="jwe-contract")
    reply = https.SecondPartyResponseFormat(**r.json())
    assert reply.halt is True
    (rid,) = r.json()["lethe"]["request_ids"]
    s.client("dpo").approve(rid)
    s.client("operator").apply(MODEL)
    (call,) = s.fides.calls
    resume = https.PrivacyRequestResumeFormat(**call["body"])
    assert resume.derived_identity is not None and not any(
        resume.derived_identity.model_dump().values()
    )
    assert call["auth"] == "Bearer jwe-contract"


def test_on_postgresql_two_resumers_call_fides_once(pg_fides_setup: FidesSetup) -> None:
    """Two servers' resumers (two bridges over one PostgreSQL database) run at the same time
    after an apply done outside the server (``lethe apply``): Fides is called exactly once."""
    from lethe.serve._fides import FidesBridge
    from lethe.workflow._subjects import SubjectMap

    s = pg_fides_setup
    s.client("app").map_subject("erin@example.com", classes=["1"])
    data = _webhook(s, fides_payload("pri_pg", email="erin@example.com"), token="jwe-pg").json()
    assert data["halt"] is True
    s.client("dpo").approve(data["lethe"]["request_ids"][0])
    s.lt.apply(MODEL, phase="mask", progress=False)  # in-process: no after-apply pass
    assert s.fides.calls == []
    bridges = [
        FidesBridge(s.lt, SubjectMap(s.lt.store, s.lt.settings.keys), fides_url=s.fides.url)
        for _ in range(2)
    ]
    barrier = threading.Barrier(2)
    reports: list[Any] = []

    def run(b: FidesBridge) -> None:
        barrier.wait()
        reports.append(b.resume_due())

    threads = [threading.Thread(target=run, args=(b,)) for b in bridges]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r.resumed) for r in reports) == [0, 1]
    assert [c["auth"] for c in s.fides.calls] == ["Bearer jwe-pg"]
    assert s.client("auditor").fides_request("pri_pg")["status"] == "resumed"
