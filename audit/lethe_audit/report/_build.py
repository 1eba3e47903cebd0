"""build_report / write_report: verify a bundle, then describe it as JSON, HTML or PDF."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from lethe_audit.errors import ModelVerificationError, ReportError, VerificationError
from lethe_audit.note import Verifier
from lethe_audit.report import _model, _read
from lethe_audit.verify import open_bundle

Format = Literal["html", "pdf", "json"]
FORMATS: tuple[str, ...] = ("html", "pdf", "json")


@dataclass(frozen=True)
class Report(_model.VerifiedDocument):
    """A finished report: the JSON-ready ``data`` (every number the HTML and PDF show), the
    authenticated figure images (``figures``, keyed by bundle path), and ``error``, the
    verification error when the bundle did not verify (``None`` when it did)."""

    data: Mapping[str, Any] = field(repr=False)
    figures: Mapping[str, bytes] = field(repr=False)
    error: VerificationError | None

    def to_json(self) -> str:
        """The JSON report. Its first line is ``{"headline": "...",``, so that the verdict
        is the first thing ``head -1`` shows, as in the HTML and PDF."""
        text = json.dumps(self.data, indent=2, ensure_ascii=False)
        if text.startswith('{\n  "headline"'):
            text = "{" + text[4:]
        return text + "\n"

    def to_html(self) -> str:
        """One self-contained HTML file: inline CSS, inline SVG charts, images as data URIs."""
        from lethe_audit.report._html import render_report

        return render_report(self.data, self.figures)

    def to_pdf(self) -> bytes:
        """The same content as a PDF (fpdf2, pure Python)."""
        from lethe_audit.report._pdf import render_report

        return render_report(self.data, self.figures)

    def render(self, format: Format) -> bytes:
        if format == "html":
            return self.to_html().encode("utf-8")
        if format == "pdf":
            return self.to_pdf()
        if format == "json":
            return self.to_json().encode("utf-8")
        raise ReportError(f"unknown report format {format!r}; use one of {', '.join(FORMATS)}")

    def write(self, out: str | os.PathLike[str], *, format: Format | None = None) -> Path:
        """Write the report to ``out`` (format from the suffix unless given); returns the path."""
        path = Path(out)
        fmt = format or format_for(path)
        write_atomic(path, self.render(fmt))
        return path


def format_for(path: Path) -> Format:
    """``.pdf`` -> pdf, ``.json`` -> json, anything else -> html."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return "pdf"
    if suffix == ".json":
        return "json"
    return "html"


def write_atomic(path: Path, data: bytes) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ReportError(f"directory {parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise ReportError(f"cannot write {path}: {e.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_report(
    bundle: str | os.PathLike[str],
    verifiers: Sequence[str | Verifier] | str | Verifier,
    *,
    model: str | os.PathLike[str] | None = None,
    eval_data: str | os.PathLike[str] | None = None,
    origin: str | None = None,
    now: datetime | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> Report:
    """Verify the auditor ``bundle`` (directory or ``.zip``) offline, then build its report.

    Verification runs first (:func:`lethe_audit.verify.verify_bundle` with ``verifiers``, vkey
    strings or :class:`~lethe_audit.note.Verifier`); a bundle that fails still yields a report
    whose headline names the entry or checkpoint at fault, with the error in ``Report.error``.
    With ``model`` (a signed ONNX file) and ``eval_data`` (``.npz`` with float32 ``x`` exactly
    as the model takes it and int ``y``), the model's signature is checked and its accuracies
    are re-measured with onnxruntime beside the logged ones. ``now`` (default: the current
    time) decides which open requests are overdue.
    """
    trusted = _read.as_verifiers(verifiers)
    if not trusted:
        raise VerificationError("no trusted keys given: pass the log's vkey")
    if (model is None) != (eval_data is None):
        raise ReportError("re-measuring needs both the model (--model) and its data (--eval-data)")
    when = now or datetime.now(timezone.utc)
    if when.tzinfo is None:
        raise ReportError("now must be a timezone-aware datetime")
    path = Path(bundle)
    with open_bundle(path) as snap:  # one private copy: verified and displayed
        verdict = _read.verify(snap, trusted, origin=origin, workers=workers, progress=progress)
        contents = _read.contents(verdict, snap.root, trusted)
    error, located = verdict.error, verdict.located
    data, figures = _model.build(
        contents,
        bundle_name=path.name,
        verifiers=trusted,
        error=error,
        located=located,
        now=when,
    )
    if model is not None and eval_data is not None:
        from lethe_audit.report._remeasure import remeasure

        data["remeasure"] = remeasure(
            Path(model), Path(eval_data), data["applies"], trusted, progress=progress
        )
        if error is None:
            error = _model_failure(data, Path(model).name)
    return Report(data=data, figures=figures, error=error)


def _model_failure(data: dict[str, Any], name: str) -> ModelVerificationError | None:
    """A model that does not verify fails the report (same error as ``model verify``): the
    headline and the verification section name it; its re-measured numbers prove nothing."""
    signature = data["remeasure"]["model"]["signature"]
    if signature["verified"]:
        return None
    err = ModelVerificationError(
        f"model {name}: {signature['message']}", what=signature.get("what") or "signature"
    )
    data["headline"] = (
        f"Verification FAILED for the model {name}: {signature['message']}. The bundle "
        "verified, but this model is not the one the log's key signed: its re-measured "
        "numbers prove nothing."
    )
    data["verification"]["passed"] = False
    data["verification"]["error"] = _model.error_dict(err)
    return err


def report_dict(
    bundle: str | os.PathLike[str],
    verifiers: Sequence[str | Verifier] | str | Verifier,
    **options: Any,
) -> dict[str, Any]:
    """The report as a JSON-ready dict (what :func:`build_report` builds; same options)."""
    return build_report(bundle, verifiers, **options).to_dict()


def write_report(
    bundle: str | os.PathLike[str],
    verifiers: Sequence[str | Verifier] | str | Verifier,
    out: str | os.PathLike[str],
    *,
    format: Format | None = None,
    model: str | os.PathLike[str] | None = None,
    eval_data: str | os.PathLike[str] | None = None,
    origin: str | None = None,
    strict: bool = False,
) -> Path:
    """Verify ``bundle`` and write its report to ``out``; returns ``out`` as a Path.

    ``format`` is ``"html"`` (self-contained), ``"pdf"`` or ``"json"``; by default it follows
    the suffix of ``out`` (``.pdf``, ``.json``, else HTML). A bundle that fails verification
    still gets its report (the first line says so and names the entry); with ``strict=True``
    the verification error is raised after the report is written.
    """
    report = build_report(bundle, verifiers, model=model, eval_data=eval_data, origin=origin)
    path = report.write(out, format=format)
    if strict and report.error is not None:
        raise report.error
    return path
