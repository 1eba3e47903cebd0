"""The DPO console in a real headless Chromium (DevTools pipe, as the report tests do): a dpo
approves, an operator applies and erases, sees the metrics and verdicts and downloads the
receipt. Plus its guards over plain HTTP: CSP and the other headers, CSRF on every
state-changing form, escaping, each role's forms shown or refused (403), downloads, and
signed sessions that survive a restart and end with their token."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve.conftest import MODEL, Service, file_body
from tests.workflow.test_erase import masked_template  # noqa: F401  (fixture)


def _browser() -> Any:
    from tests.report import _tools

    try:
        exe = _tools.chromium()
    except BaseException:
        pytest.skip("no Chromium here (CI installs it: apt-get install -y chromium)")
    return _tools, exe


class _Tab:
    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        target = pipe.call("Target.createTarget", {"url": "about:blank"})
        self.session = pipe.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )["sessionId"]
        pipe.call("Page.enable", session=self.session)
        pipe.call("Runtime.enable", session=self.session)

    def js(self, expr: str) -> Any:
        got = self.pipe.call(
            "Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=self.session
        )
        return got["result"].get("value")

    def text(self, selector: str) -> str:
        return str(self.js(f"document.querySelector({json.dumps(selector)}).textContent"))

    def event(self, method: str, *, state: str | None = None, guard_s: float = 180.0) -> Any:
        """The next ``method`` event (with ``params.state == state``); ``guard_s`` only stops
        a hung browser (an erase on a loaded CPU takes minutes)."""
        deadline = time.monotonic() + guard_s
        while True:
            while self.pipe.events:
                ev = self.pipe.events.pop(0)
                if ev["method"] == method and state in (None, ev["params"].get("state")):
                    return ev
            self.pipe._next(deadline)

    def loads(
        self, expr: str | None = None, *, url: str | None = None, guard_s: float = 180.0
    ) -> None:
        """Navigate (``url``) or run ``expr`` (a form submit) and wait for the next page."""
        self.pipe.events.clear()
        if url is not None:
            self.pipe.call("Page.navigate", {"url": url}, session=self.session)
        else:
            self.js(expr or "")
        self.event("Page.loadEventFired", guard_s=guard_s)

    def login(self, url: str, token: str) -> None:
        self.loads(url=url + "/console")  # not signed in: redirected to the login
        assert self.js("location.pathname") == "/console/login"
        self.loads(f"document.getElementById('token').value = {json.dumps(token)};"
                   "document.getElementById('login').submit()")  # fmt: skip

    def submit(self, form: str, guard_s: float = 180.0, **fields: str) -> None:
        assert self.js(f"document.querySelector({json.dumps(form)}) !== null"), form
        sets = "".join(
            f"f.querySelector('[name={k}]').value = {json.dumps(v)};" for k, v in fields.items()
        )
        self.loads(f"var f = document.querySelector({json.dumps(form)}); {sets} f.submit()",
                   guard_s=guard_s)  # fmt: skip


@pytest.fixture
def masked_service(masked_template: Path, tmp_path: Path) -> Iterator[Service]:  # noqa: F811
    """A project with a depth reference and one masked deletion (class 4; tests/workflow/
    test_erase.py), whose policy lets the digits erase pass (its probe AUC saturates there)."""
    from tests.serve.conftest import _start

    project = tmp_path / "project"
    shutil.copytree(masked_template, project, symlinks=True)
    settings = project / "lethe.toml"
    text = settings.read_text().replace("[policy]\n", '[policy]\nmax_probe_auc_gap = "off"\n', 1)
    settings.write_text(text)
    yield from _start(project)


def test_console_in_chromium_approve_apply_erase_and_download_the_receipt(
    masked_service: Service, tmp_path: Path
) -> None:
    """dpo approves; operator applies (mask), sees it "masked, not yet erased", erases (phase
    2), sees depth and "erased", downloads the receipt."""
    tools, exe = _browser()
    svc = masked_service
    r = svc.client("app").file(**file_body("kate"))
    row = f"#row-{r.id}"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with tempfile.TemporaryDirectory(prefix="lethe-console-") as profile:
        pipe = tools._Pipe(exe, profile)
        try:
            tab = _Tab(pipe)
            tab.login(svc.url, svc.tokens["dpo"])
            assert tab.text("#who") == "dpo"
            assert "kate" not in tab.js("document.body.innerText")  # only commitments
            assert tab.js("document.querySelector('form.erase')") is None  # not a dpo's
            tab.submit(f"{row} form.approve", reason="ok")
            assert tab.text(f"{row} .status") == "approved"
            assert "is approved" in tab.text("#message")
            tab.submit("form[action='/console/logout']")
            tab.login(svc.url, svc.tokens["operator"])
            assert tab.text("#role") == "operator"
            assert tab.js(f"document.querySelector('{row} form.approve')") is None
            tab.submit(f"#model-{MODEL} form.apply", guard_s=1800.0, phase="mask")
            assert tab.text(f"{row} .status") == "applied (masked, not yet erased)"
            mask = svc.lt.applies(MODEL)[-1]
            assert tab.text(f"#apply-{mask.id} .state") == "masked, not yet erased"
            assert tab.text(f"#apply-{mask.id} .by") == "operator (operator)"
            tab.submit(f"#model-{MODEL} form.erase", guard_s=1800.0)
            erase = svc.lt.applies(MODEL)[-1]
            assert erase.phase == "erase" and erase.passed, erase.verdict.reasons
            assert tab.text(f"#apply-{erase.id} .state") == "erased"
            assert tab.text(f"#apply-{erase.id} .verdict") == "passed"
            assert tab.text(f"#apply-{erase.id} .depth").startswith("relearn ratio ")
            assert tab.text(f"#apply-{mask.id} .state") == "masked, not yet erased (superseded)"
            assert tab.text(f"{row} .status") == "applied (erased)"
            assert "erased" in tab.text("#message")
            assert tab.text("#log-size") == str(svc.lt.log.size())
            allow = {"behavior": "allow", "downloadPath": str(downloads), "eventsEnabled": True}
            pipe.call("Browser.setDownloadBehavior", allow)
            pipe.events.clear()
            tab.js(f"document.querySelector('{row} a.receipt').click()")
            tab.event("Browser.downloadProgress", state="completed")
        finally:
            pipe.close()
    assert (downloads / f"{r.id}.receipt").read_text() == svc.lt.receipt(r.id)
    got = svc.lt.get(r.id)
    assert (got.decided_by, got.decided_by_role) == ("dpo", "dpo")
    assert (erase.applied_by, erase.applied_by_role) == ("operator", "operator")


def _login(http: httpx.Client, token: str) -> httpx.Response:
    page = http.get("/console/login")
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return http.post("/console/login", data={"token": token, "csrf": csrf})


def _csrf(http: httpx.Client) -> str:
    home = http.get("/console")
    assert home.status_code == 200, home.status_code
    return home.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_console_headers_csrf_roles_and_escaping(service: Service) -> None:
    r = service.client("app").file(**file_body("<script>alert(1)</script>"))
    with httpx.Client(base_url=service.url) as http:
        page = http.get("/console/login")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        forged = http.post("/console/login", data={"token": service.tokens["dpo"], "csrf": "x"})
        assert forged.status_code == 403  # the login form's double-submit cookie must match
        assert _login(http, service.tokens["app"]).status_code == 401  # apps have no console
        assert _login(http, service.tokens["revoked"]).status_code == 401
        assert _login(http, service.tokens["dpo"]).status_code == 303
        home = http.get("/console")
        assert home.status_code == 200 and "<script>" not in home.text
        bad = http.post(f"/console/requests/{r.id}/approve", data={"csrf": "forged"})
        assert bad.status_code == 403 and service.lt.get(r.id).status == "received"
    with httpx.Client(base_url=service.url) as other:  # no session: back to the login
        assert other.post(f"/console/requests/{r.id}/approve", data={}).status_code in (303, 422)


def test_each_role_sees_only_its_forms_and_is_refused_the_others(service: Service) -> None:
    r = service.client("app").file(**file_body("lena"))
    # no time limit: an apply and a report take what the machine needs
    web = {"base_url": service.url, "timeout": None}
    with httpx.Client(**web) as dpo, httpx.Client(**web) as op:
        assert _login(dpo, service.tokens["dpo"]).status_code == 303
        assert _login(op, service.tokens["operator"]).status_code == 303
        dpo_home, op_home = dpo.get("/console").text, op.get("/console").text
        assert 'class="inline approve"' in dpo_home and 'class="inline shred"' in dpo_home
        assert "/apply" not in dpo_home and "/erase" not in dpo_home
        assert "bundle.zip" not in dpo_home
        assert 'class="inline approve"' not in op_home and "/shred" not in op_home
        assert f"/console/models/{MODEL}/apply" in op_home and "bundle.zip" in op_home
        # called anyway: 403, and nothing changed
        for action in ("approve", "reject", "shred"):
            got = op.post(f"/console/requests/{r.id}/{action}", data={"csrf": _csrf(op)})
            assert got.status_code == 403 and "needs a dpo token" in got.text
        size = service.lt.log.size()
        for action in ("apply", "erase"):
            got = dpo.post(f"/console/models/{MODEL}/{action}", data={"csrf": _csrf(dpo)})
            assert got.status_code == 403 and "needs a operator token" in got.text
        assert dpo.get("/console/bundle.zip").status_code == 403
        assert service.lt.get(r.id).status == "received" and service.lt.log.size() == size
        assert service.lt.applies(MODEL) == []
        # allowed: the dpo approves, the operator applies; both download the report
        dpo.post(f"/console/requests/{r.id}/approve", data={"csrf": _csrf(dpo), "reason": "ok"})
        got = op.post(f"/console/models/{MODEL}/apply", data={"csrf": _csrf(op), "phase": "mask"})
        assert got.status_code == 303
        home = op.get(got.headers["location"]).text
        assert "masked, not yet erased" in home and "operator (operator)" in home
        (res,) = service.lt.applies(MODEL)
        assert (res.applied_by, res.applied_by_role) == ("operator", "operator")
        bundle = op.get("/console/bundle.zip")
        assert bundle.status_code == 200 and bundle.content[:2] == b"PK"
        report = dpo.get("/console/report.html")
        assert report.status_code == 200 and "attachment" in report.headers["content-disposition"]
        assert (
            "Verification passed" in report.text
            and "sandbox" in report.headers["content-security-policy"]
        )
        pdf = dpo.get("/console/report.pdf")
        assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"
        receipt = dpo.get(f"/console/requests/{r.id}/receipt")
        assert receipt.text == service.lt.receipt(r.id)


@pytest.mark.parametrize("backend", ["service", "pg_service"])
def test_sessions_survive_a_restart_and_end_with_their_token(
    backend: str, request: pytest.FixtureRequest
) -> None:
    service: Service = request.getfixturevalue(backend)  # SQLite, then PostgreSQL
    from lethe.serve import create_app, create_token, revoke_token, serve_in_thread
    from lethe.workflow import Lethe

    token = create_token(service.lt.engine, name="dpo3", role="dpo")[0]
    with httpx.Client(base_url=service.url) as http:
        assert _login(http, token).status_code == 303
        cookie = http.cookies["lethe_session"]
    assert token not in cookie  # the cookie holds no token (nor its stored hash)
    # another server over the same project (a restart, or another worker): same session
    with (
        Lethe.open(service.project) as lt2,
        serve_in_thread(create_app(lt2)) as url2,
        httpx.Client(base_url=url2, cookies={"lethe_session": cookie}) as again,
    ):
        home = again.get("/console")
        assert home.status_code == 200 and '<b id="who">dpo3</b>' in home.text
        # a changed cookie (another name, a bit flipped) is no session
        version, body, mac = cookie.split(".")
        flipped = f"{version}.{body}.{mac[:-2]}{'A' if mac[-2] != 'A' else 'B'}{mac[-1]}"
        for bad in (flipped, cookie.replace(body, body[::-1]), "v1..", "x" * 2000):
            forged = httpx.get(url2 + "/console", cookies={"lethe_session": bad})
            assert forged.status_code == 303 and forged.headers["location"].endswith("/login")
        revoke_token(lt2.engine, "dpo3")
        gone = again.get("/console")
        assert gone.status_code == 303 and gone.headers["location"] == "/console/login"
    with httpx.Client(base_url=service.url, cookies={"lethe_session": cookie}) as first:
        assert first.get("/console").status_code == 303  # revoked on the first server too


def test_a_session_cookie_expires_and_is_bound_to_its_key(tmp_path: Path) -> None:
    import os
    import stat

    from sqlalchemy import create_engine

    from lethe.errors import ConfigError
    from lethe.serve._console_session import KEY_FILE, SessionSigner, load_or_create_key

    engine = create_engine("sqlite://")  # no token table: refused before any lookup
    a, b = SessionSigner(engine, os.urandom(32)), SessionSigner(engine, os.urandom(32))
    cookie = a.issue("dpo", "00" * 32, now=1000.0)
    assert a._payload(cookie) is not None and b._payload(cookie) is None  # another key
    assert a._payload(cookie).expires == 1000 + 8 * 3600  # type: ignore[union-attr]
    assert a.check(cookie, now=1000.0 + 8 * 3600 + 1) is None  # expired
    key = load_or_create_key(tmp_path)
    assert len(key) == 32 and load_or_create_key(tmp_path) == key  # made once, then read
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left
    (tmp_path / KEY_FILE).write_text("not hex\n")
    with pytest.raises(ConfigError, match="delete it and restart"):
        load_or_create_key(tmp_path)
