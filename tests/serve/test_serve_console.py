"""The DPO console in a real headless Chromium (DevTools pipe, as the report tests do): log in
with a dpo token, approve a request, see it applied after the operator's apply. Plus its
guards over plain HTTP: CSP and the other headers, CSRF on every state-changing form,
escaping, roles."""

from __future__ import annotations

import json
import tempfile
from typing import Any

import httpx
import pytest

from tests.serve.conftest import MODEL, Service, file_body


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

    def loads(self, expr: str | None = None, *, url: str | None = None) -> None:
        """Navigate (``url``) or run ``expr`` (a form submit) and wait for the next page."""
        self.pipe.events.clear()
        if url is not None:
            self.pipe.call("Page.navigate", {"url": url}, session=self.session)
        else:
            self.js(expr or "")
        self.pipe.wait_event("Page.loadEventFired")


def test_console_in_chromium_login_approve_and_see_it_applied(service: Service) -> None:
    tools, exe = _browser()
    r = service.client("app").file(**file_body("kate"))
    with tempfile.TemporaryDirectory(prefix="lethe-console-") as profile:
        pipe = tools._Pipe(exe, profile)
        try:
            tab = _Tab(pipe)
            tab.loads(url=service.url + "/console")  # not signed in: redirected to the login
            assert tab.js("location.pathname") == "/console/login"
            token = json.dumps(service.tokens["dpo"])
            tab.loads(f"document.getElementById('token').value = {token};"
                      "document.getElementById('login').submit()")  # fmt: skip
            assert tab.js("document.getElementById('who').textContent") == "dpo"
            row = f"document.getElementById('row-{r.id}')"
            assert "kate" not in tab.js("document.body.innerText")  # only commitments
            tab.loads(f"{row}.querySelector('form.approve input[name=reason]').value = 'ok';"
                      f"{row}.querySelector('form.approve').submit()")  # fmt: skip
            assert tab.js(f"{row}.querySelector('.status').textContent") == "approved"
            assert "is approved" in tab.js("document.getElementById('message').textContent")
            service.client("operator").apply(MODEL, phase="mask")
            tab.loads(url=service.url + "/console")
            assert tab.js(f"{row}.querySelector('.status').textContent").startswith("applied")
            assert tab.js(f"{row}.querySelector('a').textContent") == "receipt"
        finally:
            pipe.close()
    got = service.lt.get(r.id)
    assert (got.decided_by, got.decided_by_role) == ("dpo", "dpo")


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
        assert "Verification passed" in report.text and "sandbox" in report.headers[
            "content-security-policy"
        ]
        pdf = dpo.get("/console/report.pdf")
        assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"
        receipt = dpo.get(f"/console/requests/{r.id}/receipt")
        assert receipt.text == service.lt.receipt(r.id)


def test_sessions_survive_a_restart_and_end_with_their_token(service: Service) -> None:
    from lethe.serve import create_app, create_token, revoke_token, serve_in_thread
    from lethe.workflow import Lethe

    create_token(service.lt.engine, name="dpo2", role="dpo")
    token = create_token(service.lt.engine, name="dpo3", role="dpo")[0]
    with httpx.Client(base_url=service.url) as http:
        assert _login(http, token).status_code == 303
        cookie = http.cookies["lethe_session"]
    assert token not in cookie  # the cookie holds no token (nor its stored hash)
    # another server over the same project (a restart, or another worker): same session
    with Lethe.open(service.project) as lt2, serve_in_thread(create_app(lt2)) as url2:
        with httpx.Client(base_url=url2, cookies={"lethe_session": cookie}) as again:
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


def test_a_session_cookie_expires_and_is_bound_to_its_key() -> None:
    import os

    from sqlalchemy import create_engine

    from lethe.serve._console_session import SessionSigner

    engine = create_engine("sqlite://")
    a, b = SessionSigner(engine, os.urandom(32)), SessionSigner(engine, os.urandom(32))
    cookie = a.issue("dpo", "00" * 32, now=1000.0)
    assert a._payload(cookie) is not None and b._payload(cookie) is None  # another key
    assert a._payload(cookie).expires == 1000 + 8 * 3600  # type: ignore[union-attr]
