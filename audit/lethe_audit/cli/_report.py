"""`lethe-audit report`: verify a bundle, then write its report (HTML, PDF or JSON)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from lethe_audit.cli._common import (
    as_of_option,
    emit,
    json_option,
    key_option,
    load_verifiers,
    progress_option,
    want_progress,
)
from lethe_audit.cli._files import check_regular
from lethe_audit.cli._terminal import safe_text


@click.command("report")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@key_option
@click.option(
    "--model",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A signed ONNX model to verify and re-measure (needs --eval-data).",
)
@click.option(
    "--eval-data",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help=".npz with float32 'x' (the model's exact input) and int 'y' (needs --model).",
)
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the report (replaced if it exists).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "pdf", "json"]),
    help="Report format (default: from the suffix of -o; .pdf, .json, else html).",
)
@click.option("--origin", metavar="ORIGIN", help="Require the bundle to be of this log origin.")
@as_of_option
@progress_option
@json_option
def report(
    bundle: Path,
    keys: tuple[str, ...],
    model: Path | None,
    eval_data: Path | None,
    out: Path,
    fmt: str | None,
    origin: str | None,
    as_of: datetime | None,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Verify the auditor BUNDLE with the log's key (--key VKEY), then write its report.

    The report is written even when verification fails (its first line names the entry or
    checkpoint at fault); the command then exits with the verification error's code.
    """
    from lethe_audit.report import build_report, format_for

    if (model is None) != (eval_data is None):
        raise click.UsageError("--model and --eval-data go together")
    for path, what in ((model, "--model file"), (eval_data, "--eval-data file")):
        if path is not None:
            check_regular(path, what)
    result = build_report(
        bundle,
        load_verifiers(keys),
        model=model,
        eval_data=eval_data,
        origin=origin,
        now=as_of,
        progress=want_progress(progress),
    )
    chosen = fmt or format_for(out)
    result.write(out, format=chosen)  # type: ignore[arg-type]
    if result.error is not None:
        click.echo(safe_text(f"wrote {out} ({chosen}): {result.headline}"), err=True)
        raise result.error
    data = result.data
    info = {
        "report": str(out),
        "format": chosen,
        "headline": result.headline,
        "passed": True,
        "summary": data["summary"],
        "remeasured": data["remeasure"] is not None,
    }
    emit(info, as_json, f"wrote {out} ({chosen})\n{result.headline}")
