"""Deterministic audit logs for the report tests: fixed keys, fixed times, fixed metrics.

Real components throughout (SQLite log, Ed25519 keys, DSSE envelopes, bundle export); no
training. The story of the fixed log, entry by entry:

 0 model.registered          digits-cnn
 1 request.received  REQ_A   class 3 (subject "alice"), due 2024-05-31
 2 request.received  REQ_B   class 7 (subject "bob"), due 2024-04-01 (will be applied late)
 3 request.received  REQ_C   class 5 (subject "carol")
 4 request.received  REQ_D   class 1 (subject "dave"), due 2024-05-01
 5 request.approved  REQ_A
 6 request.approved  REQ_B
 7 request.rejected  REQ_C
 8 request.approved  REQ_D
 9 unlearning applied [REQ_A, REQ_B], forgotten [3, 7], full metrics
10 apply.figures     names the two PNG figures of entry 9 (+ one with a wrong digest)
11 unlearning failed [REQ_D], forgotten [1, 3, 7] (its metrics carry skip reasons in the
   words of older versions, with Python hints the report must not show)
12 request.shredded  REQ_B

:func:`build_erase_log` continues the same story with phase 2:

13 unlearning applied phase=erase [REQ_A, REQ_B], forgotten [3, 7], starts from entry 9,
   depth against a retrain-holdout reference (relearn ratio 1.0, probe AUC gap 0.01)
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lethe_audit import note, store
from lethe_audit import statements as S
from lethe_audit.log import AuditLog

DATA = Path(__file__).resolve().parent / "data"
ORIGIN = "example.org/lethe-report-test"
SEED = bytes(range(32))
#: Reports are generated "as of" this time (decides which open requests are overdue).
NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)
APPLY_ID = "apply-00000000000000aa"
MODEL = "digits-cnn"
BASE = "sha256:" + "a1" * 32
FOLDED = "sha256:" + "f0" * 32
BANK = "sha256:" + "b2" * 32

REQ_A, REQ_B, REQ_C, REQ_D = (
    "req-0000000000000000000000a1",
    "req-0000000000000000000000b2",
    "req-0000000000000000000000c3",
    "req-0000000000000000000000d4",
)
#: Personal data that must never reach a report: the subjects' identifiers and their keys.
SUBJECTS = {
    REQ_A: "alice.liddell@example.com",
    REQ_B: "bob.dylan@example.com",
    REQ_C: "carol.danvers@example.com",
    REQ_D: "dave.bowman@example.com",
}
SUBJECT_KEYS = {rid: hashlib.sha256(f"key-{rid}".encode()).digest() for rid in SUBJECTS}
#: Class names live only in the operator's database, never in the log.
CLASS_NAMES = [
    "Ada Lovelace",
    "Alan Turing",
    "Grace Hopper",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Frances Allen",
    "Ken Thompson",
    "Margaret Hamilton",
    "John Backus",
]

COUNTS = (40, 41, 40, 42, 40, 40, 41, 40, 40, 40)
BASE_CORRECT = (39, 41, 40, 41, 39, 40, 41, 40, 38, 40)
AFTER_CORRECT = (39, 41, 39, 0, 39, 40, 41, 0, 38, 40)


def signer() -> note.Signer:
    return note.Signer.from_seed(ORIGIN, SEED)


def vkey() -> str:
    return signer().vkey


def commitment(rid: str) -> str:
    return S.hmac_commitment(SUBJECT_KEYS[rid], SUBJECTS[rid])


#: Skip reasons as lethe 0.1 logged them (Python hints that reports must turn into words).
OLD_SKIPS = (
    ("relearn", "not requested (pass relearn=RelearnConfig())"),
    ("zrf", "the onnxruntime backend cannot build a random model; pass random_model="),
)
ERASE_ID = "apply-00000000000000bb"
ERASED = "sha256:" + "e5" * 32


def metrics(
    forget: tuple[int, ...],
    after: tuple[int, ...] = AFTER_CORRECT,
    *,
    old_skips: bool = False,
    depth: bool = False,
) -> dict[str, Any]:
    """A complete ``lethe.metrics.v1`` result with fixed, mutually consistent numbers.

    ``old_skips``: no ZRF or relearn, with the skip reasons older versions logged. ``depth``:
    the erased model's numbers (a probe and relearn time of three seeds) and its depth.
    """
    from lethe_audit.metrics import (
        RESULT_FORMAT,
        AccuracyMetric,
        DepthMetric,
        MetricsResult,
        MiaMetric,
        ParityMetric,
        ProbeMetric,
        ReferenceInfo,
        RelearnConfig,
        RelearnMetric,
        RelearnRun,
        ZrfMetric,
    )

    digest = "c0" * 32
    per = tuple(a / n for a, n in zip(after, COUNTS, strict=True))
    base = tuple(b / n for b, n in zip(BASE_CORRECT, COUNTS, strict=True))
    fs = [c in forget for c in range(10)]

    def share(correct: tuple[int, ...], want: bool) -> float:
        num = sum(c for c, f in zip(correct, fs, strict=True) if f == want)
        den = sum(n for n, f in zip(COUNTS, fs, strict=True) if f == want)
        return num / den

    acc = AccuracyMetric(
        forget_accuracy=share(after, True),
        retain_accuracy=share(after, False),
        per_class=per,
        class_counts=COUNTS,
        forget_samples=sum(n for n, f in zip(COUNTS, fs, strict=True) if f),
        retain_samples=sum(n for n, f in zip(COUNTS, fs, strict=True) if not f),
        unevaluated_forget_classes=(),
        base_forget_accuracy=share(BASE_CORRECT, True),
        base_retain_accuracy=share(BASE_CORRECT, False),
        base_per_class=base,
        forget_delta=share(after, True) - share(BASE_CORRECT, True),
        retain_delta=share(after, False) - share(BASE_CORRECT, False),
        per_class_delta=tuple(a - b for a, b in zip(per, base, strict=True)),
        dataset_digest=digest,
    )
    result = MetricsResult(
        format=RESULT_FORMAT,
        backend="torch",
        num_classes=10,
        forget_classes=forget,
        seed=0,
        samples=sum(COUNTS),
        dataset_digest=digest,
        accuracy=acc,
        zrf=None
        if old_skips
        else ZrfMetric(0.8125, 0.1875, acc.forget_samples, "torch-reset-parameters-v1", digest, 0),
        mia=MiaMetric(0.975, 0.0, 300, 300, 240, "SVC", "d1" * 32, digest, 0),
        probe=ProbeMetric(
            0.8 if depth else 0.9375, 0.96875, None, 280, 122, 24, 512, "logreg", digest, 0
        ),
        relearn=None
        if old_skips
        else RelearnMetric(
            model=RelearnRun(True, 2, (0.0, 0.25, 0.625)),
            base=RelearnRun(True, 0, (0.97,)),
            retrained=None,
            config=RelearnConfig(),
            train_samples=10,
            train_digest="d2" * 32,
            test_samples=acc.forget_samples,
            dataset_digest=digest,
            seed=0,
        ),
        parity=ParityMetric(1.5e-05, "onnxruntime", sum(COUNTS), digest),
        skipped=OLD_SKIPS if old_skips else (),
        warnings=(),
    )
    if depth:
        runs = tuple(RelearnRun(True, n, (0.0,) * n + (0.625,)) for n in (6, 7, 9))
        assert result.relearn is not None
        relearn = replace(
            result.relearn, model=runs[1], model_runs=runs, config=RelearnConfig(seeds=3)
        )
        reference = ReferenceInfo(
            kind="retrain-holdout",
            classes=(9,),
            model_sha256="7e" * 32,
            recipe='{"epochs":3,"lr":0.001}',
            seconds=41.5,
            created_at="2024-04-01T07:30:00Z",
            relearn_steps=7.0,
            relearn_runs=(6, 7, 8),
            probe_auc=0.79,
            seeds=(0, 1, 2),
        )
        result = replace(result, relearn=relearn)
        result = replace(
            result,
            depth=DepthMetric(reference, 7.0, (6, 7, 9), 1.0, 0.8, 0.8 - 0.79),
        )
    return result.to_dict()


def _record(rid: str, classes: tuple[int, ...], received: str, due: str, approved: str) -> Any:
    return S.RequestRecord(
        id=rid,
        subject_commitment=commitment(rid),
        classes=classes,
        legal_basis="gdpr-17-1-b" if rid != REQ_B else "gdpr-17-1-a",
        received_at=received,
        due_at=due,
        approved_at=approved,
    )


@dataclass(frozen=True)
class FixedLog:
    log: AuditLog
    figures: list[Path]

    def bundle(self, path: Path) -> Path:
        return self.log.export_bundle(path, attachments=self.figures)

    def receipt(self, index: int) -> str:
        return self.log.receipt(index)


REQUESTS = {
    REQ_A: ((3,), "2024-05-01T09:00:00Z", "2024-05-31T09:00:00Z", "2024-05-02T10:00:00Z"),
    REQ_B: ((7,), "2024-03-01T09:00:00Z", "2024-04-01T09:00:00Z", "2024-05-02T10:05:00Z"),
    REQ_C: ((5,), "2024-05-01T11:00:00Z", "2024-05-31T11:00:00Z", None),
    REQ_D: ((1,), "2024-04-01T08:00:00Z", "2024-05-01T08:00:00Z", "2024-05-02T10:10:00Z"),
}


def build_log(workdir: Path, *, figures: bool = True) -> FixedLog:
    """The fixed log of the module docstring in a fresh SQLite file under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{workdir / 'log.db'}"
    store.upgrade(url)
    log = AuditLog(store.create_engine(url), signers=[signer()])
    log.initialize()
    log.append(
        S.LifecycleEvent(
            "model.registered",
            "2024-04-01T07:00:00Z",
            details={"model": MODEL, "base_digest": BASE, "num_classes": 10},
        )
    )
    for rid, (classes, received, due, _) in REQUESTS.items():
        log.append(
            S.LifecycleEvent(
                "request.received",
                received,
                request_id=rid,
                details={
                    "model": MODEL,
                    "classes": list(classes),
                    "legal_basis": "gdpr-17-1-b" if rid != REQ_B else "gdpr-17-1-a",
                    "subject_commitment": commitment(rid),
                    "due_at": due,
                },
            )
        )
    log.append(S.LifecycleEvent("request.approved", REQUESTS[REQ_A][3], request_id=REQ_A))
    log.append(S.LifecycleEvent("request.approved", REQUESTS[REQ_B][3], request_id=REQ_B))
    log.append(S.LifecycleEvent("request.rejected", "2024-05-02T10:07:00Z", request_id=REQ_C))
    log.append(S.LifecycleEvent("request.approved", REQUESTS[REQ_D][3], request_id=REQ_D))
    applied = S.UnlearningAttestation(
        outcome="applied",
        requests=tuple(_record(rid, *REQUESTS[rid]) for rid in (REQ_A, REQ_B)),  # type: ignore[arg-type]
        forgotten_classes=(3, 7),
        applied_at="2024-05-03T12:00:00Z",
        model=S.ModelRef(MODEL, BASE, FOLDED),
        filter_bank_digest=BANK,
        method=S.MethodRef("weight-filtering", "0.1.0", {"epochs": 8, "lr": 0.3}),
        metrics=metrics((3, 7)),
        policy=S.PolicyVerdict(
            {"max_forget_accuracy": 0.01, "max_parity": 0.0001, "max_retain_drop": 0.02},
            True,
            (),
        ),
        onnx=S.OnnxRef("e3" * 32, "sha256:" + "e4" * 32),
    )
    index = log.append(applied.to_statement()).index
    paths: list[Path] = []
    if figures:
        att = workdir / "attachments"
        att.mkdir(exist_ok=True)
        digests = {}
        for kind in ("alpha_summary", "channel_overlap"):
            dst = att / f"{APPLY_ID}.{kind}.png"
            shutil.copyfile(DATA / f"{kind}.png", dst)
            paths.append(dst)
            digests[dst.name] = "sha256:" + hashlib.sha256(dst.read_bytes()).hexdigest()
        # Logged with a digest that is not the file's: must be listed as unauthenticated.
        odd = att / f"{APPLY_ID}.extra.png"
        shutil.copyfile(DATA / "channel_overlap.png", odd)
        paths.append(odd)
        digests[odd.name] = "sha256:" + "00" * 32
        # Never logged at all.
        notes = att / "operator-notes.txt"
        notes.write_text("figures were produced by the apply step\n", encoding="utf-8")
        paths.append(notes)
        log.append(
            S.LifecycleEvent(
                "apply.figures",
                "2024-05-03T12:00:01Z",
                details={
                    "apply_id": APPLY_ID,
                    "model": MODEL,
                    "log_index": index,
                    "attachments": digests,
                },
            )
        )
    failed_after = (39, 8, 40, 0, 39, 40, 41, 0, 38, 40)
    failed = S.UnlearningAttestation(
        outcome="failed",
        requests=(_record(REQ_D, *REQUESTS[REQ_D]),),  # type: ignore[arg-type]
        forgotten_classes=(1, 3, 7),
        applied_at="2024-05-04T12:00:00Z",
        model=S.ModelRef(MODEL, BASE, "sha256:" + "f1" * 32),
        filter_bank_digest=BANK,
        method=S.MethodRef("weight-filtering", "0.1.0", {"epochs": 8, "lr": 0.3}),
        metrics=metrics((1, 3, 7), failed_after, old_skips=True),
        policy=S.PolicyVerdict(
            {"max_forget_accuracy": 0.01, "max_parity": 0.0001, "max_retain_drop": 0.02},
            False,
            ("forget accuracy 0.06504 > 0.01",),
        ),
        onnx=None,
    )
    log.append(failed.to_statement())
    log.append(S.LifecycleEvent("request.shredded", "2024-05-20T00:00:00Z", request_id=REQ_B))
    return FixedLog(log, paths)


def build_erase_log(workdir: Path) -> FixedLog:
    """The fixed log, then phase 2 of the first apply (entry 13, see the module docstring)."""
    fixed = build_log(workdir)
    erased = S.UnlearningAttestation(
        outcome="applied",
        requests=tuple(_record(rid, *REQUESTS[rid]) for rid in (REQ_A, REQ_B)),  # type: ignore[arg-type]
        forgotten_classes=(3, 7),
        applied_at="2024-05-03T12:30:00Z",
        model=S.ModelRef(MODEL, BASE, ERASED),
        filter_bank_digest=BANK,
        method=S.MethodRef("weight-filtering", "0.1.0", {"epochs": 8, "lr": 0.3}),
        metrics=metrics((3, 7), depth=True),
        policy=S.PolicyVerdict(
            {
                "max_forget_accuracy": 0.01,
                "max_parity": 0.0001,
                "max_retain_drop": 0.02,
                "min_relearn_ratio": 0.5,
                "max_probe_auc_gap": 0.02,
            },
            True,
            (),
        ),
        onnx=S.OnnxRef("e6" * 32, "sha256:" + "e7" * 32),
        phase=S.Phase.ERASE,
        erase={
            "method": "reinit-last-stage",
            "config": {"epochs": 4, "lr": 0.01, "seed": 0},
            "seconds": 12.25,
            "retain_samples": 1012,
        },
        starts_from={"apply_id": APPLY_ID, "model_sha256": FOLDED.removeprefix("sha256:")},
    )
    fixed.log.append(erased.to_statement())
    return fixed


def pending_id(k: int) -> str:
    return f"req-{k:026x}"


def build_pending_log(workdir: Path, *, count: int = 16) -> AuditLog:
    """A log of ``count`` open requests (a busy week): received 2024-05-01 + k hours, due 30
    days later, every other one approved; nothing applied. At :data:`NOW` all are overdue; on
    2024-05-15 none is."""
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{workdir / 'log.db'}"
    store.upgrade(url)
    log = AuditLog(store.create_engine(url), signers=[signer()])
    log.initialize()
    for k in range(count):
        rid = pending_id(k)
        received = f"2024-05-01T{k:02d}:00:00Z"
        log.append(
            S.LifecycleEvent(
                "request.received",
                received,
                request_id=rid,
                details={
                    "model": MODEL,
                    "classes": [k % 10],
                    "legal_basis": "gdpr-17-1-b",
                    "subject_commitment": S.hmac_commitment(bytes(32), rid),
                    "due_at": f"2024-05-31T{k:02d}:00:00Z",
                },
            )
        )
        if k % 2:
            log.append(
                S.LifecycleEvent("request.approved", f"2024-05-02T{k:02d}:00:00Z", request_id=rid)
            )
    return log
