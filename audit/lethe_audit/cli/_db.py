"""`lethe-audit db`: create and migrate the log database."""

from __future__ import annotations

import click

from lethe_audit.cli._common import emit, json_option


@click.group()
def db() -> None:
    """Create and migrate the database (Alembic)."""


@db.command("upgrade")
@click.argument("url")
@click.option(
    "--revision", default="head", show_default=True, metavar="REV", help="Target revision."
)
@json_option
def db_upgrade(url: str, revision: str, as_json: bool) -> None:
    """Create or migrate the database at URL to REVISION (sqlite:///PATH or
    postgresql+psycopg://USER@HOST/DB)."""
    from lethe_audit.store import create_engine, current_revisions, describe, upgrade

    engine = create_engine(url)
    try:
        upgrade(engine, revision)
        with engine.connect() as conn:
            current = list(current_revisions(conn))
    finally:
        engine.dispose()
    emit(
        {"url": describe(url), "revision": current},
        as_json,
        f"{describe(url)} is at revision {', '.join(current) or '(empty)'}",
    )


@db.command("current")
@click.argument("url")
@json_option
def db_current(url: str, as_json: bool) -> None:
    """Show the database's revision and the head revision."""
    from lethe_audit.store import create_engine, current_revisions, describe, head_revisions

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            current = list(current_revisions(conn))
    finally:
        engine.dispose()
    heads = list(head_revisions())
    emit(
        {
            "url": describe(url),
            "revision": current,
            "head": heads,
            "at_head": set(current) == set(heads),
        },
        as_json,
        f"{describe(url)}: revision {', '.join(current) or '(empty)'}, head {', '.join(heads)}",
    )
