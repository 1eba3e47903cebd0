"""Options and output helpers shared by `lethe-audit` commands (stdlib + click only)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from lethe_audit.note import Verifier
    from lethe_audit.verify import Policy

F = TypeVar("F", bound=Callable[..., Any])
JSON_META = "lethe_audit.json"


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[JSON_META] = bool(value)
    return value


def json_option(f: F) -> F:
    """``--json``: print one JSON document on stdout (errors too) instead of text."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        is_eager=True,
        callback=_remember_json,
        expose_value=True,
        help="Print a JSON document instead of text.",
    )(f)


def emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        click.echo(json.dumps({"ok": True, **data}, indent=2, sort_keys=True))
    else:
        click.echo(text)


def passphrase_options(f: F) -> F:
    f = click.option(
        "--passphrase-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="Read the key passphrase from this file (first line).",
    )(f)
    f = click.option(
        "--passphrase-env",
        metavar="VAR",
        help="Read the key passphrase from this environment variable.",
    )(f)
    return f


def passphrase(env: str | None, file: Path | None) -> bytes | None:
    from lethe_audit.errors import KeyFileError

    if env and file:
        raise click.UsageError("give --passphrase-env or --passphrase-file, not both")
    if env:
        value = os.environ.get(env)
        if value is None:
            raise KeyFileError(f"environment variable {env} (the key passphrase) is not set")
        return value.encode("utf-8")
    if file:
        return file.read_text(encoding="utf-8").splitlines()[0].encode("utf-8")
    return None


def progress_option(f: F) -> F:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar (default: when stderr is a terminal).",
    )(f)


def want_progress(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


def key_option(f: F) -> F:
    return click.option(
        "--key",
        "keys",
        multiple=True,
        required=True,
        metavar="VKEY",
        help="Trusted log key: a vkey string, a file of vkeys (one per line) or a key "
        "directory. Repeat for several keys (e.g. across a rotation).",
    )(f)


def load_verifiers(values: tuple[str, ...]) -> list[Verifier]:
    from lethe_audit.errors import FormatError
    from lethe_audit.keys import KEYRING_FILE, KeyRing
    from lethe_audit.note import Verifier

    out: list[Verifier] = []
    for value in values:
        p = Path(value)
        if p.is_dir() and (p / KEYRING_FILE).is_file():
            out.extend(KeyRing.open(p).verifiers())
        elif p.is_file():
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    out.append(Verifier.from_vkey(line.strip()))
        else:
            try:
                out.append(Verifier.from_vkey(value))
            except FormatError as e:
                raise click.BadParameter(f"{value!r}: {e}", param_hint="--key") from None
    return out


def policy_options(f: F) -> F:
    f = click.option(
        "--deadlines",
        is_flag=True,
        help="Require every applied request to be applied by its due date.",
    )(f)
    f = click.option(
        "--metric",
        "metrics",
        multiple=True,
        metavar="NAME<=X|NAME>=X",
        help="Require a metric of every applied attestation within a bound, e.g. "
        "'forget_accuracy<=0.01'. Repeatable.",
    )(f)
    return f


def build_policies(metrics: tuple[str, ...], deadlines: bool) -> list[Policy]:
    import re

    from lethe_audit.verify import DeadlinesMet, MetricThreshold

    out: list[Policy] = []
    for m in metrics:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*", m)
        if not match:
            raise click.BadParameter(f"{m!r} is not NAME<=X or NAME>=X", param_hint="--metric")
        name, op, num = match.groups()
        try:
            value = float(num)
        except ValueError:
            raise click.BadParameter(f"{num!r} is not a number", param_hint="--metric") from None
        out.append(
            MetricThreshold(name, max=value) if op == "<=" else MetricThreshold(name, min=value)
        )
    if deadlines:
        out.append(DeadlinesMet())
    return out
