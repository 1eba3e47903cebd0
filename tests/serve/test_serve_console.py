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
        assert _login(http, service.tokens["dpo"]).status_code == 303
        home = http.get("/console")
        assert home.status_code == 200 and "<script>" not in home.text
        bad = http.post(f"/console/requests/{r.id}/approve", data={"csrf": "forged"})
        assert bad.status_code == 403 and service.lt.get(r.id).status == "received"
    with httpx.Client(base_url=service.url) as other:  # no session: back to the login
        assert other.post(f"/console/requests/{r.id}/approve", data={}).status_code in (303, 422)
