"""Options and output helpers shared by `lethe-audit` commands (stdlib + click only)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from lethe_audit.cli._terminal import safe_text

if TYPE_CHECKING:
    from lethe_audit.keys import TrustedKey
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
    """Print a success: JSON (with ``trusted_keys`` when keys were loaded) or text (a line
    naming the trusted keys first, the verdict last)."""
    keys, line = trusted_keys_data(), trusted_keys_line()
    if as_json:
        doc = {"ok": True, **data}
        if keys is not None:
            doc.setdefault("trusted_keys", keys)
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        click.echo(safe_text(f"{line}\n{text}" if line else text))


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
        from lethe_audit.cli._files import read_text

        lines = read_text(file, "--passphrase-file", error=KeyFileError).splitlines()
        if not lines or not lines[0]:
            raise KeyFileError(
                f"--passphrase-file {file} is empty: put the passphrase on its first line"
            )
        return lines[0].encode("utf-8")
    return None


def progress_option(f: F) -> F:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar (default: when stderr is a terminal).",
    )(f)


def want_progress(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


def _instant(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """``--as-of``: RFC 3339 (``2024-06-01T00:00:00Z``, offsets allowed) or a date
    (``2024-06-01``, midnight UTC)."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date (2024-06-01) or an RFC 3339 time (2024-06-01T09:00:00Z)"
        ) from None
    if t.tzinfo is None:
        raise click.BadParameter(
            f"{text!r} has no time zone: end it with Z or an offset such as +02:00"
        )
    return t.astimezone(timezone.utc)


def as_of_option(f: F) -> F:
    """``--as-of/--now TIME`` (the parameter ``as_of``: an aware UTC datetime or None): judge
    deadlines at TIME instead of the current time."""
    return click.option(
        "--as-of",
        "--now",
        "as_of",
        metavar="TIME",
        callback=_instant,
        help="Judge deadlines at this time instead of now (a date or an RFC 3339 time).",
    )(f)


KEYS_META = "lethe_audit.trusted_keys"
_KEY_FILES_META = "lethe_audit.key_files"
_KEY_DIRS_META = "lethe_audit.key_dirs"
#: A --key-file is a short text file; refuse anything bigger than this.
MAX_KEY_FILE = 1 << 20


def _remember(meta_key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        ctx.meta[meta_key] = tuple(value or ())
        return value

    return callback


def key_option(f: F) -> F:
    """``--key VKEY[@FROM..UNTIL]``, ``--key-file FILE``, ``--key-dir DIR`` (each repeatable;
    at least one). A ``--key`` value is always a vkey, never a path: key files and key
    directories come only through their own options (a planted file cannot replace a key)."""
    f = click.option(
        "--key-dir",
        multiple=True,
        expose_value=False,
        callback=_remember(_KEY_DIRS_META),
        type=click.Path(file_okay=False, exists=True, path_type=Path),
        metavar="DIR",
        help="Trust the keys of this key directory (its keyring.json), each within the log "
        "sizes recorded for it (a retired key only up to its retirement). Repeatable.",
    )(f)
    f = click.option(
        "--key-file",
        multiple=True,
        expose_value=False,
        callback=_remember(_KEY_FILES_META),
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        metavar="FILE",
        help="Trust the vkeys in this file (one per line, optionally VKEY@FROM..UNTIL; blank "
        "lines and # comments ignored). Repeatable.",
    )(f)
    return click.option(
        "--key",
        "keys",
        multiple=True,
        metavar="VKEY[@FROM..UNTIL]",
        help="Trusted log key: a vkey string (never a file name), optionally valid only for "
        "log sizes FROM..UNTIL (e.g. VKEY@..42: retired at size 42). Repeat for several keys "
        "(e.g. across a rotation).",
    )(f)


def _vkey_param(value: str, hint: str) -> TrustedKey:
    from lethe_audit.errors import FormatError
    from lethe_audit.keys import TrustedKey

    try:
        return TrustedKey.parse(value)
    except FormatError as e:
        tip = ""
        if hint == "--key" and os.path.lexists(value):
            kind = "--key-dir" if os.path.isdir(value) else "--key-file"
            tip = f" (--key takes a vkey string, never a path: to read {value!r} use {kind})"
        raise click.BadParameter(f"{value!r}: {e}{tip}", param_hint=hint) from None


def _read_key_file(path: Path) -> list[TrustedKey]:
    import stat

    from lethe_audit.errors import KeyFileError

    try:
        # Non-blocking open, then fstat: a FIFO swapped in after a check cannot hang us.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise KeyFileError(f"--key-file {path}: not a regular file")
            if st.st_size > MAX_KEY_FILE:
                raise KeyFileError(f"--key-file {path}: {st.st_size} bytes is not a file of vkeys")
            text = fh.read(MAX_KEY_FILE + 1).decode("utf-8")
    except OSError as e:
        raise KeyFileError(f"--key-file {path}: cannot read it ({e.strerror})") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"--key-file {path}: not a text file of vkeys") from None
    lines = [ln.strip() for ln in text.splitlines()]
    keys = [_vkey_param(ln, f"--key-file {path}") for ln in lines if ln and ln[0] != "#"]
    if not keys:
        raise KeyFileError(f"--key-file {path} holds no vkey")
    return keys


def load_verifiers(values: tuple[str, ...]) -> list[TrustedKey]:
    """The trusted keys of ``--key``, ``--key-file`` and ``--key-dir`` (at least one given),
    remembered for :func:`emit` (success output names them)."""
    from lethe_audit.errors import KeyFileError
    from lethe_audit.keys import KeyRing, merge_trusted

    ctx = click.get_current_context()
    out = [_vkey_param(v, "--key") for v in values]
    for file in ctx.meta.get(_KEY_FILES_META, ()):
        out += _read_key_file(file)
    for d in ctx.meta.get(_KEY_DIRS_META, ()):
        ring = KeyRing.open(d)
        trusted = ring.trusted_keys()
        if not trusted:
            raise KeyFileError(f"--key-dir {d}: no key with a known validity window")
        out += trusted
    if not out:
        raise click.UsageError(
            "give the log's public key: --key VKEY, --key-file FILE or --key-dir DIR"
        )
    keys = merge_trusted(out)
    ctx.meta[KEYS_META] = keys
    return keys


def trusted_keys_data() -> list[dict[str, Any]] | None:
    """The keys :func:`load_verifiers` trusted in this command, for output (None: none)."""
    ctx = click.get_current_context(silent=True)
    keys = ctx.meta.get(KEYS_META) if ctx is not None else None
    if not keys:
        return None
    return [
        {"name": k.name, "key_id": f"{k.key_id:08x}", "vkey": k.vkey, "window": k.window}
        for k in keys
    ]


def trusted_keys_line() -> str | None:
    """``trusted keys: name+id[@FROM..UNTIL], ...`` for text output (None: no keys loaded)."""
    ctx = click.get_current_context(silent=True)
    keys = ctx.meta.get(KEYS_META) if ctx is not None else None
    if not keys:
        return None
    from lethe_audit.keys import describe_keys  # only when keys were loaded: a cheap emit()

    return f"trusted keys: {describe_keys(keys)}"


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
        "'accuracy.forget_accuracy<=0.01' (a dotted path into the attestation's metrics). "
        "Repeatable.",
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
