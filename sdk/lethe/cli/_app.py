"""The ``lethe`` click group, its global options and error handling."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Any

import click

from lethe.cli._context import ProjectRef
from lethe.errors import LetheError
from lethe_audit import __version__
from lethe_audit.cli.common import JSON_META
from lethe_audit.errors import LetheAuditError

_ARGV = "lethe.argv"


class LetheGroup(click.Group):
    """Turns Lethe and lethe_audit errors into the exit codes of the one error map."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGV] = tuple(args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            _exit_usage(ctx, e)
            raise  # pragma: no cover - _exit_usage exits

    def invoke(self, ctx: click.Context) -> Any:
        from lethe.cli._errors import report

        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            _exit_usage(ctx, e)
        except (LetheError, LetheAuditError) as e:
            ctx.exit(report(e, as_json=bool(ctx.meta.get(JSON_META))))
        except Exception as e:
            # A database error or a full disk that escaped the SDK's own mapping is still a
            # typed error for the user (one line, its exit code, ok: false), never a traceback.
            # sqlalchemy is only looked up if something imported it (cheap commands do not).
            ctx.exit(report(_typed(e), as_json=bool(ctx.meta.get(JSON_META))))


class CommandLineError(click.UsageError):
    """A bad command line, as one line: the message and where to read the usage."""


def _exit_usage(ctx: click.Context, e: click.UsageError) -> None:
    """A bad command line as one line too (and ok: false with --json), exit 2, naming the
    command's --help. A --json that came with it counts even if its eager callback did not
    run."""
    from lethe.cli._errors import report

    if type(e).__name__ == "NoArgsIsHelpError":  # `lethe` or a group alone: its help, as click
        raise e
    where = e.ctx.command_path if e.ctx is not None else "lethe"
    err = CommandLineError(f"{e.format_message()} (see `{where} --help`)")
    as_json = bool(ctx.meta.get(JSON_META)) or "--json" in ctx.meta.get(_ARGV, ())
    ctx.exit(report(err, as_json=as_json, code=e.exit_code))


def _typed(e: Exception) -> Exception:
    """The typed error for a failure that escaped the SDK's own mapping (re-raised if none)."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(e, sa_exc.SQLAlchemyError):
        from lethe_audit.store import store_error

        return store_error(e, "database error")
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        from lethe.errors import InsufficientSpaceError

        where = e.filename or "a file"
        return InsufficientSpaceError(
            f"{where}: no space left on the device ({e.strerror}); free some space on that file "
            "system and run the command again",
            path=str(e.filename or ""),
        )
    raise e


@click.group(cls=LetheGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lethe")
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="LETHE_PROJECT_DIR",
    help="Project directory (default: $LETHE_PROJECT_DIR, else the current directory).",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="LETHE_CONFIG",
    help="Settings file (default: <project>/lethe.toml).",
)
@click.pass_context
def main(ctx: click.Context, project_dir: Path | None, config: Path | None) -> None:
    """Lethe: turn deletion requests into verified, signed unlearning of deployed classifiers.

    Admin commands over one project (database, log keys, registered models). Exit codes name
    the failure (see docs/cli.md).
    """
    ref = ProjectRef(project_dir, config)
    ctx.obj = ref
    ctx.call_on_close(ref.close)


def _register() -> None:
    from lethe.cli import _demo, _models, _project, _requests, _serve, _tokens

    for cmd in (
        _project.init,
        _project.db,
        _project.keys,
        _models.model,
        _models.filters,
        _requests.request,
        _requests.apply,
        _requests.erase,
        _requests.export,
        _requests.log,
        _requests.receipt,
        _demo.demo,
        _serve.serve,  # serve helper
        _tokens.tokens,  # serve helper
    ):
        main.add_command(cmd)


_register()
