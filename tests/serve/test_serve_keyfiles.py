"""``lethe serve`` refuses to start while a secret it holds (the log's signing key, the console
session key, the subject-map key) is readable by the group or others; the error is one line
with the ``chmod`` to run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.serve.conftest import project_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def _signing_key(project: Path) -> Path:
    (pem,) = [p for p in (project / "keys").glob("log-*.pem")]
    return pem


@pytest.mark.parametrize("name", ["log", "console-session.key", "subject-map.key"])
def test_serve_refuses_a_key_others_can_read(project_dir: Path, name: str) -> None:  # noqa: F811
    from lethe.errors import ConfigError
    from lethe.serve import create_app
    from lethe.workflow import Lethe

    keys = project_dir / "keys"
    key = _signing_key(project_dir) if name == "log" else keys / name
    if not key.exists():
        key.write_bytes(os.urandom(32).hex().encode() + b"\n")
    key.chmod(0o644)
    with Lethe.open(project_dir) as lt:
        with pytest.raises(ConfigError) as err:
            create_app(lt)
        msg = str(err.value)
        assert "\n" not in msg and f"chmod 600 {key}" in msg and "0644" in msg
        key.chmod(0o600)
        create_app(lt)  # fixed as the message says: it starts


def test_cli_serve_says_the_chmod_and_starts_nothing(project_dir: Path) -> None:  # noqa: F811
    from click.testing import CliRunner

    from lethe.cli import main

    key = _signing_key(project_dir)
    key.chmod(0o640)
    out = CliRunner().invoke(main, ["--project", str(project_dir), "serve", "--host", "256.0.0.1"])
    assert out.exit_code != 0
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and f"chmod 600 {key}" in lines[0], out.output
