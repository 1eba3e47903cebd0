"""``lethe tokens``: API tokens of ``lethe serve`` (create once, list, revoke)."""

from __future__ import annotations

import click

from lethe.cli._context import ProjectRef
from lethe_audit.cli.common import emit, json_option


@click.group()
def tokens() -> None:
    """API tokens of `lethe serve`: one per principal, with a role."""


@tokens.command("create")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["app", "dpo", "operator", "auditor"]),
    help="app files and reads its own requests; dpo decides; operator applies; auditor reads.",
)
@click.option("--name", required=True, help="The principal's name (never reused; in the log).")
@json_option
@click.pass_obj
def tokens_create(ref: ProjectRef, role: str, name: str, as_json: bool) -> None:
    """Create a token and print it once (only its SHA-256 is stored)."""
    from lethe.serve import create_token

    token, info = create_token(ref.open().engine, name=name, role=role)
    emit(
        {"token": token, **info.to_dict()},
        as_json,
        f"{token}\n(token {info.name!r}, role {info.role}: shown once, store it now)",
    )


@tokens.command("list")
@json_option
@click.pass_obj
def tokens_list(ref: ProjectRef, as_json: bool) -> None:
    """List tokens (names, roles, times; never the tokens)."""
    from lethe.serve import list_tokens

    infos = list_tokens(ref.open().engine)
    lines = [
        f"{t.name}  {t.role:8} created={t.created_at:%Y-%m-%d}"
        + (f" REVOKED {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "")
        for t in infos
    ]
    emit({"tokens": [t.to_dict() for t in infos]}, as_json, "\n".join(lines) or "no tokens")


@tokens.command("revoke")
@click.argument("name")
@json_option
@click.pass_obj
def tokens_revoke(ref: ProjectRef, name: str, as_json: bool) -> None:
    """Revoke a token: from now on it is refused (401)."""
    from lethe.serve import revoke_token

    info = revoke_token(ref.open().engine, name)
    emit({"token": info.to_dict()}, as_json, f"token {info.name!r} is revoked")
