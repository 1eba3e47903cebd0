"""External tools the report tests drive: headless Chromium (over the DevTools protocol on a
pipe, no websocket library needed) and poppler's pdftoppm / pdftotext.

Tests skip when a tool is missing locally; the project's `.ci/run` installs Debian's
``chromium`` and ``poppler-utils`` so that CI always runs them.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CI_NOTE = "(the lead's .ci/run installs it: apt-get install -y chromium poppler-utils)"
#: Guards against a wedged browser only; no test asserts anything about time.
HANG_GUARD_S = 180.0


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.skip(f"headless Chromium is not installed here {CI_NOTE}")


def poppler(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} (Debian package poppler-utils) is not installed here {CI_NOTE}")
    return exe


@dataclass
class PageLoad:
    """What Chromium saw while loading one page."""

    requests: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    pdf: bytes = b""
    value: Any = None  # what the ``evaluate`` expression returned


class _Pipe:
    def __init__(self, exe: str, profile: str) -> None:
        to_r, self._to_w = os.pipe()  # commands: we write, Chromium reads fd 3
        self._from_r, from_w = os.pipe()  # replies and events: Chromium writes fd 4

        def fds() -> None:
            # Move both ends above 4 first so dup2 onto 3/4 never clobbers the other.
            r = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        args = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            args,
            preexec_fn=fds,  # the pipe protocol needs fds 3 and 4
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_r)
        os.close(from_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def _next(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_r], [], [], max(left, 0))
            if not ready:
                raise AssertionError("Chromium stopped answering (DevTools pipe)")
            chunk = os.read(self._from_r, 1 << 20)
            if not chunk:
                raise AssertionError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        msg: dict[str, Any] = json.loads(raw)
        if "method" in msg:
            self.events.append(msg)
        return msg

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> Any:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + HANG_GUARD_S
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_event(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + HANG_GUARD_S
        for ev in self.events:
            if ev["method"] == method:
                return ev
        while True:
            msg = self._next(deadline)
            if msg.get("method") == method:
                return msg

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_w)
        os.close(self._from_r)


def load_page(
    path: Path,
    *,
    width: int = 1000,
    height: int = 1400,
    pdf: bool = False,
    evaluate: str | None = None,
) -> PageLoad:
    """Open ``path`` in headless Chromium; record requests, failures, console errors, and take a
    full-page screenshot (and a printed PDF when asked; ``evaluate``: a JavaScript expression
    whose value is returned in ``PageLoad.value``, e.g. an element's height)."""
    exe = chromium()
    url = path.resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="lethe-chromium-") as profile:
        pipe = _Pipe(exe, profile)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})
            session = pipe.call(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
            )["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.call(f"{domain}.enable", session=session)
            pipe.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            pipe.call("Page.navigate", {"url": url}, session=session)
            pipe.wait_event("Page.loadEventFired")
            shot = pipe.call(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True},
                session=session,
            )
            value = None
            if evaluate is not None:
                value = pipe.call(
                    "Runtime.evaluate", {"expression": evaluate, "returnByValue": True},
                    session=session,
                )["result"].get("value")  # fmt: skip
            printed = (
                pipe.call("Page.printToPDF", {"printBackground": True}, session=session)
                if pdf
                else None
            )
        finally:
            pipe.close()
    out = PageLoad(screenshot=base64.b64decode(shot["data"]), value=value)
    if printed is not None:
        out.pdf = base64.b64decode(printed["data"])
    for ev in pipe.events:
        p = ev.get("params", {})
        m = ev["method"]
        if m == "Network.requestWillBeSent":
            out.requests.append(p["request"]["url"])
        elif m == "Network.loadingFailed":
            out.failed.append(p)
        elif m == "Runtime.exceptionThrown":
            out.console_errors.append(json.dumps(p.get("exceptionDetails", {}))[:500])
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            out.console_errors.append(json.dumps(p.get("args", []))[:500])
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
            out.console_errors.append(p["entry"].get("text", "")[:500])
    return out


def pdf_pages_to_png(pdf: Path, out_dir: Path, *, dpi: int = 40) -> list[Path]:
    exe = poppler("pdftoppm")
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([exe, "-png", "-r", str(dpi), str(pdf), str(out_dir / "page")], check=True)
    return sorted(out_dir.glob("page-*.png"))


def pdf_page_count(pdf: Path) -> int:
    exe = poppler("pdfinfo")
    out = subprocess.run([exe, str(pdf)], check=True, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("Pages:"):
            return int(line.split()[1])
    raise AssertionError(f"pdfinfo printed no page count: {out.stdout}")


def pdf_text(pdf: Path) -> str:
    exe = poppler("pdftotext")
    out = subprocess.run(
        [exe, "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    )
    return out.stdout
