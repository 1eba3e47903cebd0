"""Cross-checking derived models: a variant attestation (``urn:lethe:attestation:variant:v1``,
an int8 file) must derive from an applied unlearning attestation earlier in the same log.

Each entry is checked on its own first (signature, well-formed statement); this adds what no
single entry can show: that the apply a variant names as its ``source`` exists, was applied,
is of the same model, exported the fp32 file the variant was made from, and covers the same
requests and classes. Without it a signed variant could bind an int8 file to a failed apply,
to another model, or to requests it never served.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lethe_audit.errors import EntryError, VerificationError
from lethe_audit.statements import UNLEARNING_V1, VARIANT_V1, Statement

#: What a worker keeps of an attestation for the cross-check: (position in its chunk, kind
#: ``"apply"`` / ``"variant"``, outcome, model name, fp32 sha256 (the apply's ONNX file or the
#: variant's source), request ids, forgotten classes, source index (variants only)).
Link = tuple[int, str, str, str, str | None, tuple[str, ...], tuple[int, ...], int | None]


def link(position: int, statement: Statement) -> Link | None:
    """The cross-check record of a (verified, well-formed) entry, or ``None``."""
    p: Mapping[str, Any] = statement.predicate
    if statement.predicate_type == UNLEARNING_V1:
        onnx = p.get("onnx")
        sha = onnx.get("sha256") if isinstance(onnx, Mapping) else None
        ids = tuple(sorted(str(r.get("id")) for r in p.get("requests", ())))
        return (position, "apply", str(p.get("outcome")), _model(p), sha, ids,
                _classes(p), None)  # fmt: skip
    if statement.predicate_type == VARIANT_V1:
        src = p.get("source") or {}
        ids = tuple(sorted(str(r) for r in p.get("requests", ())))
        return (position, "variant", str(p.get("variant")), _model(p), src.get("onnx_sha256"),
                ids, _classes(p), src.get("index"))  # fmt: skip
    return None


def _model(p: Mapping[str, Any]) -> str:
    m = p.get("model")
    return str(m.get("name")) if isinstance(m, Mapping) else ""


def _classes(p: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(sorted(int(c) for c in p.get("forgotten_classes", ())))


def variant_faults(links: Iterable[tuple[int, Link]]) -> list[tuple[int, int, VerificationError]]:
    """Faults ``(index, 0, error)`` of every variant whose source is not its apply.
    ``links``: (absolute log index, record), in log order."""
    applies: dict[int, Link] = {}
    out: list[tuple[int, int, VerificationError]] = []
    for index, rec in links:
        if rec[1] == "apply":
            applies[index] = rec
            continue
        why = _mismatch(index, rec, applies)
        if why is not None:
            err = EntryError(
                f"entry {index}: the {rec[2]} model's source is not its apply: {why}", index=index
            )
            out.append((index, 0, err))
    return out


def _mismatch(index: int, variant: Link, applies: Mapping[int, Link]) -> str | None:
    source = variant[7]
    apply = applies.get(source) if isinstance(source, int) else None
    if apply is None:
        return f"entry {source} is not an unlearning attestation logged before entry {index}"
    if apply[2] != "applied":
        return f"entry {source} is a {apply[2]} apply (only an applied one publishes a model)"
    if apply[3] != variant[3]:
        return f"entry {source} is about model {apply[3]!r}, the variant about {variant[3]!r}"
    if apply[4] != variant[4]:
        return f"entry {source} exported another fp32 file than the one the variant was made from"
    if apply[5] != variant[5]:
        return f"entry {source} covers other requests than the variant names"
    if apply[6] != variant[6]:
        return f"entry {source} forgets other classes than the variant names"
    return None
