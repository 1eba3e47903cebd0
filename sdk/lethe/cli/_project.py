"""``lethe init``, ``lethe db``, ``lethe keys``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lethe.cli._context import ProjectRef
from lethe_audit.cli.common import emit, json_option


@click.command()
@click.option("--database-url", help="Database URL (default: sqlite:///<project>/lethe.db).")
@click.option("--origin", help="Log origin / key name (default: lethe.local/<project name>).")
@json_option
@click.pass_obj
def init(ref: ProjectRef, database_url: str | None, origin: str | None, as_json: bool) -> None:
    """Create a project: lethe.toml, database schema, log signing key, empty log.

    Safe to run again: existing parts are kept.
    """
    from lethe.workflow import Lethe

    lt = Lethe.init(ref.project_dir or Path.cwd(), database_url=database_url, origin=origin)
    s = lt.settings
    data: dict[str, Any] = {
        "project_dir": str(s.project_dir),
        "database": _safe_url(s.database_url),
        "key_dir": str(s.keys),
        "origin": lt.log.origin(),
        "log_size": lt.log.size(),
        "vkeys": [e.vkey for e in lt.keyring.active()],
    }
    lt.close()
    emit(
        data,
        as_json,
        f"project ready in {s.project_dir}\nlog {data['origin']} ({data['log_size']} entries)\n"
        f"verifier key: {data['vkeys'][0]}",
    )


def _safe_url(url: str) -> str:
    from lethe_audit.store import describe

    return describe(url)


@click.group()
def db() -> None:
    """The project database (schema migrations)."""


@db.command("upgrade")
@click.option("--database-url", help="Database URL (default: the project's).")
@json_option
@click.pass_obj
def db_upgrade(ref: ProjectRef, database_url: str | None, as_json: bool) -> None:
    """Upgrade the database schema to the latest migration."""
    from lethe_audit.store import create_engine, current_revisions, upgrade

    # The project's own database only inside an initialised project (never a new lethe.db in
    # a folder that is not one); --database-url names a database on purpose.
    url = database_url or ref.check_initialised().database_url
    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            revs = sorted(current_revisions(conn))
    finally:
        engine.dispose()
    emit(
        {"database": _safe_url(url), "revisions": revs},
        as_json,
        f"{_safe_url(url)} at {', '.join(revs)}",
    )


@click.group()
def keys() -> None:
    """The log's signing keys (Ed25519)."""


@keys.command("show")
@json_option
@click.pass_obj
def keys_show(ref: ProjectRef, as_json: bool) -> None:
    """List the log's keys and their verifier keys (vkeys) for auditors."""
    lt = ref.open()
    rows = [
        {
            "name": r.name,
            "key_id": r.key_id,
            "status": r.status,
            "vkey": r.vkey,
            "added_at_size": r.added_at_size,
            "retired_at_size": r.retired_at_size,
        }
        for r in lt.log.signing_keys()
    ]
    text = "\n".join(f"{r['status']:8} {r['key_id']}  {r['vkey']}" for r in rows)
    emit({"keys": rows}, as_json, text)


@keys.command("generate")
@click.option("--origin", help="Key name / log origin (default: from the project settings).")
@json_option
@click.pass_obj
def keys_generate(ref: ProjectRef, origin: str | None, as_json: bool) -> None:
    """Create the project's first log key (refuses when one exists; use rotate)."""
    from lethe.workflow import Lethe

    ref.check_initialised()
    key = Lethe.generate_key(ref.project_dir, config=ref.config, origin=origin)
    emit(key.to_dict(), as_json, f"new log key in {key.key_dir}\nvkey: {key.vkey}")


@keys.command("rotate")
@click.option("--retire-old", is_flag=True, help="Also retire the previously active keys now.")
@json_option
@click.pass_obj
def keys_rotate(ref: ProjectRef, retire_old: bool, as_json: bool) -> None:
    """Add a new log key; both keys sign until the old one is retired. Logged."""
    rotation = ref.open().rotate_key(retire_old=retire_old)
    emit(rotation.to_dict(), as_json, "new key: " + ", ".join(rotation.new))
