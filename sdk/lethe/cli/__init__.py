"""The ``lethe`` admin CLI: thin click commands over the library, one error map."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from lethe.errors import LetheError

__all__ = ["main"]

# One exit code per error family; anything else is a bug and keeps its traceback.
EXIT_CODES: dict[str, int] = {
    "ConfigError": 2,
    "DataError": 3,
    "ModelError": 4,
    "FilterError": 5,
}


def _exit_code(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls.__name__ in EXIT_CODES:
            return EXIT_CODES[cls.__name__]
    return 1


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LetheError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(_exit_code(exc))


@click.group(cls=_Group)
@click.version_option(package_name="lethe-sdk")
def main() -> None:
    """Lethe: turn deletion requests into verified, signed unlearning of deployed classifiers."""


def _print_demo_table(result: dict[str, Any]) -> None:
    click.echo(
        f"digits, {result['model']['arch']} ({result['n_train']} train / {result['n_test']} test "
        f"images): base accuracy {result['base_accuracy']:.3f}; "
        f"{result['filtered_layers']} filtered layers"
    )
    click.echo("")
    cols = ("class", "n", "class acc before", "after", "others before", "after")
    widths = (5, 4, 16, 6, 13, 6)
    head = "  ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True))
    click.echo(head)
    click.echo("-" * len(head))
    keys = ("class_acc_before", "class_acc_after", "others_acc_before", "others_acc_after")
    for r in result["classes"]:
        cells = [f"{r['class']:>5}", f"{r['n_test']:>4}"]
        cells += [f"{r[k]:>{w}.3f}" for k, w in zip(keys, widths[2:], strict=True)]
        click.echo("  ".join(cells))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for data split and training."
)
@click.option(
    "--base-epochs",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Epochs for the base classifier.",
)
@click.option(
    "--filter-epochs",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Epochs of the one filter-training round.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(as_json: bool, seed: int, base_epochs: int, filter_epochs: int, quiet: bool) -> None:
    """Run the end-to-end demo on scikit-learn's bundled digits data."""
    from lethe._demo import DemoConfig, run_demo

    result = run_demo(
        DemoConfig(
            seed=seed,
            base_epochs=base_epochs,
            filter_epochs=filter_epochs,
            progress=not quiet and not as_json,
        )
    )
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        _print_demo_table(result)
