"""No personal data anywhere: file a request with an e-mail address, apply it, export
everything, then search every table, every log entry and every written file for it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa

from lethe.workflow import Lethe

from .conftest import MODEL

EMAIL = "Jane.Roe+gdpr@example.org"


def _needles() -> list[bytes]:
    forms = {EMAIL, EMAIL.lower(), EMAIL.upper(), "Jane.Roe", "jane.roe"}
    out = [f.encode() for f in forms]
    out += [f.encode("utf-16-le") for f in forms]
    # Unkeyed hashes would be personal data too.
    out += [hashlib.sha256(f.encode()).hexdigest().encode() for f in forms]
    return out


def _all_rows(lt: Lethe) -> bytes:
    chunks: list[bytes] = []
    meta = sa.MetaData()
    meta.reflect(bind=lt.engine)
    with lt.engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(sa.select(table)):
                for v in row:
                    chunks.append(v if isinstance(v, bytes) else str(v).encode())
    return b"\n".join(chunks)


def test_subject_identifier_is_stored_nowhere(lt: Lethe, project_dir: Path, tmp_path: Path) -> None:
    r = lt.file(subject=EMAIL, classes=[2], legal_basis="gdpr-17-1-b", idempotency_key="app-77")
    lt.approve(r.id, actor="dpo")
    res = lt.apply(MODEL, phase="mask", relearn=False, progress=False)
    assert res.passed
    out = tmp_path / "out"
    out.mkdir()
    (out / "receipt.txt").write_text(lt.receipt(r.id))
    lt.export_bundle(out / "bundle.zip")
    lt.export_bundle(out / "bundle-dir")
    lt.export_onnx(MODEL, out / "model.onnx")
    lt.export_eval_data(MODEL, out / "eval.npz")
    haystacks: dict[str, bytes] = {"database": _all_rows(lt)}
    haystacks["log"] = b"\n".join(raw for _, raw in lt.log.iter_entries())
    for root in (project_dir, out):
        for f in root.rglob("*"):
            if f.is_file():
                haystacks[str(f)] = f.read_bytes()
    assert len(haystacks) > 10
    for where, data in haystacks.items():
        for needle in _needles():
            assert needle not in data, f"{needle!r} found in {where}"
    # The bundle zip is compressed: check its members too.
    import zipfile

    with zipfile.ZipFile(out / "bundle.zip") as z:
        for name in z.namelist():
            data = z.read(name)
            for needle in _needles():
                assert needle not in data, f"{needle!r} found in bundle member {name}"
