"""The service end to end over real HTTP: an app with no key file files and reads, the DPO
approves, the operator applies, the auditor gets the receipt and the bundle; errors are RFC 9457
problems with their typed names; idempotency keys are per token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve.conftest import MODEL, Service, file_body

_APP_SCRIPT = """
import json, sys
from lethe import Client
c = Client(sys.argv[1], sys.argv[2])
r = c.file(subject="erin@example.com", classes=["3"], legal_basis="gdpr-17-1-b",
           idempotency_key="order-77")
again = c.file(subject="erin@example.com", classes=["3"], legal_basis="gdpr-17-1-b",
               idempotency_key="order-77")
got = c.get(r.id)
print(json.dumps({"id": r.id, "again": again.id, "status": got.status, "key": bool(r.subject_key),
                  "heavy": sorted(m for m in ("torch", "sqlalchemy", "cryptography", "fastapi")
                                  if m in sys.modules)}))
"""


def test_an_app_files_and_reads_with_no_key_file_and_no_torch(
    service: Service, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    here = tmp_path / "app-host"
    here.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", _APP_SCRIPT, service.url, service.tokens["app"]],
        cwd=here,  # an empty folder: no project, no keys/*.pem anywhere near
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert not list(here.iterdir())
    got = json.loads(out.stdout)
    assert got["id"] == got["again"] and got["status"] == "received" and got["key"]
    assert got["heavy"] == []
    assert service.lt.get(got["id"]).idempotency_key == "app/order-77"


def test_approve_apply_receipt_bundle_over_http(service: Service, tmp_path: Path) -> None:
    from lethe.serve._schemas import ApplyOut
    from lethe_audit.verify import verify_bundle, verify_receipt

    app, dpo, op, aud = (service.client(w) for w in ("app", "dpo", "operator", "auditor"))
    r = app.file(**file_body("frank"))
    dpo.approve(r.id, reason="identity checked")
    result = op.apply(MODEL, phase="mask")
    assert result["outcome"] == "applied" and r.id in result["request_ids"]
    assert not any(k.endswith("_path") for k in result)
    # Every field the schema names comes back, typed (the 200's schema is ApplyOut, not {}).
    assert set(result) == set(ApplyOut.model_fields)
    out = ApplyOut.model_validate(result)
    assert (out.phase, out.depth, out.applied_by) == ("mask", "masked, not yet erased", "operator")
    assert out.verdict.passed and out.verdict.checks and out.log_index >= 0
    assert app.get(r.id).status == "applied"
    receipt = app.receipt(r.id)
    assert receipt == aud.receipt(r.id)
    verify_receipt(receipt, service.lt.verifiers(), origin=service.lt.log.origin())
    assert aud.checkpoint().startswith(service.lt.log.origin())
    bundle = aud.export_bundle(tmp_path / "bundle.zip")
    verify_bundle(bundle, service.lt.verifiers(), origin=service.lt.log.origin())
    shredded = dpo.shred(r.id)
    assert shredded.shredded and (shredded.shredded_by, shredded.shredded_by_role) == ("dpo", "dpo")
    assert aud.get(r.id).shredded_by_role == "dpo"  # read back from the database, not the answer


def test_errors_are_typed_problems(service: Service) -> None:
    from lethe.errors import IdempotencyConflictError, UnknownClassError, UnknownRequestError

    app = service.client("app")
    first = app.file(**file_body("gina"), idempotency_key="k1")
    assert app.file(**file_body("gina"), idempotency_key="k1").id == first.id
    assert first.idempotency_key == "k1"
    with pytest.raises(IdempotencyConflictError):  # same key, another subject: 409
        app.file(**file_body("hank"), idempotency_key="k1")
    # Keys are per token: another app's "k1" is its own request, and learns nothing of this.
    assert service.client("app2").file(**file_body("gina"), idempotency_key="k1").id != first.id
    with pytest.raises(UnknownClassError):
        app.file(subject="ivan", classes=["no-such-class"], legal_basis="gdpr-17-1-b")
    with pytest.raises(UnknownRequestError):
        app.get("req-000000000000000000000000")
    with httpx.Client(base_url=service.url, headers=service.headers("app")) as http:
        r = http.get("/v1/requests/req-nope")
        assert (r.status_code, r.headers["content-type"]) == (404, "application/problem+json")
        assert r.json()["type"] == "urn:lethe:problem:UnknownRequestError"
        assert r.json()["title"] == "UnknownRequestError"
        bad = http.post(
            "/v1/requests", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400
        assert http.post("/v1/requests", json={"subject": "x"}).status_code == 422
        both = http.post(
            "/v1/requests", json=file_body(idempotency_key="a"), headers={"Idempotency-Key": "b"}
        )
        assert both.status_code == 422
        hdr = http.post("/v1/requests", json=file_body("gina"), headers={"Idempotency-Key": "k1"})
        assert (hdr.status_code, hdr.json()["id"]) == (201, first.id)
        assert "alice" not in http.get("/v1/requests").text  # subjects never come back
        # A misspelt filter is refused, never answered with the unfiltered list.
        typo = http.get("/v1/requests", params={"stauts": "applied", "model": "m"})
        assert (typo.status_code, typo.json()["title"]) == (422, "ValidationError")
        assert typo.json()["errors"] == [
            {
                "loc": ["query", "stauts"],
                "msg": "unknown query parameter; known: status, overdue, model",
            }
        ]
        assert http.get("/v1/requests", params={"status": "received"}).status_code == 200


def _raising(exc: Exception) -> Any:
    def boom() -> None:
        raise exc

    return boom


def test_server_errors_leave_no_internal_detail(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    """A typed 5xx keeps its status and name, but its message (server paths, database URLs)
    goes to the server's log only; 503 and 507 are in the schema."""
    from fastapi import HTTPException
    from fastapi.testclient import TestClient

    from lethe.errors import ApplyLockLostError, InsufficientSpaceError
    from lethe.serve import create_app
    from lethe_audit.errors import StoreError

    secret = "/srv/secret-dir postgresql://u:pw@db.internal/x"
    raised: dict[str, Exception] = {
        "space": InsufficientSpaceError(f"no space left in {secret}"),
        "store": StoreError(f"could not reach {secret}"),
        "lock": ApplyLockLostError(f"lock lost on {secret}"),
        "http": HTTPException(502, f"upstream {secret}"),
    }
    app = create_app(service.lt)
    for name, exc in raised.items():
        app.add_api_route(f"/v1/boom-{name}", _raising(exc))
    want = {
        "space": (507, "InsufficientSpaceError"),
        "store": (503, "StoreError"),
        "lock": (503, "ApplyLockLostError"),
        "http": (502, "HTTPError"),
    }
    with caplog.at_level("ERROR", logger="lethe.serve"), TestClient(app) as http:
        for name, (status, title) in want.items():
            r = http.get(f"/v1/boom-{name}")
            assert (r.status_code, r.json()["title"]) == (status, title)
            assert r.headers["content-type"] == "application/problem+json"
            assert "secret" not in r.text and "pw@" not in r.text, r.text
            assert (r.headers.get("Retry-After") == "1") == (status == 503)
    assert caplog.text.count("secret-dir") == len(want)  # the real detail, server-side
    responses = app.openapi()["paths"]["/v1/requests"]["post"]["responses"]
    assert {"503", "507"} <= set(responses)


def test_cli_tokens_and_subject_from_stdin(service: Service) -> None:
    from click.testing import CliRunner

    from lethe.cli import main

    run = CliRunner()
    base = ["--project", str(service.project)]
    made = run.invoke(
        main, [*base, "tokens", "create", "--role", "auditor", "--name", "aud-2", "--json"]
    )
    assert made.exit_code == 0, made.output
    token = json.loads(made.output)["token"]
    assert service.client("dpo").list() is not None
    from lethe import Client

    assert Client(service.url, token).checkpoint()
    again = run.invoke(main, [*base, "tokens", "create", "--role", "app", "--name", "aud-2"])
    assert again.exit_code == 161, again.output
    listed = json.loads(run.invoke(main, [*base, "tokens", "list", "--json"]).output)
    assert token not in json.dumps(listed) and "aud-2" in json.dumps(listed)
    assert run.invoke(main, [*base, "tokens", "revoke", "aud-2"]).exit_code == 0
    from lethe.serve import AuthenticationError

    with pytest.raises(AuthenticationError):
        Client(service.url, token).checkpoint()
    filed = run.invoke(
        main,
        [*base, "request", "file", "--subject-file", "-", "--class", "3",
         "--legal-basis", "gdpr-17-1-b", "--json"],
        input="judy@example.com\n",
    )  # fmt: skip
    assert filed.exit_code == 0, filed.output
    both = run.invoke(
        main,
        [*base, "request", "file", "--subject", "x", "--subject-file", "-", "--class", "3",
         "--legal-basis", "gdpr-17-1-b"],
        input="y",
    )  # fmt: skip
    assert both.exit_code == 2


def test_lethe_serve_command_serves_the_project(service: Service, tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("lethe")
    cmd = [str(exe), "--project", str(service.project), "serve", "--port", str(port)]
    err = (tmp_path / "stderr").open("wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    try:
        for _ in range(300):
            try:
                got = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("lethe serve did not answer")
        assert got.json()["status"] == "ok"
        from lethe import Client

        assert Client(f"http://127.0.0.1:{port}", service.tokens["auditor"]).checkpoint()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        err.close()
    assert "lethe: warning" not in (tmp_path / "stderr").read_text()  # loopback: no warning


def test_lethe_serve_beyond_loopback_warns_on_stderr(service: Service) -> None:
    from click.testing import CliRunner

    from lethe.cli import main
    from lethe.cli._serve import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.0.2.1", "example.org", "lethe"]))
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: uvicorn cannot bind it and exits.
    base = ["--project", str(service.project), "serve", "--host", "192.0.2.1", "--port", "8765"]
    out = CliRunner().invoke(main, base)
    assert out.exit_code != 0
    warning = [x for x in out.output.splitlines() if x.startswith("lethe: warning:")]
    assert len(warning) == 1 and "192.0.2.1" in warning[0] and "TLS" in warning[0], out.output


def test_a_token_with_too_many_calls_in_flight_gets_429(service: Service) -> None:
    from lethe.serve import Principal, RateLimitedError, status_of
    from lethe.serve._auth import Gate

    gate = Gate(service.lt.engine, max_in_flight=1)
    p = Principal("app", "app")
    gate._enter(p)
    with pytest.raises(RateLimitedError):
        gate._enter(p)
    gate._leave(p)
    gate._enter(p)  # freed again
    assert status_of(RateLimitedError("x")) == 429
