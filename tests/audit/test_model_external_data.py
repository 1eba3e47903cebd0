"""A signed model must carry every weight itself: external tensor data hidden in a subgraph (an
``If`` branch), a function, a sparse initializer or a TENSORS attribute is refused at signing
and at verification. The attack: the signature covers only the data *reference*, so swapping
the data file next to the model changes its outputs while ``model verify`` passed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from lethe_audit import note
from lethe_audit.cli import main
from lethe_audit.errors import FormatError
from lethe_audit.model import SIGNATURE_KEY, read_model, sign_model, signing_text, verify_model
from tests.audit.test_model_verify import metadata


def _externalise(t: TensorProto, data_file: Path) -> None:
    """Move ``t``'s bytes to ``data_file`` (what onnx's external-data helpers write)."""
    data_file.write_bytes(numpy_helper.to_array(t).tobytes())
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=data_file.name)
    t.external_data.add(key="length", value=str(data_file.stat().st_size))


def _if_model(data_file: Path) -> onnx.ModelProto:
    """y = x + w if cond else x - 1, with ``w`` an initializer of the then-branch kept in
    ``data_file``."""
    w = numpy_helper.from_array(np.full(4, 0.5, np.float32), "branch.w")
    _externalise(w, data_file)
    then_g = helper.make_graph(
        [helper.make_node("Add", ["x", "branch.w"], ["y_then"])],
        "then",
        [],
        [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, [4])],
        [w],
    )
    one = numpy_helper.from_array(np.ones(4, np.float32), "one")
    else_g = helper.make_graph(
        [helper.make_node("Sub", ["x", "one"], ["y_else"])],
        "else",
        [],
        [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, [4])],
        [one],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)],
        "branchy",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def _forge_signature(model: onnx.ModelProto, signer: note.Signer) -> onnx.ModelProto:
    """What a signer that checks only top-level initializers would have produced."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.metadata_props[:]
    digest = "sha256:" + hashlib.sha256(out.SerializeToString(deterministic=True)).hexdigest()
    props = metadata().to_props()
    props[SIGNATURE_KEY] = note.sign(signing_text(digest, props), signer)
    for key in sorted(props):
        out.metadata_props.add(key=key, value=props[key])
    return out


def test_external_tensor_in_an_if_branch_is_refused(tmp_path: Path) -> None:
    signer = note.Signer.generate("example.org/lethe-test")
    model = _if_model(tmp_path / "w.bin")
    with pytest.raises(FormatError, match=r"'branch.w' .*then.*external file"):
        sign_model(model, metadata(), signer)

    forged = _forge_signature(model, signer)
    path = tmp_path / "model.onnx"
    path.write_bytes(forged.SerializeToString())
    # The attack is real: the runtime reads the branch weight from the file next to the model.
    import onnxruntime as ort

    x, cond = np.zeros(4, np.float32), np.array(True)
    before = ort.InferenceSession(str(path)).run(None, {"x": x, "cond": cond})[0]
    (tmp_path / "w.bin").write_bytes(np.full(4, 9.0, np.float32).tobytes())
    after = ort.InferenceSession(str(path)).run(None, {"x": x, "cond": cond})[0]
    assert not np.array_equal(before, after)

    with pytest.raises(FormatError, match="external file"):
        read_model(path)
    with pytest.raises(FormatError, match="external file"):
        verify_model(forged, [signer.verifier()])
    res = CliRunner().invoke(main, ["model", "verify", str(path), "--key", signer.vkey])
    assert res.exit_code == 3 and "external file" in res.output


def _inline_if_model(tmp_path: Path) -> onnx.ModelProto:
    model = _if_model(tmp_path / "unused.bin")
    # Make the then-branch weight inline again, and hide an external tensor elsewhere instead.
    branches = {a.name: a.g for a in model.graph.node[0].attribute}
    w = branches["then_branch"].initializer[0]
    w.CopyFrom(numpy_helper.from_array(np.full(4, 0.5, np.float32), "branch.w"))
    return model


@pytest.mark.parametrize("where", ["tensors_attribute", "function", "sparse_initializer"])
def test_external_tensor_anywhere_is_refused(where: str, tmp_path: Path) -> None:
    model = _inline_if_model(tmp_path)
    content_ok: Any = sign_model(model, metadata(), note.Signer.generate("example.org/x"))
    assert content_ok.metadata_props  # the all-inline model signs
    hidden = numpy_helper.from_array(np.ones(2, np.float32), "hidden")
    _externalise(hidden, tmp_path / "hidden.bin")
    if where == "tensors_attribute":
        node = helper.make_node("Identity", ["x"], ["x2"])
        node.attribute.append(helper.make_attribute("payload", [hidden]))
        branches = {a.name: a.g for a in model.graph.node[0].attribute}
        branches["else_branch"].node.append(node)  # deep inside the else-branch
    elif where == "function":
        const = helper.make_node("Constant", [], ["c"], value=hidden)
        fn = helper.make_function("local", "f", [], ["c"], [const], [helper.make_opsetid("", 20)])
        model.functions.append(fn)
    else:
        idx = numpy_helper.from_array(np.array([0], np.int64), "hidden.idx")
        sparse = helper.make_sparse_tensor(hidden, idx, [4])
        model.graph.sparse_initializer.append(sparse)
    with pytest.raises(FormatError, match=r"'hidden'.*external file"):
        sign_model(model, metadata(), note.Signer.generate("example.org/x"))
