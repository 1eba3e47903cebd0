"""The ``lethe-audit`` CLI (auditors; never imports torch)."""

import click

__all__ = ["main"]


@click.group()
def main() -> None:
    """Verify Lethe's audit log, receipts and exported models offline."""
