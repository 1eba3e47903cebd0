"""The receipt page: one deletion receipt explained to its data subject in plain language.

It shows only the subject's own request. An attestation covers every request of one apply;
the others' ids, commitments and classes never reach the page (nor does the union of
forgotten classes, which would reveal them).
"""

from __future__ import annotations

import binascii
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from lethe_audit._extras import install_line
from lethe_audit._version import __version__
from lethe_audit.errors import LetheAuditError, MetricsError, ReportError, VerificationError
from lethe_audit.note import Verifier
from lethe_audit.report import _fmt, _read
from lethe_audit.report._metrics import in_words
from lethe_audit.report._model import VerifiedDocument, _deadline, error_dict, phase_label
from lethe_audit.report._view import Document
from lethe_audit.statements import (
    ApplyOutcome,
    EventType,
    LifecycleEvent,
    Phase,
    PolicyVerdict,
    RequestRecord,
    UnlearningAttestation,
    VariantAttestation,
    hmac_commitment,
    parse_predicate,
    rfc3339,
)

RECEIPT_PAGE_FORMAT = "lethe.receipt-page.v1"

_EVENT_WORDS = {
    EventType.REQUEST_RECEIVED: "was received",
    EventType.REQUEST_APPROVED: "was approved",
    EventType.REQUEST_REJECTED: "was rejected",
    EventType.REQUEST_SHREDDED: "had the key of its subject commitment destroyed "
    "(crypto-shredding)",
    EventType.REQUEST_SUPERSEDED: "is covered by a newer version of the model",
    # model versions and rollbacks (events of a model, logged without a request id)
    EventType.MODEL_SUPERSEDED: "is inherited by a retrained version of the model, which must "
    "forget its classes too",
    EventType.MODEL_ATTESTED_WITHOUT: "is covered by a retrained version of the model, measured "
    "not to recognise its classes",
    EventType.APPLY_ROLLED_BACK: "is covered by an earlier deletion of the model published "
    "again (a rollback that forgets no less)",
}


@dataclass(frozen=True)
class ReceiptPage(VerifiedDocument):
    """A rendered receipt: ``data`` (JSON-ready) and the verification ``error`` (or None)."""

    data: Mapping[str, Any] = field(repr=False)
    error: VerificationError | None

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, ensure_ascii=False) + "\n"

    def document(self) -> Document:
        """The page on the report's typed view model: what the HTML and the text both show."""
        from lethe_audit.report._page_receipt import receipt_document

        return receipt_document(self.data)

    def to_html(self) -> str:
        """A self-contained HTML page (inline CSS and chart, no scripts, no fetches)."""
        from lethe_audit.report._html import RECEIPT_CSS, render_document

        return render_document(self.document(), extra_css=RECEIPT_CSS)

    def to_text(self) -> str:
        """The page as plain text (what ``lethe-audit receipt show`` prints)."""
        from lethe_audit.report._page_receipt import document_text

        return document_text(self.document())

    def write(self, out: str | os.PathLike[str]) -> Path:
        """Write the HTML page (or JSON / text by the suffix ``.json`` / ``.txt``)."""
        from lethe_audit.report._build import write_atomic

        path = Path(out)
        suffix = path.suffix.lower()
        text = (
            self.to_json()
            if suffix == ".json"
            else self.to_text()
            if suffix == ".txt"
            else self.to_html()
        )
        write_atomic(path, text.encode("utf-8"))
        return path


def _pick(
    att: UnlearningAttestation,
    request_id: str | None,
    subject: str | None,
    key: bytes | None,
    hint: str | None,
) -> RequestRecord:
    if request_id is None and hint is not None and len(att.requests) > 1:
        # `lethe` names receipt files after their request: <request id>.tlog-proof
        request_id = hint if any(r.id == hint for r in att.requests) else None
    if request_id is not None:
        for r in att.requests:
            if r.id == request_id:
                return r
        raise ReportError(
            f"request {request_id} is not in this receipt: check the request id you were given"
        )
    if len(att.requests) == 1:
        return att.requests[0]
    if subject is not None and key is not None:
        mine = [r for r in att.requests if r.subject_commitment == hmac_commitment(key, subject)]
        if len(mine) == 1:
            return mine[0]
        raise ReportError(
            "no request in this receipt matches the identifier and key given: check both, or "
            "name your request with --request ID"
        )
    raise ReportError(
        f"this receipt covers {len(att.requests)} requests of one change to the model: name "
        "yours with --request ID (the id you were given when you filed it), or give "
        "--subject and --subject-key to find it"
    )


def _own_metrics(att: UnlearningAttestation, classes: Sequence[int]) -> dict[str, Any]:
    """Only the subject's own classes, the retained classes' accuracy, and the rule."""
    return _metrics_of(att.policy, att.metrics, att.phase.value, classes)


def _metrics_of(
    policy: PolicyVerdict, metrics: Mapping[str, Any], phase: str, classes: Sequence[int]
) -> dict[str, Any]:
    """:func:`_own_metrics` of a verdict and metrics (an unlearning or a variant attestation's)."""
    from lethe_audit.metrics import MetricsResult

    thr = dict(policy.thresholds)
    out: dict[str, Any] = {
        "classes": [],
        "samples": None,
        "retain_before": None,
        "retain_after": None,
        "max_forget_accuracy": thr.get("max_forget_accuracy"),
        "max_retain_drop": thr.get("max_retain_drop"),
        "passed": policy.passed,
        "phase": phase,
        "min_relearn_ratio": thr.get("min_relearn_ratio"),
        "max_probe_auc_gap": thr.get("max_probe_auc_gap"),
        "depth": None,
        # A reason that lists class ids may name other subjects' classes: summarise it.
        "failures": [
            in_words(f) if "classes [" not in f else "a check on the forgotten classes as a group"
            for f in policy.failures
        ],
    }
    try:
        result = MetricsResult.from_dict(metrics)
    except (MetricsError, TypeError, ValueError):
        return out
    acc = result.accuracy
    if result.depth is not None:
        d = result.depth
        out["depth"] = {
            "relearn_steps": d.relearn_steps,
            "relearn_ratio": d.relearn_ratio,
            "probe_auc_gap": d.probe_auc_gap,
            "reference_relearn_steps": d.reference.relearn_steps,
            "reference_kind": d.reference.kind,
            "reference_created_at": d.reference.created_at,
        }
    out["samples"] = result.samples
    out["retain_before"] = acc.base_retain_accuracy
    out["retain_after"] = acc.retain_accuracy
    for c in classes:
        if 0 <= c < result.num_classes:
            out["classes"].append(
                {
                    "class": c,
                    "samples": acc.class_counts[c],
                    "before": None if acc.base_per_class is None else acc.base_per_class[c],
                    "after": acc.per_class[c],
                    "forgotten": True,
                }
            )
    return out


def _definitions(m: Mapping[str, Any]) -> list[dict[str, str]]:
    """The meaning of each number the page shows (from lethe_audit.metrics' one table)."""
    from lethe_audit.metrics import metric_definition

    keys = ["forget_accuracy", "retain_accuracy"]
    if m.get("depth"):
        keys += ["relearn_steps", "relearn_ratio"]
        if m["depth"]["probe_auc_gap"] is not None:
            keys.append("probe_auc_gap")
    out = []
    for k in keys:
        d = metric_definition(k)
        if d is not None:
            out.append({"label": d.label, "meaning": d.meaning, "direction": d.direction})
    return out


def _classes_phrase(classes: Sequence[int]) -> str:
    if len(classes) == 1:
        return f"class {classes[0]}"
    return "classes " + ", ".join(map(str, classes[:-1])) + f" and {classes[-1]}"


def build_receipt_page(
    receipt: bytes | str | os.PathLike[str],
    verifiers: Sequence[str | Verifier] | str | Verifier,
    *,
    request_id: str | None = None,
    subject: str | None = None,
    subject_key: str | None = None,
    origin: str | None = None,
    now: datetime | None = None,
    source_receipt: bytes | str | os.PathLike[str] | None = None,
) -> ReceiptPage:
    """Verify a deletion receipt and explain it to its data subject.

    ``receipt`` is a path (``os.PathLike``) or the receipt's text/bytes. ``request_id`` picks
    the subject's request when the receipt's attestation covers several (with only one it is
    taken; a file named ``<request id>.tlog-proof``, as ``lethe`` writes them, names its own).
    ``subject`` and ``subject_key`` (hex) recompute the HMAC commitment and say whether it is
    this request's; neither is written to the page. A receipt that does not verify still
    yields a page that says so (``ReceiptPage.error``).

    The receipt of an int8 model (a variant attestation) gets its own page: the int8 model's
    measurements. ``source_receipt``, the receipt of the deletion it was made from (the
    subject's request receipt), adds the fp32 model's numbers beside the int8 ones and the
    request's own details; it must be the receipt of that very entry (``ReportError``).
    """
    from lethe_audit.verify import parse_receipt

    data, name = _receipt_bytes(receipt)
    key = _subject_key(subject, subject_key)
    trusted = _read.as_verifiers(verifiers)
    when = now or datetime.now(timezone.utc)
    parsed = parse_receipt(data)
    error = _verify(data, trusted, origin)
    try:
        predicate = parse_predicate(parsed.statement)
    except LetheAuditError as e:
        raise ReportError(f"the receipt's entry is not a Lethe statement: {e}") from None
    hint = PurePosixPath(name).name.split(".")[0] if name != "RECEIPT" else None
    source: tuple[int, UnlearningAttestation] | None = None
    if source_receipt is not None:
        if not isinstance(predicate, VariantAttestation):
            raise ReportError(
                "source_receipt goes with the receipt of an int8 (variant) model only"
            )
        source, source_error = _variant_source(source_receipt, predicate, trusted, origin)
        error = error or source_error
    doc = _skeleton(parsed, name, error, when)
    commitment: str | None
    if isinstance(predicate, UnlearningAttestation):
        own = _pick(predicate, request_id, subject, key, hint)
        _fill_unlearning(doc, predicate, own, when)
        commitment = own.subject_commitment
    elif isinstance(predicate, VariantAttestation):
        commitment = _fill_variant(doc, predicate, source, (request_id, subject, key, hint), when)
    elif isinstance(predicate, LifecycleEvent) and predicate.request_id is not None:
        commitment = _fill_event(doc, predicate, request_id)
    else:
        kind = predicate.event if isinstance(predicate, LifecycleEvent) else "statement"
        raise ReportError(
            f"entry {parsed.index} is a {kind} about no deletion request: not a deletion receipt"
        )
    if subject is not None and key is not None:
        matches = None if commitment is None else hmac_commitment(key, subject) == commitment
        doc["subject_check"] = {"matches": matches}
    _explain(doc, trusted[0].vkey if trusted else "VKEY")
    return ReceiptPage(data=doc, error=error)


def _verify(
    data: bytes, trusted: Sequence[Verifier], origin: str | None
) -> VerificationError | None:
    from lethe_audit.verify import verify_receipt

    try:
        verify_receipt(data, trusted, origin=origin)
    except VerificationError as e:
        return e
    return None


def _variant_source(
    source_receipt: bytes | str | os.PathLike[str],
    variant: VariantAttestation,
    trusted: Sequence[Verifier],
    origin: str | None,
) -> tuple[tuple[int, UnlearningAttestation], VerificationError | None]:
    """The source apply's receipt of a variant: verified, and about the very entry, fp32 file,
    model and requests the variant names (``ReportError`` otherwise)."""
    from lethe_audit.verify import parse_receipt

    data, _ = _receipt_bytes(source_receipt)
    parsed = parse_receipt(data)
    error = _verify(data, trusted, origin)
    index = variant.source["index"]
    try:
        p = parse_predicate(parsed.statement)
    except LetheAuditError as e:
        raise ReportError(f"the source receipt's entry is not a Lethe statement: {e}") from None
    same = (
        isinstance(p, UnlearningAttestation)
        and parsed.index == index
        and p.onnx is not None
        and p.onnx.sha256 == variant.source["onnx_sha256"]
        and p.model.name == variant.model.name
        and sorted(r.id for r in p.requests) == sorted(variant.requests)
    )
    if not same or not isinstance(p, UnlearningAttestation):
        raise ReportError(
            f"the source receipt is entry {parsed.index}, not the deletion this "
            f"{variant.variant} model was made from (entry {index}): give that entry's receipt"
        )
    return (parsed.index, p), error


def _receipt_bytes(receipt: bytes | str | os.PathLike[str]) -> tuple[bytes, str]:
    """The receipt's bytes and the name the page shows (``RECEIPT`` when given as text)."""
    if isinstance(receipt, os.PathLike):
        p = Path(receipt)
        try:
            return p.read_bytes(), p.name
        except OSError as e:
            raise ReportError(f"cannot read receipt {p.name}: {e.strerror}") from None
    data = receipt.encode("utf-8") if isinstance(receipt, str) else bytes(receipt)
    return data, "RECEIPT"


def _subject_key(subject: str | None, subject_key: str | None) -> bytes | None:
    if (subject is None) != (subject_key is None):
        raise ReportError("checking the commitment needs both the identifier and its key")
    if subject_key is None:
        return None
    try:
        key = bytes.fromhex(subject_key.strip())
    except (ValueError, binascii.Error):
        raise ReportError("the subject key must be hexadecimal") from None
    if len(key) < 16:
        raise ReportError("the subject key is too short (Lethe gives 32 bytes, 64 hex digits)")
    return key


def _skeleton(
    parsed: Any, name: str, error: VerificationError | None, when: datetime
) -> dict[str, Any]:
    """The page's dict with every key present; the kind of entry fills in the rest."""
    cp = parsed.checkpoint
    return {
        "headline": "",
        "format": RECEIPT_PAGE_FORMAT,
        "generator": f"lethe-audit {__version__}",
        "generated_at": rfc3339(when.replace(microsecond=0)),
        "receipt": {
            "name": PurePosixPath(name).name,
            "origin": cp.origin,
            "index": parsed.index,
            "checkpoint_size": cp.size,
            "root": _read_root(cp.root),
        },
        "verification": {"passed": error is None, "error": error_dict(error)},
        "kind": None,
        "outcome": None,
        "event": None,
        "request": None,
        "applied_at": None,
        "model": None,
        "metrics": None,
        "phase": None,
        "phase_label": None,
        "starts_from": None,
        "definitions": [],
        "shared": False,
        "subject_check": None,
        "sections": [],
        "commands": [],
    }


def _fill_unlearning(
    doc: dict[str, Any], p: UnlearningAttestation, own: RequestRecord, when: datetime
) -> None:
    doc["kind"] = "unlearning"
    doc["outcome"] = p.outcome
    doc["applied_at"] = p.applied_at
    doc["shared"] = len(p.requests) > 1
    doc["model"] = {
        "name": p.model.name,
        "folded_digest": p.model.folded_digest,
        "onnx_sha256": None if p.onnx is None else p.onnx.sha256,
    }
    doc["metrics"] = _own_metrics(p, own.classes)
    doc["phase"] = p.phase.value
    doc["phase_label"] = phase_label(p.phase.value, p.outcome)
    doc["starts_from"] = None if p.starts_from is None else dict(p.starts_from)
    doc["definitions"] = _definitions(doc["metrics"])
    req = own.to_dict()
    closed = p.applied_at if p.outcome == ApplyOutcome.APPLIED else None
    req["deadline"] = _deadline(
        {"due_at": own.due_at, "applied_at": closed, "rejected_at": None}, when
    )
    doc["request"] = req


def _pick_id(p: VariantAttestation, request_id: str | None, hint: str | None) -> str:
    """The subject's request id among a variant's (ids only: it carries no request details)."""
    if request_id is not None:
        if request_id not in p.requests:
            raise ReportError(
                f"request {request_id} is not in this receipt: check the request id you were given"
            )
        return request_id
    if hint is not None and hint in p.requests:
        return hint
    if len(p.requests) == 1:
        return p.requests[0]
    raise ReportError(
        f"this receipt covers {len(p.requests)} requests of one change to the model: name "
        "yours with --request ID (the id you were given when you filed it)"
    )


def _fill_variant(
    doc: dict[str, Any],
    p: VariantAttestation,
    source: tuple[int, UnlearningAttestation] | None,
    pick: tuple[str | None, str | None, bytes | None, str | None],
    when: datetime,
) -> str | None:
    """The receipt of a derived (int8) model; with ``source`` the fp32 numbers beside its
    own. Returns the subject's commitment (known only from the source)."""
    request_id, subject, key, hint = pick
    src = None if source is None else source[1]
    own = None if src is None else _pick(src, request_id, subject, key, hint)
    own_id = own.id if own is not None else _pick_id(p, request_id, hint)
    # Without the source, the variant's classes are the subject's only when it is alone.
    alone = len(p.requests) == 1
    classes = list(own.classes) if own else list(p.forgotten_classes) if alone else []
    doc["kind"] = "variant"
    doc["outcome"] = ApplyOutcome.APPLIED.value
    doc["applied_at"] = None if src is None else src.applied_at
    doc["shared"] = len(p.requests) > 1
    doc["model"] = {
        "name": p.model.name,
        "folded_digest": p.model.folded_digest,
        "onnx_sha256": p.onnx.sha256,
    }
    doc["metrics"] = _metrics_of(p.policy, p.metrics, "variant", classes)
    doc["metrics"]["forget_after"] = _forget_accuracy(p.metrics)
    fp32 = None if src is None else _own_metrics(src, classes)
    _beside(doc["metrics"], fp32)
    doc["phase"] = None if src is None else src.phase.value
    doc["phase_label"] = None if src is None else phase_label(src.phase.value, src.outcome)
    doc["definitions"] = _definitions(doc["metrics"])
    doc["variant"] = {
        "name": p.variant,
        "exported_at": p.exported_at,
        "source_index": p.source["index"],
        "source_onnx_sha256": p.source["onnx_sha256"],
        "source_shown": src is not None,
        "quantization": dict(p.quantization),
        "calibration": _calibration(p.quantization),
    }
    if own is None:
        doc["request"] = dict.fromkeys(
            ("legal_basis", "received_at", "due_at", "subject_commitment")
        ) | {"id": own_id, "classes": classes}
        return None
    req = own.to_dict()
    closed = src.applied_at if src is not None and src.outcome == ApplyOutcome.APPLIED else None
    req["deadline"] = _deadline(
        {"due_at": own.due_at, "applied_at": closed, "rejected_at": None}, when
    )
    doc["request"] = req
    return own.subject_commitment


def _calibration(q: Mapping[str, Any]) -> dict[str, Any] | None:
    """Which data calibrated the variant (validated: ``train`` or ``eval``) and how many
    images; None when its attestation predates the record."""
    source = q.get("calibration_source")
    if source is None:
        return None
    samples = q.get("calibration_samples")
    return {"source": source, "samples": samples if type(samples) is int else None}


def _forget_accuracy(metrics: Mapping[str, Any]) -> float | None:
    """The accuracy on all forgotten classes together (names no class)."""
    from lethe_audit.metrics import MetricsResult

    try:
        return MetricsResult.from_dict(metrics).accuracy.forget_accuracy
    except (MetricsError, TypeError, ValueError):
        return None


def _beside(int8: dict[str, Any], fp32: Mapping[str, Any] | None) -> None:
    """The fp32 model's numbers (``fp32_after``) beside the variant's, where known."""
    by_class = {c["class"]: c for c in (fp32 or {}).get("classes", [])}
    for c in int8["classes"]:
        c["fp32_after"] = by_class.get(c["class"], {}).get("after")
    int8["fp32_retain_after"] = None if fp32 is None else fp32.get("retain_after")
    int8["fp32_shown"] = fp32 is not None


def _fill_event(doc: dict[str, Any], p: LifecycleEvent, request_id: str | None) -> str | None:
    """A receipt of a request event (received, approved, ...); returns its commitment."""
    if request_id is not None and request_id != p.request_id:
        raise ReportError(f"this receipt is about request {p.request_id}, not {request_id}")
    d = dict(p.details or {})
    doc["kind"] = "event"
    doc["event"] = p.event
    doc["request"] = {
        "id": p.request_id,
        "classes": [c for c in d.get("classes", []) if isinstance(c, int)],
        "legal_basis": d.get("legal_basis"),
        "received_at": p.at if p.event == EventType.REQUEST_RECEIVED else None,
        "due_at": d.get("due_at"),
        "approved_at": p.at if p.event == EventType.REQUEST_APPROVED else None,
        "subject_commitment": d.get("subject_commitment"),
        "at": p.at,
    }
    commitment = d.get("subject_commitment")
    return commitment if isinstance(commitment, str) else None


def _read_root(root: bytes) -> str:
    import base64

    return base64.b64encode(root).decode("ascii")


def _section(title: str, *paragraphs: str) -> dict[str, Any]:
    return {"title": title, "paragraphs": [p for p in paragraphs if p]}


def _explain(d: dict[str, Any], vkey: str) -> None:
    """The page's headline, sections and commands in plain words."""
    d["headline"] = _headline(d)
    if d["kind"] == "unlearning":
        sections = [_what_section(d), _when_section(d)]
        sections.append(_section("How it was verified", *_verified_parts(d)))
    elif d["kind"] == "variant":
        sections = [_variant_what_section(d)]
        if d["request"].get("received_at"):
            sections.append(_when_section(d))
        sections.append(_section("How it was verified", *_variant_verified_parts(d)))
    else:
        sections = [_event_section(d)]
    sections.append(_genuine_section(d))
    d["sections"] = sections
    d["commands"] = _commands(d, vkey)


def _classes_of(req: Mapping[str, Any]) -> str:
    classes = req.get("classes") or []
    return _classes_phrase(classes) if classes else "the classes named in your request"


def _headline(d: Mapping[str, Any]) -> str:
    rid = d["request"]["id"]
    ver = d["verification"]
    if not ver["passed"]:
        return (
            f"This receipt did NOT verify: {ver['error']['message']}. Do not rely on what it "
            "says; ask the operator for a new receipt."
        )
    if d["kind"] == "variant":
        v = d["variant"]
        return (
            f"The {v['name']} version of the model that carried out your deletion request {rid} "
            f"was exported on {_fmt.when(v['exported_at'])}: it was measured and passed the "
            "same checks as the model it was made from, and this receipt verified."
        )
    if d["kind"] != "unlearning":
        word = _EVENT_WORDS.get(d["event"], f"has the event {d['event']}")
        return (
            f"Your deletion request {rid} {word} on {_fmt.when(d['request']['at'])}; this "
            "receipt verified. It is not yet a receipt of the deletion itself."
        )
    when = _fmt.when(d["applied_at"])
    if d["outcome"] == ApplyOutcome.APPLIED and d["phase"] == Phase.ERASE:
        return (
            f"Your deletion request {rid} was erased from the model's weights on {when}, and "
            "this receipt verified."
        )
    if d["outcome"] == ApplyOutcome.APPLIED:
        return (
            f"Your deletion request {rid} was carried out on {when} (masked, not yet erased): "
            "the model no longer recognises your classes, but its weights still hold them "
            "until the operator erases them. This receipt verified."
        )
    return (
        f"Your deletion request {rid} was attempted on {when} but the result did not pass its "
        "checks, so nothing was changed yet. The receipt verified."
    )


def _what_section(d: Mapping[str, Any]) -> dict[str, Any]:
    model = d["model"]["name"]
    return _section(
        "What was deleted" if d["outcome"] == ApplyOutcome.APPLIED else "What you asked to delete",
        f"Your request asked the operator to make the image classifier “{model}” forget "
        f"{_classes_of(d['request'])}. Classes appear here only by number: the log holds no "
        "names, and the operator knows which person or category each number stands for.",
        "The same change to the model also carried out other people's requests; they are not "
        "shown here."
        if d["shared"]
        else "",
        _phase_words(d),
    )


def _when_section(d: Mapping[str, Any]) -> dict[str, Any]:
    req = d["request"]
    dl = req["deadline"]
    timing = {
        "met": "within the legal deadline",
        "late": f"after the deadline ({_fmt.deadline(dl)})",
        "open": f"the deadline has not passed ({_fmt.deadline(dl)})",
        "overdue": f"the deadline has passed ({_fmt.deadline(dl)})",
    }.get(dl["state"], "")
    done = (
        f"carried out on {_fmt.when(d['applied_at'])}"
        if d["outcome"] == ApplyOutcome.APPLIED
        else f"attempted on {_fmt.when(d['applied_at'])} without success"
    )
    return _section(
        "When",
        f"Received on {_fmt.when(req['received_at'])} (legal basis {req['legal_basis']}), "
        f"due by {_fmt.when(req['due_at'])}, approved on {_fmt.when(req['approved_at'])}, "
        f"{done}: {timing}.",
    )


def _variant_what_section(d: Mapping[str, Any]) -> dict[str, Any]:
    v, model = d["variant"], d["model"]["name"]
    classes = d["request"].get("classes") or []
    return _section(
        "What this receipt covers",
        f"This receipt is about the {v['name']} version of the image classifier “{model}”: a "
        "smaller, faster copy (quantized: its numbers are stored with fewer digits) made for "
        f"devices from exactly the model your deletion published (log entry "
        f"{v['source_index']}, file SHA-256 {v['source_onnx_sha256'][:16]}…). It carries out "
        "the same deletion"
        + (f": it must not recognise {_classes_phrase(classes)} either." if classes else "."),
        "The same change to the model also carried out other people's requests; they are not "
        "shown here."
        if d["shared"]
        else "",
        "It is not the receipt of the deletion itself: that is the receipt of entry "
        f"{v['source_index']}, which you were given with your request."
        + (
            ""
            if v["source_shown"]
            else " Shown beside this one, it adds your request's details and the full-precision "
            "model's numbers to this page."
        ),
    )


def _variant_verified_parts(d: Mapping[str, Any]) -> list[str]:
    """The variant's own measurements, beside the full-precision (fp32) model's if known."""
    m, v = d["metrics"], d["variant"]
    name, parts = v["name"], []
    if m["classes"] and m["samples"]:
        per = "; ".join(
            f"class {c['class']}: {_fmt.pct(c['before'])} of its {c['samples']} test images by "
            "the original model"
            + (f", {_fmt.pct(c['fp32_after'])} by the fp32 model" if m["fp32_shown"] else "")
            + f", {_fmt.pct(c['after'])} by the {name} model"
            for c in m["classes"]
        )
        parts.append(
            f"Before the {name} model was written it was tested on images it was never trained "
            f"on ({m['samples']} here). How often it recognised your classes: {per}."
        )
    elif m["forget_after"] is not None:
        parts.append(
            f"Before the {name} model was written it was tested on images it was never trained "
            f"on: it recognised the deleted classes in {_fmt.pct(m['forget_after'])} of their "
            "test images."
        )
    if m["retain_after"] is not None:
        fp32 = f", the fp32 model {_fmt.pct(m['fp32_retain_after'])}" if m["fp32_shown"] else ""
        parts.append(
            f"On the classes that were not deleted the {name} model is right on "
            f"{_fmt.pct(m['retain_after'])} of the test images (the original model "
            f"{_fmt.pct(m['retain_before'])}{fp32})."
        )
    calib = _calibration_sentence(v)
    if calib:
        parts.append(calib)
    rules = _rules(m)
    if rules:
        verdict = "it passed" if m["passed"] else "it did NOT pass"
        parts.append(f"The operator's rule required {' and '.join(rules)}: {verdict}.")
    rc = d["receipt"]
    parts.append(
        f"Only then was the {name} model signed and written, and a signed record of it added "
        f"to the tamper-evident log (entry {rc['index']} of {rc['origin']})."
    )
    return parts


def _calibration_sentence(v: Mapping[str, Any]) -> str:
    """Which images tuned (calibrated) the variant's stored numbers, when recorded."""
    c = v.get("calibration")
    if c is None:
        return ""
    n = f"{c['samples']} " if c["samples"] is not None else ""
    if c["source"] == "eval":
        return (
            f"Its stored numbers were tuned (calibrated) on {n}of the same test images that then "
            "measured it, because the operator kept no training images: the test above is "
            "therefore less independent than for the full-precision model."
        )
    return f"Its stored numbers were tuned (calibrated) on {n}training images, not test images."


def _verified_parts(d: Mapping[str, Any]) -> list[str]:
    m = d["metrics"]
    parts = []
    if m["classes"] and m["samples"]:
        per = "; ".join(
            f"class {c['class']}: {_fmt.pct(c['before'])} of its {c['samples']} test images "
            f"before, {_fmt.pct(c['after'])} after"
            for c in m["classes"]
        )
        parts.append(
            "Before a changed model is published it is tested on images it was never trained "
            f"on ({m['samples']} here). How often it still recognised your classes: {per}."
        )
    if m["retain_after"] is not None:
        parts.append(
            "On the classes that were not deleted its accuracy went from "
            f"{_fmt.pct(m['retain_before'])} to {_fmt.pct(m['retain_after'])}."
        )
    rules = _rules(m)
    if rules:
        verdict = "it passed" if m["passed"] else "it did NOT pass"
        parts.append(f"The operator's rule required {' and '.join(rules)}: {verdict}.")
    parts.extend(_depth_words(m))
    if not m["passed"] and m["failures"]:
        parts.append("What failed: " + "; ".join(m["failures"]) + ".")
    rc = d["receipt"]
    if d["outcome"] == ApplyOutcome.APPLIED:
        parts.append(
            "Only then was the model published, and a signed record of this was added to a "
            f"tamper-evident log (entry {rc['index']} of {rc['origin']})."
        )
    else:
        parts.append(
            "Because of that, nothing was published; the operator must try again. The attempt "
            f"itself is recorded in the tamper-evident log (entry {rc['index']})."
        )
    return parts


def _rules(m: Mapping[str, Any]) -> list[str]:
    rules = []
    if m["max_forget_accuracy"] is not None:
        rules.append(
            f"deleted classes recognised in at most {_fmt.pct(m['max_forget_accuracy'])} of "
            "their test images"
        )
    if m["max_retain_drop"] is not None:
        rules.append(
            f"the other classes' accuracy falling by at most {100 * m['max_retain_drop']:.1f} "
            "percentage points"
        )
    return rules


def _event_section(d: Mapping[str, Any]) -> dict[str, Any]:
    req = d["request"]
    classes = req.get("classes") or []
    return _section(
        "What this receipt records",
        f"The log recorded that your request {req['id']} "
        f"{_EVENT_WORDS.get(d['event'], d['event'])} on {_fmt.when(req['at'])}"
        + (f", asking to delete {_classes_of(req)}" if classes else "")
        + (f", due by {_fmt.when(req['due_at'])}" if req.get("due_at") else "")
        + ".",
        "Ask the operator for the receipt of the deletion once it is carried out.",
    )


def _genuine_section(d: Mapping[str, Any]) -> dict[str, Any]:
    ver, rc = d["verification"], d["receipt"]
    if ver["passed"]:
        proof = (
            f"This receipt verified with the log's public key: the log signed its state at "
            f"{rc['checkpoint_size']} entries, and the proof shows your record is entry "
            f"{rc['index']} of it. Nobody can change or remove the record without breaking "
            "that signature."
        )
    else:
        proof = f"This receipt did NOT verify: {ver['error']['message']}."
    check = d["subject_check"]
    mine = ""
    if check is not None:
        if check["matches"] is None:
            mine = "This record carries no subject commitment to compare your identifier with."
        elif check["matches"]:
            mine = (
                "The identifier and key you gave match this request's subject commitment: the "
                "request is yours. (Neither is shown here.)"
            )
        else:
            mine = "The identifier and key you gave do NOT match this request's subject commitment."
    return _section("Is this receipt genuine?", proof, mine)


def _commands(d: Mapping[str, Any], vkey: str) -> list[str]:
    # Every inserted value is one shell word: file names and request ids come from the input.
    sh = _fmt.sh
    name, key = sh(d["receipt"]["name"]), sh(vkey, always=True)
    cmds = [
        install_line(),
        f"lethe-audit receipt verify {name} --key {key}",
        f"lethe-audit receipt show {name} --key {key} --request {sh(d['request']['id'])} "
        "--subject 'YOUR IDENTIFIER' --subject-key YOUR-KEY-HEX",
    ]
    applied = d["outcome"] == ApplyOutcome.APPLIED
    if d["kind"] == "unlearning" and applied and d["model"]["onnx_sha256"]:
        cmds.append(f"lethe-audit model verify MODEL.onnx --key {key} --receipt {name}")
    if d["kind"] == "variant":
        v = sh(d["variant"]["name"])
        cmds[2] = (
            f"lethe-audit receipt show {name} --key {key} --request {sh(d['request']['id'])} "
            "--source-receipt YOUR-REQUEST-RECEIPT.tlog-proof"
        )
        cmds.append(f"lethe-audit model verify MODEL.{v}.onnx --key {key} --receipt {name}")
    return cmds


def _phase_words(d: Mapping[str, Any]) -> str:
    """What the phase of this record means, in words."""
    if d["phase"] == Phase.ERASE:
        return (
            "This record is the second phase of the deletion (erase): the model's weights were "
            "changed so that they no longer hold your classes. It starts from the first phase "
            "(masked model) of the same request."
        )
    if d["outcome"] == ApplyOutcome.APPLIED:
        return (
            "This record is the first phase of the deletion (mask): a filter stops the model "
            "from recognising your classes, but what it learned about them is still in its "
            "weights (masked, not yet erased). A second phase (erase) removes it from the "
            "weights and gets its own receipt."
        )
    return ""


def _depth_words(m: Mapping[str, Any]) -> list[str]:
    """The erase phase's depth checks, in words."""
    depth = m.get("depth")
    if m.get("phase") != Phase.ERASE:
        return []
    if not depth:
        return ["This erase record carries no depth measurement against a reference model."]
    parts = [
        "To check that the classes are gone from the weights and not only hidden, the model "
        "is trained again for a few small steps on a handful of images of the deleted classes, "
        "to see how quickly it relearns them. A model retrained from scratch without a class "
        f"(the reference, made {_fmt.when(depth['reference_created_at'])}) needs "
        f"{_fmt.num(depth['reference_relearn_steps'])} steps; this model needs "
        f"{_fmt.num(depth['relearn_steps'])}, {_fmt.num(depth['relearn_ratio'])} times as many "
        "(1 or more: as hard to bring back as if never learned)."
    ]
    if depth["probe_auc_gap"] is not None:
        parts.append(
            "A detector reading the model's internal features finds the deleted classes "
            f"{_fmt.num(depth['probe_auc_gap'])} better (AUC) than in the reference (0 or less: "
            "no more than if never learned)."
        )
    rules = []
    if m.get("min_relearn_ratio") is not None:
        rules.append(f"relearning at least {_fmt.num(m['min_relearn_ratio'])} times as slow")
    if m.get("max_probe_auc_gap") is not None:
        rules.append(f"a detector gap of at most {_fmt.num(m['max_probe_auc_gap'])}")
    if rules:
        verdict = "it passed" if m["passed"] else "it did NOT pass"
        parts.append(
            f"For the erase phase the rule also required {' and '.join(rules)}: {verdict}."
        )
    return parts


def write_receipt_page(
    receipt: bytes | str | os.PathLike[str],
    verifiers: Sequence[str | Verifier] | str | Verifier,
    out: str | os.PathLike[str],
    **options: Any,
) -> Path:
    """Build the receipt page (options as :func:`build_receipt_page`) and write it as HTML."""
    return build_receipt_page(receipt, verifiers, **options).write(out)
