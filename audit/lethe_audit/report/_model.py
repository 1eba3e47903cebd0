"""The report model: one JSON-ready dict that the HTML, PDF and JSON reports are made from."""

from __future__ import annotations

import base64
import copy
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from lethe_audit._version import __version__
from lethe_audit.errors import MetricsError, VerificationError
from lethe_audit.note import Verifier
from lethe_audit.report import _metrics
from lethe_audit.report._read import AttachmentFile, BundleContents, Inclusion, inclusions
from lethe_audit.statements import (
    ApplyOutcome,
    EventType,
    LifecycleEvent,
    Phase,
    RequestStatus,
    UnlearningAttestation,
    VariantAttestation,
    parse_rfc3339,
    rfc3339,
)


class VerifiedDocument:
    """What a report and a receipt page share: the JSON-ready ``data`` and the verification
    ``error`` (``None`` when the bundle or receipt verified)."""

    data: Mapping[str, Any]
    error: VerificationError | None

    @property
    def passed(self) -> bool:
        """True when verification passed."""
        return self.error is None

    @property
    def headline(self) -> str:
        """The first line: the verification result."""
        return str(self.data["headline"])

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the document model (plain JSON types)."""
        return copy.deepcopy(dict(self.data))


REPORT_FORMAT = "lethe.report.v1"
FIGURES_EVENT = EventType.APPLY_FIGURES
EXPORT_EVENT = EventType.MODEL_EXPORTED
#: Figure kinds the apply step writes, in display order, with their captions.
FIGURE_KINDS = {
    "alpha_summary": "Share of each filtered layer's channels that each class suppresses (α)",
    "channel_overlap": "Overlap of the suppressed channel sets between classes",
}
#: Log entries listed one by one in the timeline (larger logs get counts only).
TIMELINE_LIMIT = 500
#: Checkpoints listed one by one (the newest ones).
CHECKPOINT_LIMIT = 20

_PREFIX = re.compile(r"^(entry \d+|checkpoint at size \d+|checkpoint line \d+): ")


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _t(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


def _days(delta_seconds: float) -> float:
    return round(delta_seconds / 86400, 2)


def error_dict(e: VerificationError | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {
        "type": type(e).__name__,
        "message": str(e),
        "index": e.index,
        "size": e.size,
    }


def headline(error: VerificationError | None, located: VerificationError | None, size: int) -> str:
    """The report's first line."""
    if error is None:
        return (
            f"Verification passed: all {size} log entries, every checkpoint and every signature "
            "verified with the trusted key(s)."
        )
    fault = located if located is not None else error
    where = None
    if fault.index is not None:
        where = f"entry {fault.index}"
    elif fault.size is not None:
        where = f"the checkpoint at size {fault.size}"
    why = _PREFIX.sub("", str(fault))
    text = "Verification FAILED" + (f" at {where}" if where else "") + f": {why}"
    if located is not None:
        text += f" (first error: {error})"
    return text + ". Nothing below is trustworthy."


def _deadline(r: dict[str, Any], now: datetime) -> dict[str, Any]:
    due = _t(r["due_at"])
    closed_at = r["applied_at"] or r["rejected_at"]
    closed = _t(closed_at)
    if due is None:
        return {"state": "unknown", "days": None}
    if closed is not None:
        late = (closed - due).total_seconds()
        if late > 0:
            return {"state": "late", "days": _days(late)}
        return {"state": "met", "days": _days(-late)}
    left = (due - now).total_seconds()
    if left < 0:
        return {"state": "overdue", "days": _days(-left)}
    return {"state": "open", "days": _days(left)}


def _new_request(rid: str) -> dict[str, Any]:
    return {
        "id": rid,
        "status": "unknown",
        "model": None,
        "classes": [],
        "legal_basis": None,
        "subject_commitment": None,
        "received_at": None,
        "due_at": None,
        "approved_at": None,
        "applied_at": None,
        "rejected_at": None,
        "shredded_at": None,
        "apply_index": None,
        "erased_at": None,
        "erase_index": None,
        "erase_indexes": [],
        "phase": None,
        "covered_by": [],
        "failed_applies": [],
        "events": [],
    }


def _event_summary(p: LifecycleEvent) -> str:
    d = dict(p.details or {})
    parts = []
    if p.request_id:
        parts.append(p.request_id)
    for key in ("model", "classes", "legal_basis", "variant", "apply_id", "log_index"):
        if key in d:
            parts.append(f"{key}={d[key]}")
    return " ".join(str(x) for x in parts)


def _apply_entry(index: int, p: UnlearningAttestation) -> dict[str, Any]:
    """One unlearning attestation as the report shows it (inclusion and figures added later)."""
    policy = p.policy.to_dict()
    # Reasons older versions logged with Python hints read in words.
    policy["failures"] = [_metrics.in_words(f) for f in policy["failures"]]
    phase = p.phase.value
    return {
        "index": index,
        "outcome": p.outcome,
        "phase": phase,
        "phase_label": phase_label(phase, p.outcome),
        "erase": None if p.erase is None else dict(p.erase),
        "starts_from": None if p.starts_from is None else {**dict(p.starts_from), "index": None},
        "applied_at": p.applied_at,
        "model": p.model.to_dict(),
        "filter_bank_digest": p.filter_bank_digest,
        "method": p.method.to_dict(),
        "preprocessing": _preprocessing(p),
        "onnx": None if p.onnx is None else p.onnx.to_dict(),
        "forgotten_classes": list(p.forgotten_classes),
        "request_ids": [q.id for q in p.requests],
        "policy": policy,
        "metrics": _metrics.view(p.metrics, policy, phase=phase),
        "inclusion": None,
        "figures": [],
        "exports": [],
    }


def _preprocessing(p: UnlearningAttestation) -> dict[str, Any] | None:
    """How the model is fed, as the attestation records it (``None`` for older statements)."""
    pre = getattr(p, "preprocessing", None)
    return dict(pre) if isinstance(pre, Mapping) else None


def _cover(index: int, p: UnlearningAttestation, req: Callable[[str], dict[str, Any]]) -> None:
    """What an attestation says about each request it lists (applied, erased or failed)."""
    for q in p.requests:
        r = req(q.id)
        r["classes"] = list(q.classes)
        r["legal_basis"] = q.legal_basis
        r["subject_commitment"] = q.subject_commitment
        r["received_at"] = q.received_at
        r["due_at"] = q.due_at
        r["approved_at"] = q.approved_at
        r["model"] = p.model.name
        if p.outcome == ApplyOutcome.APPLIED and p.phase == Phase.ERASE:
            r["erase_indexes"].append(index)
            if r["erase_index"] is None:
                r["erase_index"] = index
                r["erased_at"] = p.applied_at
            r["status"] = RequestStatus.APPLIED.value
        elif p.outcome == ApplyOutcome.APPLIED:
            r["covered_by"].append(index)
            if r["apply_index"] is None:
                r["apply_index"] = index
                r["applied_at"] = p.applied_at
            r["status"] = RequestStatus.APPLIED.value
        else:
            r["failed_applies"].append(index)
            if r["status"] != RequestStatus.APPLIED:
                r["status"] = RequestStatus.FAILED.value


class _Walk:
    """What one pass over the entries collects: requests by id, applies, figure events, the
    timeline, counts by kind and unreadable entries."""

    def __init__(self) -> None:
        self.requests: dict[str, dict[str, Any]] = {}
        self.applies: list[dict[str, Any]] = []
        self.figure_events: list[tuple[int, LifecycleEvent]] = []
        self.export_events: list[tuple[int, LifecycleEvent]] = []
        self.variants: list[tuple[int, VariantAttestation]] = []
        self.timeline: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.unreadable: list[dict[str, Any]] = []

    def req(self, rid: str) -> dict[str, Any]:
        if rid not in self.requests:
            self.requests[rid] = _new_request(rid)
        return self.requests[rid]

    def entry(self, index: int, p: Any, problem: str | None) -> None:
        if p is None:
            self.counts["unreadable"] += 1
            self.unreadable.append({"index": index, "problem": problem})
        elif isinstance(p, LifecycleEvent):
            self.event(index, p)
        elif isinstance(p, UnlearningAttestation):
            self.attestation(index, p)
        elif isinstance(p, VariantAttestation):
            self.counts["attestation variant"] += 1
            self.variants.append((index, p))
            self.timeline.append(
                {
                    "index": index,
                    "kind": f"variant.{p.variant}",
                    "at": p.exported_at,
                    "summary": f"model={p.model.name} source={dict(p.source).get('index')}",
                }
            )

    def event(self, index: int, p: LifecycleEvent) -> None:
        self.counts[f"event {p.event}"] += 1
        self.timeline.append(
            {"index": index, "kind": p.event, "at": p.at, "summary": _event_summary(p)}
        )
        if p.event == FIGURES_EVENT:
            self.figure_events.append((index, p))
        elif p.event == EXPORT_EVENT:
            self.export_events.append((index, p))
        if p.request_id is not None and p.event.startswith("request."):
            r = self.req(p.request_id)
            r["events"].append({"index": index, "event": p.event, "at": p.at})
            _request_event(r, p)

    def attestation(self, index: int, p: UnlearningAttestation) -> None:
        self.counts[f"attestation {p.outcome}"] += 1
        self.timeline.append(
            {
                "index": index,
                "kind": f"unlearning.{p.outcome}",
                "at": p.applied_at,
                "summary": f"model={p.model.name} classes={list(p.forgotten_classes)} "
                f"requests={len(p.requests)}",
            }
        )
        self.applies.append(_apply_entry(index, p))
        _cover(index, p, self.req)


def _request_event(r: dict[str, Any], p: LifecycleEvent) -> None:
    """What one ``request.*`` event says about its request."""
    d = dict(p.details or {})
    if p.event == EventType.REQUEST_RECEIVED:
        r["received_at"] = p.at
        r["status"] = RequestStatus.RECEIVED.value
        r["model"] = d.get("model", r["model"])
        if isinstance(d.get("classes"), list):
            r["classes"] = [c for c in d["classes"] if isinstance(c, int)]
        r["legal_basis"] = d.get("legal_basis", r["legal_basis"])
        r["subject_commitment"] = d.get("subject_commitment", r["subject_commitment"])
        r["due_at"] = d.get("due_at", r["due_at"])
    elif p.event == EventType.REQUEST_APPROVED:
        r["approved_at"] = p.at
        if r["status"] in (RequestStatus.RECEIVED, RequestStatus.FAILED, "unknown"):
            r["status"] = RequestStatus.APPROVED.value
    elif p.event == EventType.REQUEST_REJECTED:
        r["rejected_at"] = p.at
        r["status"] = RequestStatus.REJECTED.value
    elif p.event == EventType.REQUEST_SHREDDED:
        r["shredded_at"] = p.at


def build(
    contents: BundleContents,
    *,
    bundle_name: str,
    verifiers: Sequence[Verifier],
    error: VerificationError | None,
    located: VerificationError | None,
    now: datetime,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The report dict, and the bytes of the authenticated figures (keyed by attachment path)."""
    warnings: list[str] = []
    if contents.manifest_problem:
        warnings.append(contents.manifest_problem)
    warnings.extend(contents.checkpoint_problems)
    walk = _Walk()
    for e in contents.entries:
        walk.entry(e.index, e.predicate, e.problem)
    applies = walk.applies
    # Inclusion proofs of every attestation against the latest trusted checkpoint.
    proofs = inclusions(contents, [a["index"] for a in applies])
    for a in applies:
        a["inclusion"] = _inclusion_dict(proofs[a["index"]])
    figures, attachment_rows = _figures(contents, applies, walk.figure_events, warnings)
    _link_phases(applies)
    _link_exports(applies, walk, warnings)
    requests = list(walk.requests.values())
    _finish_requests(requests, applies, now)
    warnings += _apply_warnings(applies, walk.unreadable)
    size = len(contents.entries)
    manifest = contents.manifest
    doc: dict[str, Any] = {
        "headline": headline(error, located, size),
        "format": REPORT_FORMAT,
        "generator": f"lethe-audit {__version__}",
        "generated_at": rfc3339(now.replace(microsecond=0)),
        "bundle": {
            "name": PurePosixPath(bundle_name).name,
            "created_at": manifest.created_at if manifest is not None else None,
            "generator": manifest.generator if manifest is not None else None,
        },
        "verification": _verification(error, located, verifiers),
        "summary": _summary(requests, applies),
        "log": _log(contents, walk, verifiers, attachment_rows),
        "requests": requests,
        "applies": applies,
        "remeasure": None,
        "definitions": definitions(),
        "warnings": warnings,
    }
    return doc, figures


def _finish_requests(
    requests: list[dict[str, Any]], applies: list[dict[str, Any]], now: datetime
) -> None:
    """Each request's mask/erase comparison, phase and deadline (as of ``now``)."""
    by_index = {a["index"]: a for a in applies}
    for r in requests:
        mask = by_index.get(r["apply_index"]) if r["apply_index"] is not None else None
        erase = by_index.get(r["erase_index"]) if r["erase_index"] is not None else None
        r["comparison"] = comparison(mask, erase)
        if r["erase_index"] is not None:
            r["phase"] = "erased"
        elif r["apply_index"] is not None:
            r["phase"] = "masked"
        else:
            r["phase"] = None
        r["deadline"] = _deadline(r, now)
        r["overdue"] = r["deadline"]["state"] in ("late", "overdue")


def _summary(requests: list[dict[str, Any]], applies: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "requests": len(requests),
        "applied": sum(r["status"] == RequestStatus.APPLIED for r in requests),
        "failed": sum(r["status"] == RequestStatus.FAILED for r in requests),
        "rejected": sum(r["status"] == RequestStatus.REJECTED for r in requests),
        "pending": sum(
            r["status"] in (RequestStatus.RECEIVED, RequestStatus.APPROVED) for r in requests
        ),
        "overdue": sum(r["overdue"] for r in requests),
        "shredded": sum(r["shredded_at"] is not None for r in requests),
        "masked_only": sum(r["phase"] == "masked" for r in requests),
        "erased": sum(r["phase"] == "erased" for r in requests),
        "applies": sum(a["outcome"] == ApplyOutcome.APPLIED for a in applies),
        "failed_applies": sum(a["outcome"] == ApplyOutcome.FAILED for a in applies),
    }


def _apply_warnings(applies: list[dict[str, Any]], unreadable: list[dict[str, Any]]) -> list[str]:
    warnings = []
    for a in applies:
        if a["metrics"].get("structured") and a["metrics"]["recheck"]["agrees_with_log"] is False:
            warnings.append(
                f"entry {a['index']}: the logged verdict (passed={a['policy']['passed']}) does "
                "not follow from the logged metrics and thresholds"
            )
    for a in applies:
        sf = a["starts_from"]
        if sf is not None and sf["index"] is None:
            warnings.append(
                f"entry {a['index']}: the erase starts from apply {sf['apply_id']}, whose "
                "phase-1 (masked) model is not an applied attestation in this bundle"
            )
    for u in unreadable:
        warnings.append(f"entry {u['index']} cannot be read: {u['problem']}")
    return warnings


def _verification(
    error: VerificationError | None,
    located: VerificationError | None,
    verifiers: Sequence[Verifier],
) -> dict[str, Any]:
    return {
        "passed": error is None,
        "error": error_dict(error),
        "located": error_dict(located),
        "trusted_keys": [
            {"name": v.name, "key_hint": v.key_hint, "vkey": v.vkey} for v in verifiers
        ],
    }


def _log(
    contents: BundleContents,
    walk: _Walk,
    verifiers: Sequence[Verifier],
    attachments: list[dict[str, Any]],
) -> dict[str, Any]:
    latest = contents.latest
    cps = contents.checkpoints
    manifest = contents.manifest
    trusted_vkeys = {v.vkey for v in verifiers}
    return {
        "origin": manifest.origin if manifest is not None else None,
        "size": len(contents.entries),
        "root": b64(latest.root) if latest is not None else None,
        "checkpoint_size": latest.size if latest is not None else None,
        "checkpoints": {
            "count": len(cps),
            "trusted": sum(c.trusted for c in cps),
            "listed": [
                {"size": c.size, "root": b64(c.root), "trusted": c.trusted}
                for c in cps[-CHECKPOINT_LIMIT:]
            ],
        },
        "keys": [_key_row(k, trusted_vkeys) for k in contents.keys],
        "entry_counts": dict(sorted(walk.counts.items())),
        "timeline": walk.timeline[:TIMELINE_LIMIT],
        "timeline_truncated": len(walk.timeline) > TIMELINE_LIMIT,
        "attachments": attachments,
    }


def _key_row(k: Mapping[str, Any], trusted_vkeys: set[str]) -> dict[str, Any]:
    return {
        "name": k.get("name"),
        "key_id": k.get("key_id"),
        "vkey": k.get("vkey"),
        "status": k.get("status"),
        "added_at_size": k.get("added_at_size"),
        "retired_at_size": k.get("retired_at_size"),
        "trusted": k.get("vkey") in trusted_vkeys,
    }


#: Shown beside every verdict of a phase-1 apply: its classes are masked, not yet erased.
MASKED_LABEL = "masked, not yet erased"
ERASED_LABEL = "erased"


def phase_label(phase: str, outcome: str) -> str:
    """How an apply's phase reads beside its verdict."""
    if phase == Phase.ERASE:
        return ERASED_LABEL if outcome == ApplyOutcome.APPLIED else "erase failed"
    return MASKED_LABEL if outcome == ApplyOutcome.APPLIED else "mask failed"


def comparison(
    mask: Mapping[str, Any] | None, erase: Mapping[str, Any] | None
) -> list[dict[str, Any]] | None:
    """Mask (phase 1) and erase (phase 2) side by side, metric by metric (``None`` unless the
    request has both)."""
    if mask is None or erase is None:
        return None
    rows: dict[str, dict[str, Any]] = {}
    # in the erase table's row order; the row keys are the phases' names
    for phase, a in ((Phase.ERASE.value, erase), (Phase.MASK.value, mask)):
        m = a["metrics"]
        if not m.get("structured"):
            continue
        for row in m["rows"]:
            out = rows.setdefault(
                row["metric"],
                {
                    "metric": row["metric"],
                    "label": row["label"],
                    "unit": row["unit"],
                    "meaning": row["meaning"],
                    "good": row["good"],
                    "direction": row["direction"],
                    "before": row["before"],
                    "mask": None,
                    "erase": None,
                    "reference": row["reference"],
                },
            )
            out[phase] = row["after"]
            if out["reference"] is None:
                out["reference"] = row["reference"]
    return list(rows.values())


def definitions() -> list[dict[str, str]]:
    """Every metric's one-line meaning and good direction (the report's glossary)."""
    from lethe_audit.metrics import METRIC_DEFINITIONS

    return [
        {"metric": d.key, "label": d.label, "meaning": d.meaning, "direction": d.direction}
        for d in METRIC_DEFINITIONS
    ]


def _link_phases(applies: list[dict[str, Any]]) -> None:
    """Resolve each erase apply's ``starts_from`` to the phase-1 entry whose folded model it
    names (the digest is the link; the apply id is the operator's name for it)."""
    by_digest: dict[str, int] = {}
    for a in applies:
        folded = a["model"].get("folded_digest")
        if a["phase"] == Phase.MASK and a["outcome"] == ApplyOutcome.APPLIED and folded:
            by_digest.setdefault(str(folded).removeprefix("sha256:"), a["index"])
    for a in applies:
        sf = a["starts_from"]
        if sf is not None:
            sf["index"] = by_digest.get(str(sf.get("model_sha256")))


def _link_exports(applies: list[dict[str, Any]], walk: _Walk, warnings: list[str]) -> None:
    """Attach each logged ``model.exported`` event (an fp32 or int8 file and, for int8, its own
    accuracies) to the applied attestation it exported: the one its ``apply_id`` names through
    that apply's ``apply.figures`` event, else the latest applied attestation of its model
    logged before it (an export is of the model's current apply)."""
    by_apply_id: dict[str, int] = {}
    for _index, ev in walk.figure_events:
        d = ev.details if isinstance(ev.details, Mapping) else {}
        if isinstance(d.get("apply_id"), str) and isinstance(d.get("log_index"), int):
            by_apply_id[d["apply_id"]] = d["log_index"]
    by_index = {a["index"]: a for a in applies if a["outcome"] == ApplyOutcome.APPLIED}
    for index, ev in walk.export_events:
        d = dict(ev.details) if isinstance(ev.details, Mapping) else {}
        target = by_index.get(by_apply_id.get(str(d.get("apply_id")), -1))
        if target is None:
            earlier = [
                a for i, a in by_index.items() if i < index and a["model"]["name"] == d.get("model")
            ]
            target = earlier[-1] if earlier else None
        if target is None:
            warnings.append(f"entry {index}: a model export with no applied attestation before it")
            continue
        target["exports"].append(
            {
                "index": index,
                "at": ev.at,
                "variant": _plain_text(d.get("variant")),
                "sha256": _plain_text(d.get("sha256")),
                "forget_accuracy": _share(d.get("forget_accuracy")),
                "retain_accuracy": _share(d.get("retain_accuracy")),
                "attested": False,
            }
        )
    for index, v in walk.variants:
        _link_variant(index, v, by_index, warnings)


def _link_variant(
    index: int,
    v: VariantAttestation,
    by_index: Mapping[int, dict[str, Any]],
    warnings: list[str],
) -> None:
    """A variant attestation joins the applied attestation its ``source`` names (by index and
    fp32 file digest, both signed)."""
    from lethe_audit.metrics import MetricsResult

    source = dict(v.source)
    target = by_index.get(source.get("index", -1))
    if target is None or (target.get("onnx") or {}).get("sha256") != source.get("onnx_sha256"):
        warnings.append(
            f"entry {index}: the {v.variant} model's source (entry {source.get('index')}) is not "
            "an applied attestation of its fp32 file in this bundle"
        )
        return
    forget = retain = None
    try:
        acc = MetricsResult.from_dict(v.metrics).accuracy
        forget, retain = acc.forget_accuracy, acc.retain_accuracy
    except (MetricsError, TypeError, ValueError, KeyError):
        pass
    target["exports"].append(
        {
            "index": index,
            "at": v.exported_at,
            "variant": v.variant,
            "sha256": v.onnx.sha256,
            "forget_accuracy": forget,
            "retain_accuracy": retain,
            "attested": True,
            "passed": bool(v.policy.passed),
        }
    )


def _plain_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _share(value: Any) -> float | None:
    """A logged accuracy, or ``None`` unless it is a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0.0 <= value <= 1.0 else None


def _inclusion_dict(inc: Inclusion) -> dict[str, Any]:
    return {
        "verified": inc.verified,
        "checkpoint_size": inc.size,
        "root": b64(inc.root),
        "proof": [b64(h) for h in inc.proof],
        "message": inc.message,
    }


def _figure_kind(name: str) -> str:
    for kind in FIGURE_KINDS:
        if name.endswith(f".{kind}.png"):
            return kind
    return "other"


def _figures(
    contents: BundleContents,
    applies: list[dict[str, Any]],
    events: list[tuple[int, LifecycleEvent]],
    warnings: list[str],
) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """Attach each attachment whose digest a logged ``apply.figures`` event names to its apply."""
    by_index = {a["index"]: a for a in applies}
    claims = _claims(events, by_index, warnings)
    images: dict[str, bytes] = {}
    rows = []
    for f in contents.attachments:
        claim = claims.get(f.path)
        row = _attachment_row(f, claim)
        rows.append(row)
        if row["authenticated"] and claim is not None:
            figure = _figure(f, claim[0])
            by_index[claim[1]]["figures"].append(figure)
            if figure["embedded"] and f.data is not None:
                images[f.path] = f.data
    order = list(FIGURE_KINDS)
    for a in applies:
        a["figures"].sort(
            key=lambda g: (order.index(g["kind"]) if g["kind"] in order else 99, g["name"])
        )
    for row in rows:
        if not row["authenticated"]:
            warnings.append(f"attachment {row['path']} is unauthenticated: {row['reason']}")
    files = {a.path for a in contents.attachments}
    for path in sorted(set(claims) - files):
        warnings.append(f"entry {claims[path][0]} logs figure {path}, which is not in the bundle")
    return images, rows


def _claims(
    events: list[tuple[int, LifecycleEvent]],
    by_index: Mapping[int, dict[str, Any]],
    warnings: list[str],
) -> dict[str, tuple[int, int, str]]:
    """Attachment path -> (event index, apply index, digest) as the figure events log them."""
    claims: dict[str, tuple[int, int, str]] = {}
    for index, ev in events:
        d = ev.details if isinstance(ev.details, Mapping) else {}
        log_index = d.get("log_index")
        named = d.get("attachments")
        if not isinstance(log_index, int) or not isinstance(named, Mapping):
            warnings.append(
                f"entry {index}: an {FIGURES_EVENT} event without log_index/attachments"
            )
            continue
        if log_index not in by_index or by_index[log_index]["outcome"] != ApplyOutcome.APPLIED:
            warnings.append(
                f"entry {index}: {FIGURES_EVENT} names entry {log_index}, which is not an "
                "applied attestation in this bundle"
            )
            continue
        for name, digest in named.items():
            if not isinstance(name, str) or not isinstance(digest, str):
                continue
            path = name if name.startswith("attachments/") else f"attachments/{name}"
            claims[path] = (index, log_index, digest.removeprefix("sha256:"))
    return claims


def _attachment_row(f: AttachmentFile, claim: tuple[int, int, str] | None) -> dict[str, Any]:
    """One attachment of the log summary: authenticated when a figure event logs its digest."""
    reason: str | None = None
    if f.sha256 is None:
        reason = "the file is missing from the bundle"
    elif claim is None:
        reason = f"no logged {FIGURES_EVENT} event names this file"
    elif claim[2] != f.sha256:
        reason = f"its digest differs from the one logged in entry {claim[0]}"
    ok = reason is None and claim is not None
    return {
        "path": f.path,
        "sha256": f.sha256,
        "bytes": f.size,
        "media_type": f.media_type,
        "authenticated": ok,
        "apply_index": claim[1] if ok and claim is not None else None,
        "event_index": claim[0] if claim is not None else None,
        "reason": reason,
    }


def _figure(f: AttachmentFile, event_index: int) -> dict[str, Any]:
    name = PurePosixPath(f.path).name
    kind = _figure_kind(name)
    return {
        "path": f.path,
        "name": name,
        "kind": kind,
        "caption": FIGURE_KINDS.get(kind, name),
        "sha256": f.sha256,
        "media_type": f.media_type,
        "event_index": event_index,
        "embedded": f.data is not None and f.media_type in ("image/png", "image/jpeg"),
    }
