"""Edge loading: ``load_verified`` verifies exactly the bytes it hands to onnxruntime."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from lethe_audit import note
from lethe_audit.errors import FormatError, ModelVerificationError
from lethe_audit.model import load_verified, sign_model, verify_model
from tests.audit.test_model_verify import (  # noqa: F401  (``logged`` is a fixture)
    _tamper_weight,
    logged,
    metadata,
    tiny_model,
)

X = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)


def _run(session: ort.InferenceSession) -> np.ndarray:
    return np.asarray(session.run(None, {"input": X})[0])


def _reference(data: bytes) -> np.ndarray:
    return _run(ort.InferenceSession(data, providers=["CPUExecutionProvider"]))


_hooks: list[Callable[[str, tuple[Any, ...]], None]] = []


def _dispatch(event: str, args: tuple[Any, ...]) -> None:
    for hook in list(_hooks):
        hook(event, args)


sys.addaudithook(_dispatch)  # audit hooks cannot be removed; this one forwards to _hooks


@pytest.fixture
def on_open() -> Iterator[Callable[[Callable[[str, tuple[Any, ...]], None]], None]]:
    """Register a hook on Python's ``open`` audit events for the duration of one test."""
    added: list[Callable[[str, tuple[Any, ...]], None]] = []

    def register(fn: Callable[[str, tuple[Any, ...]], None]) -> None:
        added.append(fn)
        _hooks.append(fn)

    yield register
    for fn in added:
        _hooks.remove(fn)


def _files(tmp_path: Path, signer: note.Signer) -> tuple[Path, bytes, bytes]:
    good = sign_model(tiny_model(), metadata(), signer)
    bad = _tamper_weight(good)  # same metadata and signature, one weight one ulp up
    path = tmp_path / "model.onnx"
    path.write_bytes(good.SerializeToString())
    return path, good.SerializeToString(), bad.SerializeToString()


def test_loads_and_runs_the_verified_model(tmp_path: Path, signer: note.Signer) -> None:
    path, good, _ = _files(tmp_path, signer)
    for source in (path, str(path), good):
        session = load_verified(source, signer.vkey)
        np.testing.assert_array_equal(_run(session), _reference(good))
    session = load_verified(path, [note.Verifier.from_vkey(signer.vkey)])
    assert session.get_modelmeta().custom_metadata_map["lethe.model.name"] == "digits-cnn"


def test_a_file_swapped_after_open_cannot_change_what_runs(
    tmp_path: Path, signer: note.Signer, on_open: Any
) -> None:
    """The attacker replaces the file right after load_verified opened it (the moment a
    check-then-load implementation would re-open it): what runs is what was verified."""
    path, good, bad = _files(tmp_path, signer)
    assert not np.array_equal(_reference(good), _reference(bad))  # the swap would matter
    swapped = tmp_path / "swapped.onnx"
    swapped.write_bytes(bad)
    opens: list[object] = []

    def swap_after_open(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and args[0] == os.fspath(path):
            opens.append(args[0])
        elif event == "open" and opens and isinstance(args[0], int) and swapped.exists():
            # Right after the open (at the fdopen of its fd): the file on disk is now tampered.
            os.replace(swapped, path)

    on_open(swap_after_open)
    session = load_verified(path, signer.vkey)
    assert opens == [os.fspath(path)]  # opened once
    assert path.read_bytes() == bad  # the swap happened while it was loading
    np.testing.assert_array_equal(_run(session), _reference(good))
    with pytest.raises(ModelVerificationError) as err:  # and the file now on disk is refused
        load_verified(path, signer.vkey)
    assert err.value.what == "content"


def test_bytes_changed_before_the_read_are_refused(
    tmp_path: Path, signer: note.Signer, on_open: Any
) -> None:
    """Rewritten in place between open and read: the read sees the new bytes, and those are
    both what is verified (and refused) and what would have run."""
    path, _, bad = _files(tmp_path, signer)

    done: list[bool] = []

    def rewrite(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and isinstance(args[0], int) and not done:
            done.append(True)
            with open(path, "r+b") as f:  # same inode
                f.write(bad)
                f.truncate()

    on_open(rewrite)
    with pytest.raises(ModelVerificationError, match="graph or weights changed") as err:
        load_verified(path, signer.vkey)
    assert err.value.what == "content"


def test_a_wrong_key_is_refused(tmp_path: Path, signer: note.Signer) -> None:
    path, _, _ = _files(tmp_path, signer)
    other = note.Signer.generate("example.org/lethe-test")
    with pytest.raises(ModelVerificationError, match="no signature by a trusted key") as err:
        load_verified(path, other.vkey)
    assert err.value.what == "signature"
    with pytest.raises(FormatError, match="at least one"):
        load_verified(path, [])


def test_a_receipt_of_another_model_is_refused(logged: dict[str, Any]) -> None:  # noqa: F811
    key = logged["vkey"]
    session = load_verified(logged["path"], key, receipt=logged["receipt"].read_bytes())
    assert _run(session).shape == (2, 3)
    with pytest.raises(ModelVerificationError, match="names another ONNX model") as err:
        load_verified(logged["path"], key, receipt=logged["other"].read_bytes())
    assert err.value.what == "receipt"
    with pytest.raises(ModelVerificationError, match="folded model digest"):
        load_verified(logged["path"], key, receipt=logged["digest"].read_text())


def test_not_a_regular_file_is_refused(tmp_path: Path, signer: note.Signer) -> None:
    with pytest.raises(FormatError, match="not a regular file"):
        load_verified(tmp_path, signer.vkey)
    fifo = tmp_path / "fifo.onnx"
    os.mkfifo(fifo)
    with pytest.raises(FormatError, match="not a regular file"):  # and does not block
        load_verified(fifo, signer.vkey)
    with pytest.raises(FormatError, match="no such model file"):
        load_verified(tmp_path / "missing.onnx", signer.vkey)


def test_verify_model_reads_the_same_bytes_once(
    tmp_path: Path, signer: note.Signer, on_open: Any
) -> None:
    path, _, _ = _files(tmp_path, signer)
    opens: list[object] = []
    on_open(lambda e, a: opens.append(a[0]) if e == "open" and a[0] == os.fspath(path) else None)
    verify_model(path, [note.Verifier.from_vkey(signer.vkey)])
    assert opens == [os.fspath(path)]


def test_external_data_is_refused_even_when_signed(tmp_path: Path, signer: note.Signer) -> None:
    """A key holder's tool that skipped the self-contained check: the edge still refuses."""
    from lethe_audit.model import SIGNATURE_KEY, signing_text_v2, stripped_hash

    model = tiny_model()
    t = model.graph.initializer[0]
    t.data_location = onnx.TensorProto.EXTERNAL
    t.external_data.add(key="location", value="weights.bin")
    del t.float_data[:]
    t.ClearField("raw_data")
    props = metadata().to_props()
    props[SIGNATURE_KEY] = note.sign(
        signing_text_v2(stripped_hash(model.SerializeToString()), props), signer
    )
    for k in sorted(props):
        model.metadata_props.add(key=k, value=props[k])
    with pytest.raises(FormatError, match="external file"):
        load_verified(model.SerializeToString(), signer.vkey)
