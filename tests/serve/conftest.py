"""Service fixtures: a real project (the workflow template copy, SQLite; or PostgreSQL), a real
uvicorn server on a loopback port, and one token per role plus a revoked one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.workflow.conftest import (  # noqa: F401  (fixtures)
    MODEL,
    pg_project,
    pg_url,
    project_dir,
    project_template,
)

__all__ = ["MODEL", "ROLES", "Service", "file_body"]

ROLES = ("app", "dpo", "operator", "auditor")


@dataclass
class Service:
    """A running server over a project, its admin handle and its tokens by name."""

    url: str
    lt: Any
    tokens: dict[str, str]
    project: Path

    def client(self, who: str, **kw: Any) -> Any:
        from lethe import Client

        return Client(self.url, self.tokens[who], **kw)

    def headers(self, who: str | None) -> dict[str, str]:
        if who is None:
            return {}
        if who == "invalid":
            return {"Authorization": "Bearer lethe_not-a-real-token"}
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def _start(project: Path) -> Iterator[Service]:
    from lethe.serve import create_app, create_token, revoke_token, serve_in_thread
    from lethe.workflow import Lethe

    with Lethe.open(project) as lt:
        tokens = {role: create_token(lt.engine, name=role, role=role)[0] for role in ROLES}
        tokens["app2"] = create_token(lt.engine, name="app2", role="app")[0]
        tokens["revoked"] = create_token(lt.engine, name="revoked", role="dpo")[0]
        revoke_token(lt.engine, "revoked")
        with serve_in_thread(create_app(lt)) as url:
            yield Service(url, lt, tokens, project)


@pytest.fixture
def service(project_dir: Path) -> Iterator[Service]:  # noqa: F811
    yield from _start(project_dir)


@pytest.fixture
def pg_service(pg_project: Path) -> Iterator[Service]:  # noqa: F811
    yield from _start(pg_project)


def file_body(subject: str = "alice@example.com", **kw: Any) -> dict[str, Any]:
    return {"subject": subject, "classes": ["3"], "legal_basis": "gdpr-17-1-b", **kw}
