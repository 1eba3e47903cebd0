"""What every ``lethe`` command shares: the project it works on and the ``-o/--out`` option.

Command modules import this (never :mod:`lethe.cli._app`, which imports them to register
them), so the CLI has no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from lethe.workflow import Lethe, RequestReader, Settings

__all__ = ["ProjectRef", "exit_codes_in_help", "out_option"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class ProjectRef:
    """Where the command's project is; opened on first use (some commands never need it).

    Opening never creates anything: outside an initialised project every command fails with a
    :class:`~lethe.errors.ProjectError` that says to run ``lethe init``.
    """

    project_dir: Path | None
    config: Path | None
    _opened: Any = None
    _settings: Any = None

    def settings(self) -> Settings:
        """The project's settings (options > environment > lethe.toml > defaults)."""
        if self._settings is None:
            from lethe.workflow import Settings

            self._settings = Settings.load(self.project_dir, config=self.config)
        return self._settings  # type: ignore[no-any-return]

    def check_initialised(self) -> Settings:
        """The settings of an initialised project (else a ProjectError naming `lethe init`)."""
        from lethe.workflow import check_initialised

        settings = self.settings()
        check_initialised(settings)
        return settings

    def open(self) -> Lethe:
        if self._opened is None:
            from lethe.workflow import Lethe

            self.check_initialised()
            self._opened = Lethe.open(self.project_dir, config=self.config)
        return self._opened  # type: ignore[no-any-return]

    def reader(self) -> RequestReader | Lethe:
        """What reads requests fastest: the driver-only :class:`RequestReader` where the
        database URL allows it (no SQLAlchemy import), else the opened project."""
        from lethe.workflow import RequestReader

        reader = RequestReader.open(self.settings())
        return reader if reader is not None else self.open()

    def close(self) -> None:
        if self._opened is not None:
            self._opened.close()


def out_option(help: str, *, folder: bool = False) -> Callable[[Any], Any]:
    """The required ``-o/--out`` path of commands that write a file (or, ``folder``, a folder)."""
    return click.option(
        "-o",
        "--out",
        "out_dir" if folder else "out",
        required=True,
        type=click.Path(file_okay=not folder, dir_okay=folder, path_type=Path),
        help=help,
    )


def exit_codes_in_help(f: F) -> F:
    """Fill ``{ErrorName}`` in a command's docstring with that error's exit code from the one
    map (:data:`lethe.cli._errors.EXIT_CODES`), so ``--help`` cannot name a stale code. Put it
    right below ``@click.command()``."""
    f.__doc__ = (f.__doc__ or "").format_map(_ExitCodes())
    return f


class _ExitCodes(dict[str, int]):
    """``{ErrorName}`` -> the exit code of that error of :mod:`lethe.errors` (or
    :mod:`lethe_audit.errors`), through the map's nearest listed base class."""

    def __missing__(self, name: str) -> int:
        from lethe import errors
        from lethe.cli._errors import EXIT_CODES
        from lethe_audit import errors as audit_errors

        cls = getattr(errors, name, None) or getattr(audit_errors, name)
        return next(EXIT_CODES[c] for c in cls.__mro__ if c in EXIT_CODES)
