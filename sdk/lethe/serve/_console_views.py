"""What the console shows of applies (metrics, verdicts, depth) and what it hands out (receipts,
the auditor report, the bundle), with the wording of the auditor report: a passed mask is
"masked, not yet erased"; only a passed erase is "erased"."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.responses import Response

from lethe.workflow import MASKED_NOT_ERASED, ApplyResult, Lethe
from lethe_audit.statements import Phase

__all__ = ["ApplyRowView", "apply_rows", "apply_summary", "download", "report_bytes"]

#: The report is a download, never rendered by the console: it keeps its inline CSS, images
#: as data URIs, and runs in a sandbox if a browser shows it anyway.
_DOWNLOAD_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


@dataclass(frozen=True)
class ApplyRowView:
    """One apply as the console's table shows it (numbers already formatted)."""

    id: str
    model: str
    phase: str
    outcome: str
    verdict: str
    reasons: tuple[str, ...]
    state: str
    requests: str
    forget: str
    retain: str
    relearn: str
    depth: str
    by: str
    at: str


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _state(res: ApplyResult, current: bool) -> str:
    """What this apply left deployed, in the report's words."""
    if not res.passed:
        return "failed: nothing published" if res.phase == Phase.MASK else "failed: the mask stays"
    if res.phase == Phase.ERASE:
        return "erased" + ("" if current else " (superseded)")
    return MASKED_NOT_ERASED + ("" if current else " (superseded)")


def view(res: ApplyResult, current: bool) -> ApplyRowView:
    m = res.metrics
    acc = m.accuracy
    retain = _pct(acc.retain_accuracy)
    if acc.base_retain_accuracy is not None:
        retain += f" (base {_pct(acc.base_retain_accuracy)})"
    relearn = "-"
    if m.relearn is not None:
        relearn = f"{m.relearn.model.steps} steps"
    depth = "-"
    if m.depth is not None:
        d = m.depth
        depth = f"relearn ratio {d.relearn_ratio:.2f} ({d.relearn_steps:g} steps)"
        if d.probe_auc_gap is not None:
            depth += f", probe AUC gap {d.probe_auc_gap:+.3f}"
    by = f"{res.applied_by} ({res.applied_by_role})" if res.applied_by else "in-process"
    return ApplyRowView(
        id=res.id,
        model=res.model,
        phase=res.phase,
        outcome=res.outcome,
        verdict="passed" if res.verdict.passed else "failed",
        reasons=tuple(res.verdict.reasons),
        state=_state(res, current),
        requests=", ".join(res.request_ids),
        forget=_pct(acc.forget_accuracy),
        retain=retain,
        relearn=relearn,
        depth=depth,
        by=by,
        at=res.finished_at.strftime("%Y-%m-%d %H:%M") if res.finished_at else "",
    )


def apply_rows(lt: Lethe, models: list[str], *, limit: int = 20) -> list[ApplyRowView]:
    """The latest ``limit`` applies of ``models``, newest first."""
    out: list[ApplyRowView] = []
    for name in models:
        rs = lt.applies(name)
        published = [r for r in rs if r.passed]
        current = published[-1].id if published else None
        out.extend(view(r, r.id == current) for r in rs)
    out.sort(key=lambda v: v.at, reverse=True)
    return out[:limit]


def apply_summary(res: ApplyResult) -> str:
    """One line on what an apply or erase did (the message after the form)."""
    parts = []
    for r in (res, res.erase) if res.erase is not None else (res,):
        v = view(r, True)
        line = f"{r.phase} {r.id}: {v.verdict}, {v.state}; forget {v.forget}, retain {v.retain}"
        if v.depth != "-":
            line += f"; {v.depth}"
        if v.reasons:
            line += "; " + "; ".join(v.reasons)
        parts.append(line)
    return " | ".join(parts)


def download(data: bytes, filename: str, media_type: str) -> Response:
    """An attachment (never rendered in the console's origin)."""
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Content-Security-Policy": _DOWNLOAD_CSP,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }
    return Response(data, media_type=media_type, headers=headers)


def report_bytes(lt: Lethe, fmt: str) -> bytes:
    """The project's auditor bundle (``zip``), or its verified report (``html``, ``pdf``)
    built by ``lethe_audit.report`` with the log's own keys."""
    with tempfile.TemporaryDirectory(prefix="lethe-console-") as tmp:
        path = lt.export_bundle(Path(tmp) / "bundle.zip")
        if fmt == "zip":
            return path.read_bytes()
        from lethe_audit.report import build_report

        report = build_report(path, lt.verifiers(), origin=lt.log.origin())
        out: Any = report.to_pdf() if fmt == "pdf" else report.to_html().encode("utf-8")
        return bytes(out)
