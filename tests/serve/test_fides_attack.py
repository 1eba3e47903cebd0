"""Attacks on the Fides webhook: Lethe must call back only to LETHE_FIDES_URL, only for the
privacy request the webhook named, never follow a redirect with the reply-to token, and never
echo the token.

Real ``lethe serve`` over a real project, real loopback HTTP servers: one stands in for Fides
(its answers scripted per test), one for an attacker's host (it records whatever reaches it).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
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
from tests.serve.test_fides import fides_payload

API = "/api/v1"


@dataclass
class Host:
    """A loopback HTTP server that records every request; ``answer`` scripts the reply."""

    url: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    #: (status, extra headers) per call, then 200; ``hang`` seconds before answering.
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    hang: float = 0.0


def _host() -> tuple[Host, ThreadingHTTPServer]:
    host = Host()

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            host.calls.append(
                {"method": self.command, "path": self.path,
                 "auth": self.headers.get("Authorization"), "body": body}
            )  # fmt: skip
            if host.hang:
                time.sleep(host.hang)
            status, extra = host.answers.pop(0) if host.answers else (200, {})
            out = b"{}"
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_POST = do_GET = do_PUT = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return host, server


@dataclass
class Setup:
    url: str
    lt: Any
    tokens: dict[str, str]
    fides: Host
    evil: Host

    def auth(self, who: str = "fides") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def client(self, who: str) -> Any:
        from lethe import Client

        return Client(self.url, self.tokens[who])

    def webhook(self, prid: str, reply_to: str, token: str, **identity: Any) -> httpx.Response:
        headers = {**self.auth(), "reply-to": reply_to, "reply-to-token": token}
        return httpx.post(
            f"{self.url}/v1/fides/webhook",
            json=fides_payload(prid, **identity),
            headers=headers,
            timeout=60,
        )


@pytest.fixture
def setup(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    yield from _serve(project_dir, monkeypatch)


@pytest.fixture
def pg_setup(pg_project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    yield from _serve(pg_project, monkeypatch)


def _serve(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    from lethe.serve import create_app, create_token, serve_in_thread
    from lethe.workflow import Lethe

    monkeypatch.setenv("LETHE_FIDES_RESUME_INTERVAL", "0")
    (fides, fs), (evil, es) = _host(), _host()
    try:
        with Lethe.open(project_dir) as lt:
            tokens = {r: create_token(lt.engine, name=r, role=r)[0] for r in ROLES}
            tokens["fides"] = create_token(lt.engine, name="fides", role="app")[0]
            tokens["app2"] = create_token(lt.engine, name="app2", role="app")[0]
            with serve_in_thread(create_app(lt, fides_url=fides.url + API)) as url:
                yield Setup(url, lt, tokens, fides, evil)
    finally:
        for server in (fs, es):
            server.shutdown()
            server.server_close()


def _row(lt: Any, prid: str) -> Any:
    from sqlalchemy.orm import Session

    from lethe_audit.store import FidesRequestRow

    with Session(lt.engine) as s:
        row = s.get(FidesRequestRow, prid)
        if row is not None:
            s.expunge(row)
        return row


def _approve_and_apply(s: Setup, rid: str) -> None:
    s.client("dpo").approve(rid, reason="verified")
    assert s.client("operator").apply(MODEL)["outcome"] == "applied"


def test_reply_to_naming_another_host_or_request_is_refused_and_never_called(
    setup: Setup,
) -> None:
    s = setup
    s.client("app").map_subject("alice@example.com", classes=["3"], model=MODEL)
    evil_port = s.evil.url.rsplit(":", 1)[1]
    token = "eyJhbGciOiJkaXIifQ." + secrets.token_urlsafe(24)
    hostile = [
        s.evil.url + "/privacy-request/pri_a/resume",  # absolute URL to another host
        "//127.0.0.1:" + evil_port + "/privacy-request/pri_a/resume",  # scheme-relative
        "@127.0.0.1:" + evil_port + "/privacy-request/pri_a/resume",  # userinfo trick
        "/privacy-request/pri_victim/resume",  # another privacy request of this Fides
        "/privacy-request/pri_a/resume?next=" + s.evil.url,
        "/privacy-request/pri_a/resume/../../../../admin",
        "/privacy-request/pri_a/resume#x",
        "/PRIVACY-REQUEST/pri_a/resume",
        "/privacy-request/pri_a/resume/",
    ]
    for reply_to in hostile:
        r = s.webhook("pri_a", reply_to, token)
        assert r.status_code == 422, (reply_to, r.text)
        assert r.json()["title"] == "FidesError" and token not in r.text
        assert _row(s.lt, "pri_a") is None  # nothing filed, nothing stored
    assert [x for x in s.lt.list() if x.filed_by == "fides"] == []
    # a privacy request id made of dots would make the path /privacy-request/../resume
    assert s.webhook("..", "/privacy-request/../resume", token).status_code == 422
    # The genuine header works, and the resume goes to Fides, for this request, only.
    ok = s.webhook("pri_a", "/privacy-request/pri_a/resume", token)
    assert ok.status_code == 200 and ok.json()["halt"] is True
    _approve_and_apply(s, ok.json()["lethe"]["request_ids"][0])
    assert s.evil.calls == []
    assert [(c["path"], c["auth"]) for c in s.fides.calls] == [
        (f"{API}/privacy-request/pri_a/resume", f"Bearer {token}")
    ]


def test_a_fides_redirect_is_not_followed_with_the_token(setup: Setup) -> None:
    s = setup
    s.client("app").map_subject("bob@example.com", classes=["2"], model=MODEL)
    token = "eyJ." + secrets.token_urlsafe(24)
    s.fides.answers = [(307, {"Location": s.evil.url + "/steal"})]
    r = s.webhook("pri_r", "/privacy-request/pri_r/resume", token, email="bob@example.com")
    _approve_and_apply(s, r.json()["lethe"]["request_ids"][0])
    assert len(s.fides.calls) == 1 and s.evil.calls == []  # the token went nowhere else
    out = s.client("fides").fides_request("pri_r")
    assert out["status"] == "resume_failed" and "307" in (out["last_error"] or "")
    assert token not in json.dumps(out)
    assert _row(s.lt, "pri_r").reply_token is None  # a failed-for-good token is dropped


def test_a_stored_reply_to_edited_in_the_database_is_not_called(setup: Setup) -> None:
    _edited_reply_to(setup)


@pytest.mark.postgres
def test_on_postgresql_an_edited_reply_to_and_a_cross_app_replace(pg_setup: Setup) -> None:
    assert pg_setup.lt.engine.dialect.name == "postgresql"
    _edited_reply_to(pg_setup)
    _cross_app_replace(pg_setup)
    # a NUL in a model name or request id (PostgreSQL refuses it in text) is "no such", not 503
    body = {"value": "nul@example.com", "classes": [1], "model": "digits\x00"}
    r = httpx.post(f"{pg_setup.url}/v1/subjects", json=body, headers=pg_setup.auth("app"))
    assert r.status_code == 404 and r.json()["title"] == "UnknownModelError", r.text
    body = {"subject": "nul@example.com", "classes": ["3"], "legal_basis": "x", "model": "a\x00b"}
    r = httpx.post(f"{pg_setup.url}/v1/requests", json=body, headers=pg_setup.auth("app"))
    assert r.status_code == 404, r.text


def _edited_reply_to(s: Setup) -> None:
    """An attacker with write access to the database (not the keys) aims a halted request's
    reply-to at another path: the resumer re-checks it and refuses."""
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from lethe_audit.store import FidesRequestRow

    s.client("app").map_subject("carol@example.com", classes=["4"], model=MODEL)
    token = "eyJ." + secrets.token_urlsafe(24)
    r = s.webhook("pri_e", "/privacy-request/pri_e/resume", token, email="carol@example.com")
    with Session(s.lt.engine) as ses, ses.begin():
        ses.execute(
            update(FidesRequestRow)
            .where(FidesRequestRow.privacy_request_id == "pri_e")
            .values(reply_to="/privacy-request/pri_victim/resume")
        )
    _approve_and_apply(s, r.json()["lethe"]["request_ids"][0])
    assert s.fides.calls == [] and s.evil.calls == []
    out = s.client("operator").fides_request("pri_e")
    assert out["status"] == "resume_failed" and token not in json.dumps(out)


@pytest.mark.parametrize(
    "token",
    ["a b", "tok\x7f", "tok\u00e9", "x" * 8193, "", "Bearer\tx"],
    ids=["space", "del", "latin1", "too-long", "empty", "tab"],
)
def test_a_token_that_is_not_a_jwe_is_refused_without_echo(setup: Setup, token: str) -> None:
    s = setup
    s.client("app").map_subject("dana@example.com", classes=["6"], model=MODEL)
    headers = {**s.auth(), "reply-to": "/privacy-request/pri_t/resume",
               "reply-to-token": token.encode("latin-1")}  # fmt: skip
    body = fides_payload("pri_t", email="dana@example.com")
    r = httpx.post(f"{s.url}/v1/fides/webhook", json=body, headers=headers, timeout=60)
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"] == "application/problem+json"
    if token.strip():
        assert token.strip() not in r.text
    assert _row(s.lt, "pri_t") is None


def test_a_hanging_fides_times_out_and_the_request_stays_halted(setup: Setup) -> None:
    from lethe.serve._fides import FidesBridge
    from lethe.workflow._subjects import SubjectMap

    s = setup
    s.client("app").map_subject("erin@example.com", classes=["1"], model=MODEL)
    r = s.webhook("pri_h", "/privacy-request/pri_h/resume", "eyJ.x", email="erin@example.com")
    rid = r.json()["lethe"]["request_ids"][0]
    s.client("dpo").approve(rid)
    s.lt.apply(MODEL, phase="mask", progress=False)  # in-process: the server does not resume
    s.fides.hang = 3.0
    bridge = FidesBridge(
        s.lt, SubjectMap(s.lt.store, s.lt.settings.keys), fides_url=s.fides.url + API,
        timeout=0.5,
    )  # fmt: skip
    report = bridge.resume_due()
    assert report.failed == ["pri_h"] and report.resumed == []
    out = s.client("fides").fides_request("pri_h")
    assert out["status"] == "halted" and "Timeout" in (out["last_error"] or "")
    s.fides.hang = 0.0
    assert bridge.resume_due().resumed == ["pri_h"]


# -- the subject map ------------------------------------------------------------------------------


def test_another_app_cannot_shrink_a_mapping_and_the_db_alone_cannot_test_guesses(
    setup: Setup,
) -> None:
    _cross_app_replace(setup)


def _cross_app_replace(s: Setup) -> None:
    import hashlib
    import hmac
    import os
    import stat

    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from lethe_audit.store import SubjectMapRow

    s.client("app").map_subject("alice@example.com", classes=["3", "4"], model=MODEL)
    body = {"value": "ALICE@example.com", "classes": ["3"], "model": MODEL, "replace": True}
    r = httpx.post(f"{s.url}/v1/subjects", json=body, headers=s.auth("app2"), timeout=60)
    assert r.status_code == 403 and "alice" not in r.text.lower()
    got = s.webhook("pri_m", "/privacy-request/pri_m/resume", "eyJ.a", email="alice@example.com")
    (rid,) = got.json()["lethe"]["request_ids"]
    assert s.lt.get(rid).classes == (3, 4)  # app2 did not drop class 4
    # the owner, or an operator, may replace it
    r = httpx.post(f"{s.url}/v1/subjects", json=body, headers=s.auth("operator"), timeout=60)
    assert r.status_code == 200 and r.json()["classes"] == [3]
    # The database holds HMAC(key, ...) commitments: unkeyed hashes of the address (an offline
    # guess from a copy of the database) match nothing; with the 0600 key file they do.
    with Session(s.lt.engine) as ses:
        stored = set(ses.execute(select(SubjectMapRow.commitment)).scalars())
    msg = b"\x00".join((b"lethe-subject-map/v1", b"email", b"alice@example.com"))
    guesses = {hashlib.sha256(b"alice@example.com").hexdigest(), hashlib.sha256(msg).hexdigest(),
               hmac.new(b"", msg, hashlib.sha256).hexdigest()}  # fmt: skip
    assert stored and not stored & guesses
    key_file = Path(s.lt.settings.keys) / "subject-map.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    key = bytes.fromhex(key_file.read_text().strip())
    assert hmac.new(key, msg, hashlib.sha256).hexdigest() in stored


_local = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1,
                 max_size=12).filter(lambda t: "@" not in t)  # fmt: skip


def test_the_same_identity_spelled_differently_maps_to_the_same_commitment(setup: Setup) -> None:
    """Case (from lower-case), surrounding whitespace and NFC/NFD spellings of an e-mail address
    and separators of a phone number find the mapping the app registered; hostile values never
    raise anything but RequestError."""
    import unicodedata

    from lethe.errors import RequestError
    from lethe.workflow._subjects import SubjectMap

    sm = SubjectMap(setup.lt.store, setup.lt.settings.keys)

    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(
        local=_local,
        form=st.sampled_from(["NFC", "NFD"]),
        pad=st.sampled_from(["", " ", "\t\n"]),
        hostile=st.text(max_size=40),
    )
    def check(local: str, form: str, pad: str, hostile: str) -> None:
        canonical = unicodedata.normalize("NFC", local.lower() + "@example.com")
        spelled = local.lower().upper() if local.isascii() else local.lower()
        variant = pad + unicodedata.normalize(form, spelled) + "@EXAMPLE.com" + pad
        try:
            want = sm.commitment("email", canonical)
        except RequestError:
            return
        assert sm.commitment("email", variant) == want
        for kind in ("email", "phone_number", "external_id"):
            try:
                sm.commitment(kind, hostile)
            except RequestError as e:  # typed, one line, the value not in it
                assert "\n" not in str(e) and (len(hostile) < 12 or hostile not in str(e))

    check()
    sm.register(identity_type="phone_number", value="+1 (555) 555-0100", classes=[1], model=MODEL)
    assert sm.lookup({"phone_number": "+15555550100"}) == {MODEL: ("phone_number", (1,))}


def test_an_identity_with_invisible_characters_is_refused_not_left_unmapped(setup: Setup) -> None:
    """A zero-width space (or a bidi or control character) in an address would commit to
    another value than the mapped one, so the webhook would say "unmapped" and nothing would be
    deleted: it is refused, the value not echoed."""
    from lethe.errors import RequestError
    from lethe.workflow._subjects import SubjectMap

    sm = SubjectMap(setup.lt.store, setup.lt.settings.keys)
    plain = sm.commitment("email", "alice@example.com")
    for sneaky in ("alice\u200b@example.com", "\u202ealice@example.com", "alice@exa\x07mple.com"):
        with pytest.raises(RequestError, match="invisible or control characters") as e:
            sm.commitment("email", sneaky)
        assert sneaky not in str(e.value)
    assert sm.commitment("email", " Alice@Example.com ") == plain


# -- the parser, over hostile input --------------------------------------------------------------

_prid = st.from_regex(r"\A[A-Za-z0-9._:-]{1,40}\Z")


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(prid=_prid, reply_to=st.one_of(
    st.text(max_size=80),
    st.builds(lambda p, t: f"/privacy-request/{p}/resume{t}", _prid, st.text(max_size=10)),
    st.builds(lambda t: t + "/privacy-request/x/resume", st.text(max_size=30)),
))  # fmt: skip
def test_reply_to_check_only_ever_yields_this_requests_path_on_the_fides_host(
    prid: str, reply_to: str
) -> None:
    from lethe.serve._errors import FidesError
    from lethe.serve._fides import _check_base, _check_reply_to

    base = _check_base("https://fides.example.com:8443/api/v1")
    try:
        path = _check_reply_to(reply_to, prid)
    except FidesError as e:
        assert "reply-to" in str(e)  # a fixed one-line message: the input is not echoed
        return
    assert path == reply_to == f"/privacy-request/{prid}/resume"
    url = httpx.URL(f"{base}{path}")
    assert (url.scheme, url.host, url.port) == ("https", "fides.example.com", 8443)
    assert url.path.startswith("/api/v1/privacy-request/") and url.query == b""


def test_with_lethe_fides_tokens_only_fides_token_may_call_the_webhook(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any app token could otherwise call the webhook with a person's e-mail address and read,
    in the requests it files, which classes hold their data (the open finding in
    docs/service.md): LETHE_FIDES_TOKENS names the token(s) Fides uses."""
    from lethe.serve import create_app, create_token, serve_in_thread
    from lethe.workflow import Lethe

    monkeypatch.setenv("LETHE_FIDES_RESUME_INTERVAL", "0")
    monkeypatch.setenv("LETHE_FIDES_TOKENS", " fides , fides-eu")
    fides, server = _host()
    try:
        with Lethe.open(project_dir) as lt:
            tok = {n: create_token(lt.engine, name=n, role="app")[0] for n in ("fides", "app")}
            with serve_in_thread(create_app(lt, fides_url=fides.url + API)) as url:
                from lethe import Client

                Client(url, tok["app"]).map_subject("zoe@example.com", classes=["3"], model=MODEL)
                for who, code in (("app", 403), ("fides", 200)):
                    r = httpx.post(
                        f"{url}/v1/fides/webhook",
                        json=fides_payload("pri_z", email="zoe@example.com"),
                        headers={
                            "Authorization": f"Bearer {tok[who]}",
                            "reply-to": "/privacy-request/pri_z/resume",
                            "reply-to-token": "eyJ.z",
                        },
                        timeout=60,
                    )
                    assert r.status_code == code, r.text
                    if code == 403:
                        assert "LETHE_FIDES_TOKENS" in r.json()["detail"]
                        assert [x for x in lt.list() if x.filed_by == "app"] == []
    finally:
        server.shutdown()
        server.server_close()


def test_servers_racing_to_create_the_mapping_key_get_one_whole_key(tmp_path: Path) -> None:
    """Eight servers start at once on a fresh key directory: each reads the same full key (a
    reader never sees the file before the key is in it), mode 0600, no temporary file left."""
    import os
    import stat

    from lethe.workflow._subjects import KEY_FILE, _load_or_create_key

    for round_ in range(5):
        keys_dir = tmp_path / f"keys{round_}"
        barrier = threading.Barrier(8)
        got: list[Any] = []

        def start(d: Path = keys_dir, b: threading.Barrier = barrier, out: list[Any] = got) -> None:
            b.wait()
            try:
                out.append(_load_or_create_key(d / KEY_FILE))
            except Exception as e:  # the test reports what a server would see
                out.append(e)

        threads = [threading.Thread(target=start) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(isinstance(k, bytes) and len(k) == 32 for k in got), got
        assert len(set(got)) == 1
        assert [p.name for p in keys_dir.iterdir()] == [KEY_FILE]
        assert stat.S_IMODE(os.stat(keys_dir / KEY_FILE).st_mode) == 0o600


def test_no_log_record_holds_the_token_the_identity_or_a_key(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """Every log record of a whole flow (webhook, apply, a failed and a successful callback, a
    console login) at DEBUG, httpx's and uvicorn's included: no reply-to token, no e-mail
    address, no mapping or console key, no session cookie."""
    import logging

    s = setup
    caplog.set_level(logging.DEBUG)
    email, token = "Secret.Person@example.com", "eyJzZWNyZXQ." + secrets.token_urlsafe(30)
    s.client("app").map_subject(email, classes=["3"], model=MODEL)
    r = s.webhook("pri_log", "/privacy-request/pri_log/resume", token, email=email)
    s.fides.answers = [(503, {})]
    _approve_and_apply(s, r.json()["lethe"]["request_ids"][0])
    assert s.client("operator").resume_fides()["resumed"] == ["pri_log"]
    # the console login with urllib (no logging of its own: httpx's client would log the
    # Set-Cookie it receives at DEBUG, on this side of the connection)
    import urllib.parse
    import urllib.request
    from http.cookiejar import CookieJar

    jar = CookieJar()
    web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = web.open(s.url + "/console/login").read().decode()
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    form = urllib.parse.urlencode({"token": s.tokens["dpo"], "csrf": csrf}).encode()
    assert web.open(s.url + "/console/login", data=form).status == 200  # the home page
    (cookie,) = [c.value for c in jar if c.name == "lethe_session"]
    keys = Path(s.lt.settings.keys)
    secrets_ = [token, email, email.lower(), s.tokens["dpo"], s.tokens["fides"], cookie,
                (keys / "subject-map.key").read_text().strip(),
                (keys / "console-session.key").read_text().strip()]  # fmt: skip
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "pri_log" in text  # the flow did log
    leaked = [x[:12] for x in secrets_ if x in text]
    assert leaked == []


def test_a_plain_http_fides_url_off_loopback_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reply-to token is a credential: it must not cross a network in clear text unless the
    operator says the network is private."""
    from lethe.serve._errors import FidesError
    from lethe.serve._fides import _check_base

    monkeypatch.delenv("LETHE_FIDES_ALLOW_HTTP", raising=False)
    for url in ("http://fides.example.com/api/v1", "http://10.0.0.7:8080/api/v1",
                "http://127.0.0.1.evil.example/api/v1", "http://[::2]/api/v1"):  # fmt: skip
        with pytest.raises(FidesError, match="LETHE_FIDES_ALLOW_HTTP"):
            _check_base(url)
    for url in ("https://fides.example.com/api/v1", "http://127.0.0.1:8080/api/v1",
                "http://localhost/api/v1", "http://[::1]:8080/api/v1"):  # fmt: skip
        assert _check_base(url) == url
    monkeypatch.setenv("LETHE_FIDES_ALLOW_HTTP", "1")
    assert _check_base("http://fides.internal/api/v1") == "http://fides.internal/api/v1"
