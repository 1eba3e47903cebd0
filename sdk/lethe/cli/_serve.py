"""``lethe serve``: the HTTP API over the project (the only process that needs the key)."""

from __future__ import annotations

import ipaddress

import click

from lethe.cli._context import ProjectRef
from lethe_audit.cli import safe_text


def is_loopback(host: str) -> bool:
    """``host`` is this machine only (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="TCP port to listen on.",
)
@click.option(
    "--max-in-flight",
    default=32,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Calls one token may have in flight; more are answered 429.",
)
@click.pass_obj
def serve(ref: ProjectRef, host: str, port: int, max_in_flight: int) -> None:
    """Serve the project's HTTP API under /v1 (see docs/service.md); Ctrl-C stops it."""
    import uvicorn

    from lethe.serve import create_app

    app = create_app(ref.open(), max_in_flight=max_in_flight)
    if not is_loopback(host):
        click.echo(
            f"lethe: warning: serving plain HTTP on {safe_text(host, one_line=True)}, beyond "
            "loopback: tokens and subject identifiers cross the network unencrypted unless a "
            "TLS-terminating proxy is in front (docs/service.md)",
            err=True,
        )
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
