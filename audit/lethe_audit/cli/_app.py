"""The `lethe-audit` click group and its error handling."""

from __future__ import annotations

from typing import Any

import click

from lethe_audit._version import __version__
from lethe_audit.cli._common import JSON_META
from lethe_audit.cli._errors import report
from lethe_audit.errors import LetheAuditError, StoreError


class LetheAuditGroup(click.Group):
    """A click group that turns LetheAuditError into the exit code of the error map."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LetheAuditError as e:
            ctx.exit(report(e, as_json=bool(ctx.meta.get(JSON_META))))
        except Exception as e:
            typed = _database_error(e) or _missing_extra(e, ctx)
            if typed is None:
                raise
            ctx.exit(report(typed, as_json=bool(ctx.meta.get(JSON_META))))


def _missing_extra(exc: Exception, ctx: click.Context) -> LetheAuditError | None:
    """A module of an optional extra that is not installed: one line naming the extra."""
    from lethe_audit._extras import missing_extra

    sub = ctx.invoked_subcommand
    return missing_extra(exc, f"lethe-audit {sub}" if sub else "lethe-audit")


def _database_error(exc: Exception) -> StoreError | None:
    """A database failure that reached the CLI untyped (a garbage SQLite file, an unreachable
    server) as a one-line StoreError; None for anything else (a bug: let it show)."""
    if not type(exc).__module__.startswith("sqlalchemy"):
        return None
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    detail = text[0] if text else type(exc).__name__
    return StoreError(f"the database cannot be used: {detail} (check --db / the URL)")


@click.group(cls=LetheAuditGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lethe-audit")
def main() -> None:
    """Verify Lethe's signed deletion log: bundles, receipts, keys and the log database.

    Needs no PyTorch. Exit codes name the failure (see docs/cli-audit.md).
    """


def _register() -> None:
    from lethe_audit.cli import _db, _keys, _log, _model, _receipt, _report, _verify

    groups = (
        _db.db,
        _keys.keys,
        _log.log,
        _model.model,
        _receipt.receipt,
        _report.report,
        _verify.verify,
    )
    for group in groups:
        main.add_command(group)


_register()
