"""Canonical JSON, DSSE envelopes and the two Lethe predicate types."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from lethe_audit import note
from lethe_audit import statements as S
from lethe_audit.errors import FormatError, SignatureError, StatementError
from tests.audit._audit_helpers import attestation, event

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_json_is_rfc8785(value: Any) -> None:
    try:
        want = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        with pytest.raises(FormatError):
            S.canonical_json(value)
        return
    assert S.canonical_json(value) == want


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_loads_canonical_accepts_exactly_the_canonical_bytes(value: Any) -> None:
    try:
        canonical = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        return
    assert S.canonical_json(S.loads_canonical(canonical, "x")) == canonical
    variants = {
        json.dumps(value).encode(),
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
    }
    for data in variants:
        if data == canonical:
            S.loads_canonical(data, "x")
        else:
            with pytest.raises(FormatError):
                S.loads_canonical(data, "x")


@pytest.mark.parametrize(
    "number", [1e-5, 2.8e-5, 1e-7, 1e-4, 0.1, 1e20, 1.2345678901234568e20, 1e21, 5e-324]
)
def test_floats_where_python_and_ecmascript_disagree_round_trip(number: float) -> None:
    # Python writes 1e-05 where ECMAScript writes 0.00001 (and 1e+20 vs 100000000000000000000).
    doc = {"metrics": {"parity": number, "list": [number, -number]}}
    data = S.canonical_json(doc)
    assert data == rfc8785.dumps(doc)
    assert S.loads_canonical(data, "x") == doc


def test_canonical_json_known_answers() -> None:
    assert S.canonical_json({"b": [1e21, 1e-7, 5.0, -0.0, 0.1], "a": "é\n"}) == (
        '{"a":"é\\n","b":[1e+21,1e-7,5,0,0.1]}'.encode()
    )
    for bad in [float("nan"), 2**53, {1: 2}]:
        with pytest.raises(FormatError):
            S.canonical_json(bad)
    for text in [
        b'{"a":1e-07}',
        b'{"a":5.0}',
        b'{"a":-0}',
        b"[NaN]",
        b'{"b":1,"a":2}',
        b'{"a":1,"a":1}',
        b"[9007199254740993]",
    ]:
        with pytest.raises(FormatError):
            S.loads_canonical(text, "x")
    assert S.loads_canonical(b'{"a":[1e-7,1e+21,0.5,"\\u0001"]}', "x") == {
        "a": [1e-7, 1e21, 0.5, "\x01"]
    }


def test_pae_matches_the_dsse_spec_example() -> None:
    # DSSE protocol.md: PAE("http://example.com/HelloWorld", "hello world").
    assert S.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_envelope_sign_verify_and_tamper() -> None:
    a, b = note.Signer.generate("example.org/log"), note.Signer.generate("example.org/log")
    st_ = event(1).to_statement()
    env = S.sign_statement(st_, [a, b])
    data = env.to_json()
    assert data == S.sign_statement(st_, [a, b]).to_json()  # deterministic: retries dedupe
    parsed = S.Envelope.from_json(data)
    assert parsed == env
    assert [s.keyid for s in env.signatures] == [a.key_hint, b.key_hint]
    S.verify_envelope(parsed, [a.verifier()])
    S.verify_envelope(parsed, [b.verifier()])
    with pytest.raises(SignatureError):
        S.verify_envelope(parsed, [note.Signer.generate("example.org/log").verifier()])
    forged = replace(parsed, payload=parsed.payload.replace(b"req-000001", b"req-000002"))
    with pytest.raises(SignatureError):
        S.verify_envelope(forged, [a.verifier()])
    other_type = replace(parsed, payload_type="application/json")
    with pytest.raises(SignatureError):
        S.verify_envelope(other_type, [a.verifier()])
    assert S.Statement.from_envelope(parsed) == st_


def test_envelope_must_be_canonical_and_complete() -> None:
    env = S.sign_statement(event(1).to_statement(), note.Signer.generate("example.org/log"))
    obj = json.loads(env.to_json())
    with pytest.raises(FormatError, match="canonical"):
        S.Envelope.from_json(json.dumps(obj, indent=1).encode())
    S.Envelope.from_json(json.dumps(obj, indent=1).encode(), require_canonical=False)
    for broken in [
        {**obj, "extra": 1},
        {**obj, "signatures": []},
        {**obj, "payload": "not base64!"},
        {**obj, "signatures": [{"keyid": "k"}]},
    ]:
        with pytest.raises(FormatError):
            S.Envelope.from_json(S.canonical_json(broken))


def test_unlearning_attestation_round_trip_and_subjects() -> None:
    a = attestation(7)
    st_ = a.to_statement()
    assert st_.predicate_type == "urn:lethe:attestation:unlearning:v1"
    assert [s.name for s in st_.subject] == ["digits-cnn", "digits-cnn.onnx"]
    assert st_.subject[0].sha256 == f"{7:064x}"
    assert st_.subject[1].sha256 == "d" * 64
    S.validate_statement(st_)
    again = S.Statement.from_json(st_.to_json())
    assert S.parse_predicate(again) == a
    d = st_.to_dict()
    assert d["_type"] == "https://in-toto.io/Statement/v1"
    assert set(d["predicate"]) == {
        "outcome", "requests", "forgotten_classes", "applied_at", "model", "filter_bank",
        "method", "metrics", "policy", "onnx", "phase",
    }  # fmt: skip
    assert d["predicate"]["phase"] == "mask" and a.phase is S.Phase.MASK


def _bad(mutate: Any) -> dict[str, Any]:
    p = json.loads(json.dumps(attestation(1).to_predicate()))
    mutate(p)
    return p


@pytest.mark.parametrize(
    ("field", "mutate"),
    [
        ("predicate.outcome", lambda p: p.update(outcome="done")),
        ("predicate.requests", lambda p: p.update(requests=[])),
        ("predicate.requests[0].id", lambda p: p["requests"][0].update(id="alice@example.com")),
        (
            "predicate.requests[0].subject_commitment",
            lambda p: p["requests"][0].update(subject_commitment="alice"),
        ),
        (
            "predicate.requests[0].subject_commitment",
            lambda p: p["requests"][0].update(subject_commitment="sha256:" + "0" * 64),
        ),
        ("predicate.requests[0].classes", lambda p: p["requests"][0].update(classes=["alice"])),
        ("predicate.requests[0].classes", lambda p: p["requests"][0].update(classes=[3, 1])),
        (
            "predicate.requests[0].received_at",
            lambda p: p["requests"][0].update(received_at="yesterday"),
        ),
        (
            "predicate.requests[0].due_at",
            lambda p: p["requests"][0].update(due_at="2024-01-01T00:00:00Z"),
        ),
        ("predicate.requests[0]", lambda p: p["requests"][0].update(name="Alice")),
        ("predicate.forgotten_classes", lambda p: p.update(forgotten_classes=[1])),
        ("predicate.model.base_digest", lambda p: p["model"].update(base_digest="abc")),
        ("predicate.model.folded_digest", lambda p: p["model"].update(folded_digest=None)),
        ("predicate.metrics.x", lambda p: p["metrics"].update(x=float("inf"))),
        ("predicate.policy.passed", lambda p: p["policy"].update(passed=False)),
        ("predicate.policy.passed", lambda p: p["policy"].update(failures=["forget_accuracy"])),
        ("predicate.onnx.sha256", lambda p: p["onnx"].update(sha256="xyz")),
        ("predicate", lambda p: p.update(class_names=["Alice"])),
    ],
)
def test_unlearning_validator_names_the_bad_field(field: str, mutate: Any) -> None:
    with pytest.raises(StatementError) as e:
        S.validate_unlearning(_bad(mutate))
    assert e.value.field == field


def test_failed_outcome_may_lack_a_fold() -> None:
    def failed(p: dict[str, Any]) -> None:
        p.update(outcome="failed", forgotten_classes=[])
        p["model"]["folded_digest"] = None
        p["policy"].update(passed=False, failures=["forget_accuracy 0.2 > 0.01"])
        p["onnx"] = None

    p = _bad(failed)
    S.validate_unlearning(p)
    a = S.UnlearningAttestation.from_predicate(p)
    st_ = a.to_statement()
    assert st_.subject[0].sha256 == "a" * 64  # the base model
    S.validate_statement(st_)


def test_statement_subject_must_match_the_predicate() -> None:
    st_ = attestation(1).to_statement()
    wrong = S.Statement(
        (S.Subject("digits-cnn", {"sha256": "f" * 64}),), st_.predicate_type, st_.predicate
    )
    with pytest.raises(StatementError, match="subject"):
        S.validate_statement(wrong)
    ev = event(1).to_statement()
    wrong_ev = S.Statement(
        (S.Subject("request:someone-else", ev.subject[0].digest),), ev.predicate_type, ev.predicate
    )
    with pytest.raises(StatementError, match="subject"):
        S.validate_statement(wrong_ev)
    with pytest.raises(StatementError, match="unknown predicateType"):
        S.validate_statement(S.Statement(st_.subject, "urn:other", {}))


def test_lifecycle_events() -> None:
    ev = S.LifecycleEvent("request.approved", "2024-05-02T00:00:00.5Z", request_id="r-1")
    st_ = ev.to_statement()
    assert st_.subject[0].name == "request:r-1"
    S.validate_statement(st_)
    note_ev = S.LifecycleEvent("log.note", "2024-05-02T00:00:00Z", details={"text": "migrated"})
    assert note_ev.to_statement().subject[0].name == "log:log.note"
    for kwargs in [
        {"event": "request.approved", "at": "2024-05-02T00:00:00Z"},  # needs request_id
        {"event": "Approved", "at": "2024-05-02T00:00:00Z"},
        {"event": "log.note", "at": "2024-05-02 00:00:00"},
        {"event": "log.note", "at": "2024-05-02T00:00:00+02:00"},
        {"event": "log.note", "at": "2024-05-02T00:00:00Z", "request_id": "a b"},
    ]:
        with pytest.raises(StatementError):
            S.LifecycleEvent(**kwargs)


def test_times_and_commitments() -> None:
    from datetime import datetime, timedelta, timezone

    t = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert S.rfc3339(t) == "2024-05-01T12:00:00Z"
    assert S.parse_rfc3339("2024-05-01T12:00:00.250Z") == t.replace(microsecond=250000)
    c = S.hmac_commitment(b"k" * 32, "alice@example.com")
    assert c.startswith("hmac-sha256:") and "alice" not in c
    assert c != S.hmac_commitment(b"q" * 32, "alice@example.com")
    with pytest.raises(ValueError):
        S.hmac_commitment(b"short", "alice")
    assert base64.b64decode(base64.b64encode(b"x")) == b"x"


# --- phases (mask / erase) -------------------------------------------------------------------

ERASE = {
    "method": "reinit-last-stage",
    "config": {"epochs": 3, "lr": 0.01, "seed": 0},
    "seconds": 4.25,
    "retain_samples": 1080,
    "epoch_loss": [0.9, 0.4, 0.2],
}
STARTS_FROM = {"apply_id": "apply-0123456789abcdef", "model_sha256": f"{1:064x}"}


def erase_attestation(i: int = 2) -> S.UnlearningAttestation:
    return replace(attestation(i), phase=S.Phase.ERASE, erase=ERASE, starts_from=STARTS_FROM)


def test_a_predicate_without_phase_reads_as_mask() -> None:
    p = json.loads(json.dumps(attestation(1).to_predicate()))
    del p["phase"]  # an entry written before phases existed
    S.validate_unlearning(p)
    a = S.UnlearningAttestation.from_predicate(p)
    assert a.phase is S.Phase.MASK and a.erase is None and a.starts_from is None


def test_erase_attestation_round_trips_and_verifies() -> None:
    a = erase_attestation()
    p = a.to_predicate()
    assert p["phase"] == "erase" and p["erase"] == ERASE and p["starts_from"] == STARTS_FROM
    st_ = a.to_statement()
    again = S.Statement.from_json(st_.to_json())
    back = S.parse_predicate(again)
    assert isinstance(back, S.UnlearningAttestation)
    assert back.phase is S.Phase.ERASE
    assert dict(back.erase or {}) == ERASE and dict(back.starts_from or {}) == STARTS_FROM
    assert back.to_predicate() == p
    assert S.UnlearningAttestation(**{**a.__dict__, "phase": "erase"}).phase is S.Phase.ERASE


def _erase_bad(mutate: Any) -> dict[str, Any]:
    p = json.loads(json.dumps(erase_attestation().to_predicate()))
    mutate(p)
    return p


@pytest.mark.parametrize(
    ("field", "mutate"),
    [
        ("predicate.phase", lambda p: p.update(phase="erased")),
        ("predicate.erase", lambda p: p.pop("erase")),
        ("predicate.starts_from", lambda p: p.pop("starts_from")),
        ("predicate.erase", lambda p: p["erase"].pop("seconds")),
        ("predicate.erase", lambda p: p.update(erase=[1])),
        ("predicate.erase.method", lambda p: p["erase"].update(method="")),
        ("predicate.erase.config", lambda p: p["erase"].update(config=3)),
        ("predicate.erase.seconds", lambda p: p["erase"].update(seconds=-1)),
        ("predicate.erase.retain_samples", lambda p: p["erase"].update(retain_samples=1.5)),
        ("predicate.erase.epoch_loss[0]", lambda p: p["erase"].update(epoch_loss=[float("nan")])),
        ("predicate.starts_from", lambda p: p["starts_from"].update(extra="x")),
        ("predicate.starts_from.apply_id", lambda p: p["starts_from"].update(apply_id="a b")),
        (
            "predicate.starts_from.model_sha256",
            lambda p: p["starts_from"].update(model_sha256="sha256:" + "1" * 64),
        ),
        # mask predicates carry neither erase field
        ("predicate.erase", lambda p: p.update(phase="mask")),
        ("predicate.starts_from", lambda p: (p.update(phase="mask"), p.pop("erase"))),
    ],
)
def test_erase_validator_names_the_bad_field(field: str, mutate: Any) -> None:
    with pytest.raises(StatementError) as e:
        S.validate_unlearning(_erase_bad(mutate))
    assert e.value.field == field


def test_attestation_rejects_an_unknown_phase() -> None:
    with pytest.raises(StatementError) as e:
        replace(attestation(1), phase="done")  # type: ignore[arg-type]
    assert e.value.field == "predicate.phase"
