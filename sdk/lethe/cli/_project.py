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
    from lethe.errors import ProjectError
    from lethe.workflow import Settings
    from lethe_audit.keys import KeyRing

    ref.check_initialised()
    s = Settings.load(ref.project_dir, config=ref.config, origin=origin)
    if (s.keys / "keyring.json").exists():
        raise ProjectError(f"{s.keys} already holds the log keys; use `lethe keys rotate`")
    ring = KeyRing.create(s.keys, name=s.origin, passphrase=s.key_passphrase)
    vkey = ring.entries[0].vkey
    emit({"key_dir": str(s.keys), "vkey": vkey}, as_json, f"new log key in {s.keys}\nvkey: {vkey}")


@keys.command("rotate")
@click.option("--retire-old", is_flag=True, help="Also retire the previously active keys now.")
@json_option
@click.pass_obj
def keys_rotate(ref: ProjectRef, retire_old: bool, as_json: bool) -> None:
    """Add a new log key; both keys sign until the old one is retired. Logged."""
    lt = ref.open()
    old = list(lt.keyring.active())
    ring = lt.keyring.add_key(
        passphrase=lt.settings.key_passphrase,
        register=lambda signer: lt.log.add_key(signer),
    )
    new = [e for e in ring.active() if e.vkey not in {o.vkey for o in old}]
    if retire_old:
        for o in old:
            ring = ring.retire(o.vkey, unregister=lambda key: lt.log.retire_key(key))
    data = {"new": [e.vkey for e in new], "retired": [o.vkey for o in old] if retire_old else []}
    emit(data, as_json, "new key: " + ", ".join(data["new"]))
