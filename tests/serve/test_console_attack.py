"""Attacks on console sessions: forged, tampered, expired, replayed-after-change cookies, the
cookie flags, CSRF (missing, another session's, the login cookie's) on every state-changing
form. A real ``lethe serve`` over a real project; cookies are built with the real key file.
"""

from __future__ import annotations

import time
from http.cookies import SimpleCookie

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serve.conftest import MODEL, Service, file_body

COOKIE = "lethe_session"


def _login(http: httpx.Client, token: str, **headers: str) -> httpx.Response:
    page = http.get("/console/login", headers=headers)
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return http.post("/console/login", data={"token": token, "csrf": csrf}, headers=headers)


def _csrf(http: httpx.Client) -> str:
    home = http.get("/console")
    assert home.status_code == 200, home.status_code
    return home.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _signer(service: Service):  # type: ignore[no-untyped-def]
    from lethe.serve._console_session import SessionSigner, load_or_create_key

    return SessionSigner(service.lt.engine, load_or_create_key(service.lt.keyring.directory))


def _token_hash(service: Service, name: str) -> str:
    from sqlalchemy.orm import Session

    from lethe_audit.store import TokenRow

    with Session(service.lt.engine) as s:
        row = s.get(TokenRow, name)
        assert row is not None
        return str(row.token_hash)


def _is_login_redirect(r: httpx.Response) -> bool:
    return r.status_code == 303 and r.headers["location"] == "/console/login"


def test_cookie_flags_and_secure_behind_https(service: Service) -> None:
    with httpx.Client(base_url=service.url) as http:
        r = _login(http, service.tokens["dpo"])
        (raw,) = [v for k, v in r.headers.multi_items() if k == "set-cookie" and COOKIE in v]
        attrs = {a.strip().split("=")[0].lower() for a in raw.split(";")}
        assert {"httponly", "samesite", "path", "max-age"} <= attrs and "secure" not in attrs
        assert "samesite=strict" in raw.lower() and "path=/console" in raw.lower()
    # behind a TLS-terminating proxy on loopback (X-Forwarded-Proto): both cookies are Secure
    # (so this plain-http client no longer sends them by itself: the test passes them on)
    https = {"X-Forwarded-Proto": "https"}
    page = httpx.get(service.url + "/console/login", headers=https)
    login_cookie = page.headers["set-cookie"]
    assert "secure" in login_cookie.lower() and "httponly" in login_cookie.lower()
    jar = SimpleCookie()
    jar.load(login_cookie)
    value = jar["lethe_login_csrf"].value
    r = httpx.post(
        service.url + "/console/login",
        data={"token": service.tokens["dpo"], "csrf": value},
        headers={**https, "Cookie": f"lethe_login_csrf={value}"},
    )
    assert r.status_code == 303, r.status_code
    (raw,) = [v for k, v in r.headers.multi_items() if k == "set-cookie" and COOKIE in v]
    assert "secure" in raw.lower() and service.tokens["dpo"] not in raw


def test_a_cookie_signed_with_the_real_key_is_refused_when_expired_or_rebound(
    service: Service,
) -> None:
    """The attacker has the key file's signer (the worst case short of the token): an expired
    payload, a payload bound to another hash, or one for a token whose role or hash changed is
    no session."""
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from lethe_audit.store import TokenRow

    signer, h = _signer(service), _token_hash(service, "dpo")
    good = signer.issue("dpo", h)
    expired = signer.issue("dpo", h, now=time.time() - signer.ttl - 5)
    rebound = signer.issue("dpo", "00" * 32)  # bound to another token's hash
    renamed = signer.issue("operator", h)  # the dpo's hash, the operator's name
    for cookie, ok in ((good, True), (expired, False), (rebound, False), (renamed, False)):
        r = httpx.get(service.url + "/console", cookies={COOKIE: cookie})
        assert (r.status_code == 200) is ok and (ok or _is_login_redirect(r)), r.status_code
    # the token's role changes (an admin edits it to auditor): the session ends at once
    with Session(service.lt.engine) as s, s.begin():
        s.execute(update(TokenRow).where(TokenRow.name == "dpo").values(role="auditor"))
    assert _is_login_redirect(httpx.get(service.url + "/console", cookies={COOKIE: good}))
    # a token re-issued under the same name (a new hash): the old cookie does not carry over
    with Session(service.lt.engine) as s, s.begin():
        s.execute(
            update(TokenRow).where(TokenRow.name == "dpo").values(role="dpo", token_hash="ab" * 32)
        )
    assert _is_login_redirect(httpx.get(service.url + "/console", cookies={COOKIE: good}))


def test_csrf_on_every_state_changing_form(service: Service) -> None:
    r = service.client("app").file(**file_body("mallory-target"))
    web = {"base_url": service.url, "timeout": None}
    with (
        httpx.Client(**web) as dpo,
        httpx.Client(**web) as dpo2,
        httpx.Client(**web) as op,
    ):
        for http, who in ((dpo, "dpo"), (dpo2, "dpo"), (op, "operator")):
            assert _login(http, service.tokens[who]).status_code == 303
        other = _csrf(dpo2)  # a valid CSRF token, of another session of the same principal
        assert other != _csrf(dpo)
        size = service.lt.log.size()
        forms = [
            (dpo, f"/console/requests/{r.id}/approve"),
            (dpo, f"/console/requests/{r.id}/reject"),
            (dpo, f"/console/requests/{r.id}/shred"),
            (op, f"/console/models/{MODEL}/apply"),
            (op, f"/console/models/{MODEL}/erase"),
            (dpo, "/console/logout"),
        ]
        for http, path in forms:
            login_value = http.cookies.get("lethe_login_csrf") or "x"
            for csrf in ("", other, login_value, _csrf(http) + "A"):
                got = http.post(path, data={"csrf": csrf, "reason": "forged", "phase": "mask"})
                assert got.status_code == 403, (path, csrf, got.status_code)
        assert service.lt.get(r.id).status == "received" and service.lt.log.size() == size
        assert service.lt.applies(MODEL) == []
        assert dpo.get("/console").status_code == 200  # the forged logout did not log out
        # a reflected message is escaped
        page = dpo.get("/console", params={"msg": "<script>alert(1)</script>"})
        assert "<script>alert(1)" not in page.text and "&lt;script&gt;" in page.text


_cookie_text = st.one_of(
    st.text(max_size=200),
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", st.sampled_from(["v1", "v0", ""]),
              st.text("ABCDEFabcdef0123456789-_=+/", max_size=120),
              st.text("ABCDEFabcdef0123456789-_=+/", max_size=60)),
)  # fmt: skip


def test_hostile_cookies_never_make_a_500_nor_a_session(service: Service) -> None:
    signer = _signer(service)
    good = signer.issue("dpo", _token_hash(service, "dpo"))
    version, body, mac = good.split(".")
    http = httpx.Client(base_url=service.url)

    @settings(max_examples=120, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(
        cookie=_cookie_text
        | st.builds(lambda m: f"{version}.{body}.{m}", st.text(max_size=60))
        | st.builds(lambda b: f"{version}.{b}.{mac}", st.text(max_size=200))
    )
    def check(cookie: str) -> None:
        if cookie == good:
            return
        assert signer.check(cookie) is None  # the parser itself: no session, no exception
        try:
            got = http.get("/console", headers={"Cookie": f"{COOKIE}={cookie}".encode()})
        except httpx.LocalProtocolError:
            return  # not sendable as a header at all
        assert got.status_code < 500, got.status_code
        assert _is_login_redirect(got)

    try:
        check()
    finally:
        http.close()
