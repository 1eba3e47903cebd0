"""Property/fuzz harness over every parser and file reader the auditor uses (issue 14, item 11).

For any input, each reader returns a value (or None) or raises a ``LetheAuditError`` subclass:
never another exception, never a hang. Inputs mix structured mutations of valid documents
(a real checkpoint, receipt, envelope, manifest, bundle, keyring, signed ONNX model, metrics
result) with raw bytes and hostile values: huge integers, deep nesting, non-ASCII base64, lone
surrogates, control characters. ``max_examples`` is small per test so that the whole harness
runs in well under a minute on one core; ``TOTAL_EXAMPLES`` is what it tries at most.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lethe_audit import note, statements, tlog
from lethe_audit.errors import LetheAuditError
from lethe_audit.verify import Manifest, parse_receipt, verify_bundle, verify_receipt
from tests.audit._audit_helpers import attestation, event

SIGNER = note.Signer.from_seed("example.org/lethe-fuzz", bytes(range(32)))
VERIFIERS = [SIGNER.verifier()]

EXAMPLES = {
    "bytes": 60,
    "text": 40,
    "json": 60,
    "bundle": 25,
    "model": 25,
}
#: Upper bound on the inputs the harness generates (sum over the tests below).
TOTAL_EXAMPLES = 0


def _settings(kind: str) -> Callable[[Any], Any]:
    global TOTAL_EXAMPLES
    TOTAL_EXAMPLES += EXAMPLES[kind]
    return settings(
        max_examples=EXAMPLES[kind],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )


CALLS = [0]  # reader calls made (printed by test_harness_size when run in one process)


def typed(fn: Callable[[], Any]) -> Any:
    """Call ``fn``; a LetheAuditError is a fine answer, any other exception fails the test."""
    CALLS[0] += 1
    try:
        return fn()
    except LetheAuditError:
        return None


# --- seeds: real, valid documents --------------------------------------------------------------

_ENVELOPES = [statements.sign_statement(event(i).to_statement(), SIGNER) for i in range(3)]
_ENVELOPES.append(statements.sign_statement(attestation(3).to_statement(), SIGNER))
_LEAVES = [e.to_json() for e in _ENVELOPES]
_TREE = tlog.MemoryTree([tlog.leaf_hash(x) for x in _LEAVES])
_CP = tlog.Checkpoint(SIGNER.name, len(_LEAVES), tlog.root([tlog.leaf_hash(x) for x in _LEAVES]))
CHECKPOINT_NOTE = tlog.sign_checkpoint(_CP, SIGNER)
RECEIPT = tlog.TlogProof.create(
    3, tlog.inclusion_proof(3, len(_LEAVES), _TREE), CHECKPOINT_NOTE, extra=_LEAVES[3]
).to_text()
ENVELOPE = _LEAVES[3]


def _valid_receipt_sanity() -> None:
    verify_receipt(RECEIPT, VERIFIERS)


_valid_receipt_sanity()

# --- strategies --------------------------------------------------------------------------------

HOSTILE_TOKENS = [
    b"\x1b[2J",
    b"\x00",
    b"\xff\xfe",
    b"\xc3\x28",
    "\u00b2".encode(),
    "\u2014 ".encode(),
    b"9" * 5000,
    b"[" * 3000,
    b"{" * 3000,
    b'"\\ud800"',
    b"\n\n",
    b"\r\n",
    b"=",
    b"NaN",
    b"1e999",
    b"-0",
]
HOSTILE_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    10**5000,
    2**64,
    float("inf"),
    float("nan"),
    1e308,
    "",
    "x",
    "abc",
    "\u00b2",
    "\x1b[2J\x1b[HOK: verified",
    "\ud800",
    "\xe9\u00e9\u202e",
    "\u0663",
    [],
    [1, 2],
    {},
    {"a": 1},
    "A" * 10000,
]


def _nested(depth: int) -> Any:
    out: Any = 0
    for _ in range(depth):
        out = [out]
    return out


HOSTILE_VALUES += [_nested(300)]  # deeper nesting comes as raw bytes (HOSTILE_TOKENS)


@st.composite
def mutated_bytes(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "token", "dup"]))
        pos = draw(st.integers(0, len(data))) if data else 0
        if op == "flip" and data:
            data[min(pos, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif op == "token":
            data[pos:pos] = draw(st.sampled_from(HOSTILE_TOKENS))
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 64))]
    return bytes(data)


def inputs(seed: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(mutated_bytes(seed), st.binary(max_size=200))


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``doc`` with ``value`` at ``path`` (copies only along the path)."""
    if not path:
        return value
    k = path[0]
    new: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    new[k] = _set(doc[k], path[1:], value)
    return new


def _drop(doc: Any, path: tuple[Any, ...], extra: str) -> Any:
    """A copy of ``doc`` without the key at ``path``, with an unknown key ``extra`` beside it."""
    if len(path) == 1:
        new = {k: v for k, v in doc.items() if k != path[0]}
        new["extra_" + extra] = 1
        return new
    out: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    out[path[0]] = _drop(doc[path[0]], path[1:], extra)
    return out


@st.composite
def mutated_json(draw: st.DrawFn, seed: Any) -> Any:
    doc = seed
    paths = list(_paths(seed))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        if path and isinstance(path[-1], str) and draw(st.booleans()):
            with suppress(KeyError, IndexError, TypeError, AttributeError):
                doc = _drop(doc, path, draw(st.text(max_size=3)))
            continue
        value = draw(
            st.one_of(
                st.sampled_from(HOSTILE_VALUES),
                st.recursive(
                    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c),
                    max_leaves=6,
                ),
            )
        )
        with suppress(KeyError, IndexError, TypeError, AttributeError):
            doc = _set(doc, path, value)
    return doc


def dumps(doc: Any) -> bytes:
    """JSON bytes of a hostile value (deep nesting and huge ints written by hand)."""
    try:
        return json.dumps(doc, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")
    except (RecursionError, ValueError):
        return b"[" * 5000 + b"]" * 5000


# --- text formats -------------------------------------------------------------------------------


def _as_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


@_settings("bytes")
@given(inputs(CHECKPOINT_NOTE.encode()))
def test_signed_note_and_checkpoint(data: bytes) -> None:
    typed(lambda: note.parse(data))
    text = _as_text(data)
    typed(lambda: note.parse(text))
    typed(lambda: note.verify(text, VERIFIERS))
    typed(lambda: tlog.Checkpoint.parse(text))
    typed(lambda: tlog.Checkpoint.parse(text.partition("\n\n")[0] + "\n"))
    typed(lambda: tlog.verify_checkpoint(text, VERIFIERS))
    typed(lambda: tlog.verify_checkpoint(text, VERIFIERS, origin=SIGNER.name))


@_settings("text")
@given(inputs(SIGNER.verifier().vkey.encode()))
def test_vkey(data: bytes) -> None:
    typed(lambda: note.Verifier.from_vkey(_as_text(data)))


@_settings("bytes")
@given(inputs(RECEIPT.encode()))
def test_tlog_proof_and_receipt(data: bytes) -> None:
    typed(lambda: tlog.TlogProof.parse(data))
    typed(lambda: tlog.TlogProof.parse(_as_text(data)))
    typed(lambda: parse_receipt(data))
    typed(lambda: verify_receipt(data, VERIFIERS))


@_settings("bytes")
@given(inputs(ENVELOPE))
def test_dsse_envelope_bytes(data: bytes) -> None:
    def check(canonical: bool) -> None:
        env = statements.Envelope.from_json(data, require_canonical=canonical)
        statements.verify_envelope(env, VERIFIERS)
        st_ = statements.Statement.from_envelope(env)
        statements.validate_statement(st_)
        statements.parse_predicate(st_)

    typed(lambda: check(True))
    typed(lambda: check(False))
    typed(lambda: statements.loads_canonical(data, "fuzz"))


@_settings("json")
@given(mutated_json(json.loads(ENVELOPE)))
def test_dsse_envelope_json(doc: Any) -> None:
    data = dumps(doc)
    typed(lambda: statements.Envelope.from_json(data, require_canonical=False))
    typed(lambda: statements.canonical_json(doc))
    typed(lambda: statements.loads_canonical(data, "fuzz"))


@_settings("json")
@given(mutated_json(json.loads(_ENVELOPES[3].payload)))
def test_statement_and_predicate(doc: Any) -> None:
    def check() -> None:
        st_ = statements.Statement.from_dict(doc)
        statements.validate_statement(st_)
        statements.parse_predicate(st_)

    typed(check)
    payload = dumps(doc)
    env = statements.sign_envelope(payload, SIGNER)
    typed(lambda: statements.Statement.from_envelope(env))


# --- bundles --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lethe_audit import store
    from lethe_audit.log import AuditLog

    root = tmp_path_factory.mktemp("fuzz-bundle")
    url = f"sqlite:///{root / 'log.db'}"
    store.upgrade(url)
    log = AuditLog(store.create_engine(url), signers=[SIGNER])
    log.initialize()
    for i in range(3):
        log.append(event(i))
    log.append(attestation(3))
    (root / "fig.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    out = log.export_bundle(root / "bundle", attachments=[root / "fig.csv"])
    log.engine.dispose()
    verify_bundle(out, VERIFIERS)
    return out


@contextmanager
def _copy(src: Path) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="lethe-fuzz-"))
    try:
        yield Path(shutil.copytree(src, tmp / "b"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


BUNDLE_FILES = ["manifest.json", "entries.jsonl", "checkpoints.jsonl", "keys.json"]


@_settings("json")
@given(data=st.data())
def test_manifest_parse(bundle_dir: Path, data: st.DataObject) -> None:
    seed = json.loads((bundle_dir / "manifest.json").read_text())
    doc = data.draw(mutated_json(seed))
    typed(lambda: Manifest.parse(dumps(doc).decode("utf-8", "replace")))
    raw = data.draw(inputs(dumps(seed)))
    typed(lambda: Manifest.parse(raw.decode("utf-8", "replace")))


@_settings("bundle")
@given(data=st.data())
def test_directory_bundle(bundle_dir: Path, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(BUNDLE_FILES))
    with _copy(bundle_dir) as b:
        target = b / name
        target.write_bytes(data.draw(inputs(target.read_bytes())))
        if data.draw(st.booleans()):
            _reseal(b)
        typed(lambda: verify_bundle(b, VERIFIERS))
        typed(lambda: _report(b))


def _reseal(b: Path) -> None:
    import hashlib

    try:
        doc = json.loads((b / "manifest.json").read_text())
        for n in doc["files"]:
            raw = (b / n).read_bytes()
            doc["files"][n] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
        (b / "manifest.json").write_text(json.dumps(doc))
    except (ValueError, KeyError, TypeError, OSError, AttributeError):
        pass


def _report(b: Path) -> None:
    from lethe_audit.report import build_report

    build_report(b, VERIFIERS).to_json()


@_settings("bundle")
@given(data=st.data())
def test_zip_bundle(bundle_dir: Path, data: st.DataObject, tmp_path_factory: Any) -> None:
    members = {n: (bundle_dir / n).read_bytes() for n in BUNDLE_FILES}
    members["attachments/fig.csv"] = (bundle_dir / "attachments" / "fig.csv").read_bytes()
    name = data.draw(st.sampled_from(sorted(members)))
    members[name] = data.draw(inputs(members[name]))
    if data.draw(st.booleans()):
        extra = data.draw(
            st.sampled_from(["attachments/.", "attachments/fig.csv/x", "../evil", "attachments/"])
        )
        members[extra] = b"x"
    tmp = Path(tempfile.mkdtemp(prefix="lethe-fuzz-zip-"))
    try:
        z = tmp / "b.zip"
        with zipfile.ZipFile(z, "w") as zf:
            for n, raw in members.items():
                zf.writestr(n, raw)
        raw_zip = z.read_bytes()
        z.write_bytes(data.draw(st.one_of(st.just(raw_zip), mutated_bytes(raw_zip))))
        typed(lambda: verify_bundle(z, VERIFIERS))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- keys, CLI file loading, models, metrics -------------------------------------------------


@_settings("json")
@given(data=st.data())
def test_keyring(data: st.DataObject, tmp_path_factory: Any) -> None:
    from lethe_audit.keys import KEYRING_FILE, KeyRing

    tmp = Path(tempfile.mkdtemp(prefix="lethe-fuzz-keys-"))
    try:
        KeyRing.create(tmp / "k", name="example.org/fuzz")
        path = tmp / "k" / KEYRING_FILE
        seed = json.loads(path.read_text())
        if data.draw(st.booleans()):
            path.write_bytes(dumps(data.draw(mutated_json(seed))))
        else:
            path.write_bytes(data.draw(inputs(path.read_bytes())))

        def use() -> None:
            ring = KeyRing.open(tmp / "k")
            ring.verifiers()
            [e.to_dict() for e in ring.entries]

        typed(use)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@_settings("text")
@given(data=st.data())
def test_cli_key_and_checkpoint_files(bundle_dir: Path, data: st.DataObject) -> None:
    """--key-file and --checkpoint files as the CLI loads them: typed errors or success."""
    from click.testing import CliRunner

    from lethe_audit.cli import main

    tmp = Path(tempfile.mkdtemp(prefix="lethe-fuzz-cli-"))
    try:
        keyfile, cpfile, receipt = tmp / "k.vkey", tmp / "cp.txt", tmp / "r.tlog-proof"
        keyfile.write_bytes(data.draw(inputs(SIGNER.verifier().vkey.encode() + b"\n")))
        cpfile.write_bytes(data.draw(inputs(CHECKPOINT_NOTE.encode())))
        receipt.write_text(RECEIPT, encoding="utf-8")
        args = ["receipt", "verify", str(receipt), "--key-file", str(keyfile)]
        _no_crash(CliRunner().invoke(main, args))
        args = ["verify", str(bundle_dir), "--key", SIGNER.verifier().vkey]
        _no_crash(CliRunner().invoke(main, [*args, "--checkpoint", str(cpfile)]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _no_crash(result: Any) -> None:
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), repr(exc)
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def onnx_model() -> bytes:
    from lethe_audit.model import sign_model
    from tests.audit.test_model_verify import metadata, tiny_model

    return sign_model(tiny_model(), metadata(), SIGNER).SerializeToString()  # type: ignore[no-any-return]


@_settings("model")
@given(data=st.data())
def test_onnx_model_reading(onnx_model: bytes, data: st.DataObject) -> None:
    from lethe_audit.model import read_model, verify_model

    raw = data.draw(st.one_of(mutated_bytes(onnx_model), st.binary(max_size=64)))

    def use() -> None:
        m = read_model(raw)
        m.metadata().to_dict()
        verify_model(m, VERIFIERS)

    typed(use)
    typed(lambda: _with_metadata(onnx_model, data))


def _with_metadata(model_bytes: bytes, data: st.DataObject) -> None:
    import onnx

    from lethe_audit.model import read_model

    m = onnx.load_from_string(model_bytes)
    if m.metadata_props:
        prop = data.draw(st.sampled_from(list(m.metadata_props)))
        value = data.draw(st.sampled_from([v for v in HOSTILE_VALUES if isinstance(v, str)]))
        prop.value = value.encode("utf-8", "replace").decode("utf-8")
    signed = read_model(m)
    signed.metadata().to_dict()


@_settings("json")
@given(data=st.data())
def test_metrics_result_from_dict(data: st.DataObject) -> None:
    from lethe_audit.metrics import MetricsResult
    from tests.report._bundles import metrics

    doc = data.draw(mutated_json(metrics((3, 7))))
    typed(lambda: MetricsResult.from_dict(doc))


def test_harness_size() -> None:
    """The number reported for issue 14: the harness tries at most this many inputs."""
    assert TOTAL_EXAMPLES >= 500
    print(f"fuzz harness: at most {TOTAL_EXAMPLES} generated inputs, {CALLS[0]} reader calls")
