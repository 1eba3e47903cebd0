"""Test data builders shared by the lethe_audit tests (no personal data, real statements)."""

from __future__ import annotations

from lethe_audit import statements as S


def event(i: int, name: str = "request.received") -> S.LifecycleEvent:
    return S.LifecycleEvent(
        name,
        f"2024-05-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        request_id=f"req-{i:06d}",
        details={"classes": [i % 10]},
    )


def attestation(
    i: int = 0, *, forget: float = 0.0, applied_at: str = "2024-05-03T00:00:00Z"
) -> S.UnlearningAttestation:
    req = S.RequestRecord(
        id=f"req-{i:06d}",
        subject_commitment=S.hmac_commitment(b"k" * 32, f"subject-{i}"),
        classes=(1, 3),
        legal_basis="GDPR Art. 17(1)(a)",
        received_at="2024-05-01T12:00:00Z",
        due_at="2024-06-01T12:00:00Z",
        approved_at="2024-05-02T12:00:00Z",
    )
    return S.UnlearningAttestation(
        outcome="applied",
        requests=(req,),
        forgotten_classes=(1, 3),
        applied_at=applied_at,
        model=S.ModelRef("digits-cnn", "sha256:" + "a" * 64, "sha256:" + f"{i:064x}"),
        filter_bank_digest="sha256:" + "c" * 64,
        method=S.MethodRef("weight-filtering", "0.1.0", {"lr": 0.3, "epochs": 8}),
        metrics={"forget_accuracy": forget, "retain_accuracy": 0.985, "zrf": 0.91},
        policy=S.PolicyVerdict({"forget_accuracy_max": 0.01}, True, ()),
        onnx=S.OnnxRef("d" * 64, "sha256:" + "e" * 64),
    )
