"""Signed ONNX models: metadata, content hash, signature, and offline verification."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO

from lethe_audit import note
from lethe_audit.errors import FormatError, ModelVerificationError, SignatureError
from lethe_audit.model._bytes import ModelBytes, scan_model_bytes, scan_model_file

if TYPE_CHECKING:  # onnx is imported where a proto is built or parsed: verifying needs none
    import onnx

__all__ = [
    "MAX_MODEL_BYTES",
    "MODEL_FORMAT",
    "SIGNATURE_FORMAT",
    "SIGNATURE_KEY",
    "VARIANTS",
    "ModelMetadata",
    "SignedModel",
    "content_hash",
    "read_model",
    "read_model_bytes",
    "scan_model_path",
    "sign_model",
    "signing_text",
    "signing_text_v2",
    "stripped_hash",
    "verify_model",
]

#: Format tag: the value of ``lethe.format`` and the first line of the signed text.
MODEL_FORMAT = "lethe.onnx/v1"
#: First line of the text a current model signature signs (``bytes`` line: see
#: :func:`signing_text_v2`). ``lethe.onnx/v1`` signatures (``content`` line) still verify.
SIGNATURE_FORMAT = "lethe.onnx/v2"
#: The largest model file read (protobuf's own limit is 2 GiB).
MAX_MODEL_BYTES = 2**31 - 1
#: Metadata key holding the signed note (the only key the signature does not cover).
SIGNATURE_KEY = "lethe.signature"
#: Allowed values of ``lethe.model.variant``.
VARIANTS = ("fp32", "int8")

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")

_K_FORMAT = "lethe.format"
_K_VERSION = "lethe.version"
_K_NAME = "lethe.model.name"
_K_BASE = "lethe.model.base_digest"
_K_FOLDED = "lethe.model.folded_digest"
_K_VARIANT = "lethe.model.variant"
_K_ORIGIN = "lethe.log.origin"
_K_SIZE = "lethe.log.size"
_K_ROOT = "lethe.log.root"
_K_REQUESTS = "lethe.requests"
_K_CLASSES = "lethe.forgotten_classes"
_K_SOURCE = "lethe.model.source_sha256"
_K_PREPROCESSING = "lethe.preprocessing"
#: Keys only present when set (older models have none of them).
_OPTIONAL_KEYS = (_K_SOURCE, _K_PREPROCESSING)
_MAX_PREPROCESSING = 4096  # characters of compact JSON
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEYS = (
    _K_FORMAT,
    _K_VERSION,
    _K_NAME,
    _K_BASE,
    _K_FOLDED,
    _K_VARIANT,
    _K_ORIGIN,
    _K_SIZE,
    _K_ROOT,
    _K_REQUESTS,
    _K_CLASSES,
)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def _compact_sorted(value: Any) -> str:
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=True, sort_keys=True, allow_nan=False
    )


def _single_line(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or any(ord(c) < 0x20 for c in value):
        raise FormatError(f"{what} must be a non-empty single line without control characters")
    return value


@dataclass(frozen=True)
class ModelMetadata:
    """What a shipped ONNX model says about itself (stored as model ``metadata_props``).

    ``log_origin`` / ``log_size`` / ``log_root`` name the log state the apply was made
    against: the latest checkpoint *before* the attestation of this model was appended (so
    the attestation can name the final file by its SHA-256, and the attestation's index is
    ``>= log_size``). ``requests`` are the ids of every request the model applies;
    ``forgotten_classes`` the union of their classes. ``source_sha256`` (a variant such as
    int8 only) is the hex SHA-256 of the fp32 file it was made from: the apply's attestation
    names that file, so its receipt also binds the variant. ``preprocessing`` (optional) is how
    to feed the model (``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``,
    ``input_range``: a JSON object). Both are absent from older models. Validated at
    construction.
    """

    model_name: str
    base_digest: str
    folded_digest: str
    log_origin: str
    log_size: int
    log_root: str
    requests: tuple[str, ...]
    forgotten_classes: tuple[int, ...]
    lethe_version: str
    variant: str = "fp32"
    source_sha256: str | None = None
    preprocessing: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        _single_line(self.model_name, "model_name")
        _single_line(self.lethe_version, "lethe_version")
        _single_line(self.log_origin, "log_origin")
        for name in ("base_digest", "folded_digest"):
            if not isinstance(getattr(self, name), str) or not _DIGEST.fullmatch(
                getattr(self, name)
            ):
                raise FormatError(f"{name} must look like sha256:<64 hex digits>")
        if type(self.log_size) is not int or self.log_size < 0:
            raise FormatError(f"log_size must be an integer >= 0, got {self.log_size!r}")
        try:
            root = base64.b64decode(self.log_root, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise FormatError("log_root must be the base64 checkpoint root hash") from None
        if len(root) != 32:
            raise FormatError(f"log_root must encode 32 bytes, got {len(root)}")
        reqs = tuple(self.requests)
        if not all(isinstance(r, str) and _REQUEST_ID.fullmatch(r) for r in reqs):
            raise FormatError(f"requests must be request ids ({_REQUEST_ID.pattern})")
        if len(set(reqs)) != len(reqs):
            raise FormatError("requests must not repeat an id")
        object.__setattr__(self, "requests", tuple(sorted(reqs)))
        classes = tuple(self.forgotten_classes)
        if not all(type(c) is int and c >= 0 for c in classes) or len(set(classes)) != len(classes):
            raise FormatError("forgotten_classes must be distinct class ids (integers >= 0)")
        object.__setattr__(self, "forgotten_classes", tuple(sorted(classes)))
        if self.variant not in VARIANTS:
            raise FormatError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        self._check_optional()

    def _check_optional(self) -> None:
        if self.source_sha256 is not None:
            if self.variant == "fp32":
                raise FormatError("source_sha256 names the fp32 file a variant was made from")
            if not isinstance(self.source_sha256, str) or not _HEX64.fullmatch(self.source_sha256):
                raise FormatError("source_sha256 must be 64 lowercase hex digits")
        if self.preprocessing is not None:
            if not isinstance(self.preprocessing, Mapping):
                raise FormatError("preprocessing must be a JSON object (or None)")
            try:
                text = _compact_sorted(dict(self.preprocessing))
            except (TypeError, ValueError, RecursionError) as e:
                raise FormatError(f"preprocessing is not plain JSON: {e}") from None
            if len(text) > _MAX_PREPROCESSING:
                raise FormatError(f"preprocessing is over {_MAX_PREPROCESSING} characters of JSON")
            object.__setattr__(self, "preprocessing", MappingProxyType(json.loads(text)))

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` entries (all strings; lists as compact JSON)."""
        return {
            _K_FORMAT: MODEL_FORMAT,
            _K_VERSION: self.lethe_version,
            _K_NAME: self.model_name,
            _K_BASE: self.base_digest,
            _K_FOLDED: self.folded_digest,
            _K_VARIANT: self.variant,
            _K_ORIGIN: self.log_origin,
            _K_SIZE: str(self.log_size),
            _K_ROOT: self.log_root,
            _K_REQUESTS: _compact(list(self.requests)),
            _K_CLASSES: _compact(list(self.forgotten_classes)),
            **({_K_SOURCE: self.source_sha256} if self.source_sha256 is not None else {}),
            **(
                {_K_PREPROCESSING: _compact_sorted(dict(self.preprocessing))}
                if self.preprocessing is not None
                else {}
            ),
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> ModelMetadata:
        """Read the metadata back; :class:`FormatError` if a key is missing or malformed."""
        if props.get(_K_FORMAT) != MODEL_FORMAT:
            raise FormatError(
                f"not a Lethe model (metadata {_K_FORMAT} is {props.get(_K_FORMAT)!r}, "
                f"expected {MODEL_FORMAT!r})"
            )
        missing = [k for k in _KEYS if k not in props]
        if missing:
            raise FormatError(f"the model metadata misses {missing}")
        try:
            size_text = props[_K_SIZE]
            # ASCII digits only (str.isdigit accepts "²"), at most 19 (a tree size is a uint64).
            if not re.fullmatch(r"0|[1-9][0-9]{0,18}", size_text):
                raise ValueError(f"{_K_SIZE} {size_text[:40]!r} is not a decimal integer")
            requests = json.loads(props[_K_REQUESTS])
            classes = json.loads(props[_K_CLASSES])
            if not isinstance(requests, list) or not isinstance(classes, list):
                raise ValueError("requests and forgotten classes must be JSON arrays")
            pre = json.loads(props[_K_PREPROCESSING]) if _K_PREPROCESSING in props else None
            if pre is not None and not isinstance(pre, dict):
                raise ValueError(f"{_K_PREPROCESSING} must be a JSON object")
        except (ValueError, RecursionError) as e:
            raise FormatError(f"malformed model metadata: {type(e).__name__}: {e}") from None
        meta = cls(
            model_name=props[_K_NAME],
            base_digest=props[_K_BASE],
            folded_digest=props[_K_FOLDED],
            log_origin=props[_K_ORIGIN],
            log_size=int(size_text),
            log_root=props[_K_ROOT],
            requests=tuple(requests),
            forgotten_classes=tuple(classes),
            lethe_version=props[_K_VERSION],
            variant=props[_K_VARIANT],
            source_sha256=props.get(_K_SOURCE),
            preprocessing=pre,
        )
        if meta.to_props() != {k: props[k] for k in (*_KEYS, *_OPTIONAL_KEYS) if k in props}:
            raise FormatError("model metadata is not in canonical form (sorted, compact JSON)")
        return meta

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "base_digest": self.base_digest,
            "folded_digest": self.folded_digest,
            "variant": self.variant,
            "log_origin": self.log_origin,
            "log_size": self.log_size,
            "log_root": self.log_root,
            "requests": list(self.requests),
            "forgotten_classes": list(self.forgotten_classes),
            "lethe_version": self.lethe_version,
            "source_sha256": self.source_sha256,
            "preprocessing": None if self.preprocessing is None else dict(self.preprocessing),
        }


def _graph_items(graph: Any, where: str) -> tuple[list[tuple[Any, str]], list[Any]]:
    """The tensors of one graph (initializers, sparse initializers) and its nodes."""
    tensors = [(t, where) for t in graph.initializer]
    for sp in graph.sparse_initializer:
        tensors += [(sp.values, where), (sp.indices, where)]
    return tensors, [(n, f"{where}, node {n.name or n.op_type!r}") for n in graph.node]


def _attribute_items(attrs: Any, where: str) -> tuple[list[tuple[Any, str]], list[tuple[Any, str]]]:
    """Tensors held by attributes (TENSOR(S), SPARSE_TENSOR(S)) and subgraphs (GRAPH(S))."""
    tensors: list[tuple[Any, str]] = []
    graphs: list[tuple[Any, str]] = []
    for a in attrs:
        at = f"{where}, attribute {a.name!r}"
        if a.HasField("t"):
            tensors.append((a.t, at))
        tensors += [(t, at) for t in a.tensors]
        for sp in [a.sparse_tensor] if a.HasField("sparse_tensor") else []:
            tensors += [(sp.values, at), (sp.indices, at)]
        for sp in a.sparse_tensors:
            tensors += [(sp.values, at), (sp.indices, at)]
        if a.HasField("g"):
            graphs.append((a.g, at))
        graphs += [(g, at) for g in a.graphs]
    return tensors, graphs


def _iter_tensors(model: onnx.ModelProto) -> Iterator[tuple[Any, str]]:
    """Every TensorProto of ``model`` with where it sits: initializers and sparse initializers
    of the main graph and of every subgraph (If/Loop/Scan bodies, GRAPH(S) attributes, at any
    depth), tensors in node attributes (TENSOR(S), SPARSE_TENSOR(S)), in local functions
    (their nodes and attribute defaults) and in training-info graphs. Iterative: no recursion
    limit to hit on deeply nested subgraphs."""
    graphs: list[tuple[Any, str]] = [(model.graph, "main graph")]
    for k, info in enumerate(model.training_info):
        graphs += [(info.initialization, f"training_info[{k}].initialization")]
        graphs += [(info.algorithm, f"training_info[{k}].algorithm")]
    nodes: list[tuple[Any, str]] = []
    for f in model.functions:
        where = f"function {f.domain}:{f.name}"
        nodes += [(n, f"{where}, node {n.name or n.op_type!r}") for n in f.node]
        tensors, sub = _attribute_items(f.attribute_proto, where)
        yield from tensors
        graphs += sub
    while graphs or nodes:
        if graphs:
            graph, where = graphs.pop()
            tensors, more_nodes = _graph_items(graph, f"{where} {graph.name!r}".strip())
            yield from tensors
            nodes += more_nodes
            continue
        node, where = nodes.pop()
        tensors, sub = _attribute_items(node.attribute, where)
        yield from tensors
        graphs += sub


def _check_self_contained(model: onnx.ModelProto) -> None:
    """Refuse a model with external tensor data anywhere (the content hash would not cover
    it: swapping the data file would change the outputs while the signature still verifies)."""
    import onnx

    for t, where in _iter_tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            raise FormatError(
                f"tensor {t.name!r} ({where}) keeps its data in an external file; Lethe models "
                "are self-contained (the content hash must cover every weight)"
            )


def content_hash(model: onnx.ModelProto) -> str:
    """``sha256:<hex>`` of the model serialised deterministically without ``metadata_props``.

    Covers the graph, every weight, opsets, producer and IR version; excludes only the
    model-level metadata (which the signature covers separately). External tensor data is
    refused (it would not be covered).
    """
    import onnx

    _check_self_contained(model)
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.metadata_props[:]
    return "sha256:" + hashlib.sha256(bare.SerializeToString(deterministic=True)).hexdigest()


def signing_text(content: str, props: Mapping[str, str]) -> str:
    """The note text a model signature signs.

    ``lethe.onnx/v1``, then ``content <content hash>``, then one ``<key> <value>`` line per
    metadata entry except the signature, sorted by key. Keys and values must be single-line.
    """
    if not _DIGEST.fullmatch(content):
        raise FormatError(f"content hash {content!r} is not sha256:<64 hex digits>")
    lines = [MODEL_FORMAT, f"content {content}"]
    for key in sorted(props):
        if key == SIGNATURE_KEY:
            continue
        if not _KEY.fullmatch(key):
            raise FormatError(f"metadata key {key!r} cannot be signed (letters, digits, ._:/-)")
        _single_line(props[key], f"metadata value of {key}")
        lines.append(f"{key} {props[key]}")
    return "\n".join(lines) + "\n"


def signing_text_v2(stripped: str, props: Mapping[str, str]) -> str:
    """The note text a ``lethe.onnx/v2`` model signature signs.

    ``lethe.onnx/v2``, then ``bytes <stripped hash>`` (:func:`stripped_hash`: SHA-256 of the
    file's exact bytes with its top-level metadata records cut out), then one ``<key> <value>``
    line per metadata entry except the signature, sorted by key.
    """
    text = signing_text(stripped, props)
    _, _, rest = text.partition("\n")
    return f"{SIGNATURE_FORMAT}\n" + rest.replace("content ", "bytes ", 1)


def stripped_hash(data: bytes) -> str:
    """``sha256:<hex>`` of a model file's bytes without its top-level ``metadata_props``
    records (cut out byte by byte, no re-serialisation): what ``lethe.onnx/v2`` signs."""
    return scan_model_bytes(data).stripped


def sign_model(
    model: onnx.ModelProto,
    metadata: ModelMetadata,
    signers: note.Signer | Sequence[note.Signer],
) -> onnx.ModelProto:
    """A copy of ``model`` with ``metadata`` and a signature over its bytes and metadata.

    Any metadata the model already had is replaced. The signature is a C2SP signed note
    (:func:`signing_text_v2` + one Ed25519 signature line per signer) stored under
    ``lethe.signature``; verify it with :func:`verify_model` and the signers' vkeys. Save the
    returned proto with ``SerializeToString()`` (adding metadata entries never changes the
    bytes of the other fields, so the signed stripped hash is that of the saved file).
    External tensor data anywhere is refused (:class:`FormatError`) before signing.
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.metadata_props[:]
    _check_self_contained(out)
    props = metadata.to_props()
    text = signing_text_v2(stripped_hash(out.SerializeToString()), props)
    props[SIGNATURE_KEY] = note.sign(text, signers)
    for key in sorted(props):
        out.metadata_props.add(key=key, value=props[key])
    return out


@dataclass(frozen=True)
class SignedModel:
    """A model file as read (nothing verified): its bytes' SHA-256, content hash, metadata.

    ``stripped`` is the SHA-256 of the file's bytes without the metadata records (what a
    ``lethe.onnx/v2`` signature signs; :func:`stripped_hash`).
    """

    model: onnx.ModelProto = field(repr=False)
    sha256: str
    content_hash: str
    props: Mapping[str, str]
    stripped: str | None = None

    @property
    def signature(self) -> str | None:
        return self.props.get(SIGNATURE_KEY)

    def metadata(self) -> ModelMetadata:
        """The parsed Lethe metadata (:class:`FormatError` if absent or malformed)."""
        return ModelMetadata.from_props(self.props)


@contextmanager
def _open_model(path: str | os.PathLike[str], limit: int) -> Iterator[tuple[BinaryIO, int, Path]]:
    """One open regular file of at most ``limit`` bytes (not a FIFO, device or directory),
    unbuffered, with its size; else :class:`FormatError`."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FormatError(f"{p}: no such model file") from None
    except OSError as e:
        raise FormatError(f"{p}: cannot open the model file: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(f"{p}: not a regular file (a model must be a plain file)")
        if st.st_size > limit:
            raise FormatError(f"{p}: {st.st_size} bytes, more than the {limit}-byte model limit")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb", buffering=0) as f:
        yield f, st.st_size, p


def read_model_bytes(path: str | os.PathLike[str], *, limit: int = MAX_MODEL_BYTES) -> bytes:
    """The bytes of a model file, read once from one open file: a regular file (not a FIFO,
    device or directory) of at most ``limit`` bytes, else :class:`FormatError`."""
    with _open_model(path, limit) as (f, size, p):
        data = f.read(size + 1)  # one read of the whole file, normally
        if len(data) > size:  # it grew since fstat: read on, bounded
            parts, total = [data], len(data)
            while total <= limit and (chunk := f.read(1 << 24)):
                parts.append(chunk)
                total += len(chunk)
            data = b"".join(parts)
    if len(data) > limit:
        raise FormatError(f"{p}: grew past the {limit}-byte model limit while being read")
    return data


def scan_model_path(path: str | os.PathLike[str], *, limit: int = MAX_MODEL_BYTES) -> ModelBytes:
    """:func:`~lethe_audit.model.scan_model_bytes` of a model file, streamed (one open file,
    the bytes hashed as they are read and not kept: ``data`` is empty). The fast path of
    :func:`verify_model`; :class:`FormatError` for a file that is not a regular one of at most
    ``limit`` bytes, that changes size while read, or is not a model."""
    with _open_model(path, limit) as (f, size, p):
        try:
            scanned = scan_model_file(f, size)
        except FormatError as e:
            raise FormatError(f"{p}: {e}") from None
        if f.read(1):
            raise FormatError(f"{p}: the model file grew while being read")
    return replace(scanned, path=str(p))


def read_model(source: str | os.PathLike[str] | bytes | onnx.ModelProto) -> SignedModel:
    """Read an ONNX model (path, bytes or proto) without verifying anything."""
    import onnx

    if isinstance(source, onnx.ModelProto):
        data = source.SerializeToString()
        proto = source
    else:
        data = source if isinstance(source, bytes) else read_model_bytes(source)
        try:
            proto = onnx.load_model_from_string(data)
        except Exception as e:  # protobuf's DecodeError and friends
            raise FormatError(f"not an ONNX model: {e}") from None
        if not proto.graph.node and not proto.graph.output:
            raise FormatError("not an ONNX model: it has no graph")
    props: dict[str, str] = {}
    for entry in proto.metadata_props:
        if entry.key in props:
            raise FormatError(f"metadata key {entry.key!r} appears twice")
        props[entry.key] = entry.value
    return SignedModel(
        model=proto,
        sha256=hashlib.sha256(data).hexdigest(),
        content_hash=content_hash(proto),
        props=MappingProxyType(props),
        stripped=scan_model_bytes(data).stripped,
    )


@dataclass
class _Subject:
    """What verification looks at: hashes and metadata of one model, the canonical content
    hash computed only when needed (a v1 signature, a receipt that names it)."""

    sha256: str
    stripped: str
    props: Mapping[str, str]
    _content: Callable[[], str]
    _cached: str | None = None

    @property
    def content_hash(self) -> str:
        if self._cached is None:
            self._cached = self._content()
        return self._cached

    @property
    def signature(self) -> str | None:
        return self.props.get(SIGNATURE_KEY)


def _is_proto(source: object) -> bool:
    """Whether ``source`` is an ``onnx.ModelProto`` (without importing onnx: if it is not
    loaded, nothing can be one)."""
    mod = sys.modules.get("onnx")
    return mod is not None and isinstance(source, mod.ModelProto)


def _subject(
    source: str | os.PathLike[str] | bytes | onnx.ModelProto | SignedModel | ModelBytes,
) -> _Subject:
    if isinstance(source, SignedModel):
        model = source
        stripped = model.stripped or scan_model_bytes(model.model.SerializeToString()).stripped
        return _Subject(model.sha256, stripped, model.props, lambda: model.content_hash)
    if _is_proto(source):
        return _subject(read_model(source))  # type: ignore[arg-type]
    if isinstance(source, bytes):
        source = scan_model_bytes(source)
    if isinstance(source, ModelBytes) and (source.data or source.path is None):
        data = source.data
        return _Subject(
            source.sha256, source.stripped, source.props, lambda: read_model(data).content_hash
        )
    scanned = source if isinstance(source, ModelBytes) else scan_model_path(source)
    path = scanned.path or ""  # streamed: a v2 signature needs nothing more

    def content() -> str:  # a v1 signature or an old receipt: parse the file, once
        again = read_model(path)
        if again.sha256 != scanned.sha256:
            raise FormatError(f"{path}: the model file changed while being verified")
        return again.content_hash

    return _Subject(scanned.sha256, scanned.stripped, scanned.props, content)


_HASH_LINE = {MODEL_FORMAT: "content", SIGNATURE_FORMAT: "bytes"}


def _signed_lines(text: str) -> tuple[str, str | None, dict[str, str]]:
    lines = text.rstrip("\n").split("\n")
    header = lines[0] if lines else ""
    hash_key = _HASH_LINE.get(header)
    content: str | None = None
    kv: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        if key == hash_key and content is None:
            content = value
        else:
            kv[key] = value
    return header, content, kv


def _expected_text(header: str, model: _Subject) -> str | None:
    """The text a signature in format ``header`` must sign for this model (None: no such
    format, or metadata that cannot be signed)."""
    try:
        if header == SIGNATURE_FORMAT:
            return signing_text_v2(model.stripped, model.props)
        if header == MODEL_FORMAT:
            return signing_text(model.content_hash, model.props)
    except FormatError:
        return None
    return None


def _diagnose(signed: str, model: _Subject) -> ModelVerificationError:
    """Say what differs between the signed text and the file."""
    header, content, kv = _signed_lines(signed)
    if header not in _HASH_LINE or content is None:
        return ModelVerificationError(
            f"the signature is a valid signed note but not a model signature (its first line "
            f"is {header[:60]!r}; this verifier reads {SIGNATURE_FORMAT} and {MODEL_FORMAT})",
            what="signature",
        )
    file_props = {k: v for k, v in model.props.items() if k != SIGNATURE_KEY}
    problems: list[tuple[str, str]] = []
    mine = model.stripped if header == SIGNATURE_FORMAT else model.content_hash
    if content != mine:
        label = "file hash without metadata" if header == SIGNATURE_FORMAT else "content hash"
        problems.append(
            (
                "content",
                f"the graph or weights changed after signing ({label} {mine}, signed {content})",
            )
        )
    for key in sorted(set(kv) | set(file_props)):
        if key not in file_props:
            problems.append((f"metadata:{key}", f"metadata {key} was removed"))
        elif key not in kv:
            problems.append((f"metadata:{key}", f"metadata {key} was added after signing"))
        elif kv[key] != file_props[key]:
            problems.append(
                (
                    f"metadata:{key}",
                    f"metadata {key} is {file_props[key]!r} but {kv[key]!r} was signed",
                )
            )
    if not problems:  # e.g. a value with a newline that only shows in the raw text
        problems.append(("metadata", "the metadata does not match the signed text"))
    return ModelVerificationError(
        "the model does not match its signature: " + "; ".join(p for _, p in problems),
        what=problems[0][0],
    )


def verify_model(
    source: str | os.PathLike[str] | bytes | onnx.ModelProto | SignedModel | ModelBytes,
    verifiers: note.Verifier | Sequence[note.Verifier],
    *,
    receipt: str | bytes | None = None,
    origin: str | None = None,
) -> None:
    """Verify a signed ONNX model offline (no torch): returns None or raises.

    Checks that ``lethe.signature`` is a signed note by a trusted key, that its text equals
    the one rebuilt from the file (a ``lethe.onnx/v2`` signature: SHA-256 of the exact file
    bytes with the metadata records cut out, one pass, no parse; a ``lethe.onnx/v1`` one: the
    recomputed canonical content hash) and every metadata entry, and that the metadata is
    well-formed. A path is read once (a regular file, :data:`MAX_MODEL_BYTES` at most). With
    ``receipt`` (a Lethe deletion receipt: C2SP tlog-proof carrying the logged envelope), also
    verifies the receipt and that its statement is the applied unlearning attestation of this
    model (file SHA-256 or content hash, digests, classes, requests, log). Raises
    :class:`~lethe_audit.errors.ModelVerificationError` whose ``what`` names the part at fault
    (``signature``, ``content``, ``metadata:<key>``, ``receipt``), or the receipt verifier's own
    errors.
    """
    _verify_subject(_subject(source), verifiers, receipt=receipt, origin=origin)


def _verify_subject(
    model: _Subject,
    verifiers: note.Verifier | Sequence[note.Verifier],
    *,
    receipt: str | bytes | None,
    origin: str | None,
) -> ModelMetadata:
    sig = model.signature
    if sig is None:
        raise ModelVerificationError(
            f"the model is not signed (no {SIGNATURE_KEY} metadata); sign it with the log key",
            what="signature",
        )
    try:
        signers = note.signed_by(sig, verifiers)
    except (SignatureError, FormatError) as e:
        raise ModelVerificationError(
            f"the model's signature does not verify: {e}", what="signature"
        ) from e
    signed = note.parse(sig).text
    if signed != _expected_text(signed.partition("\n")[0], model):
        raise _diagnose(signed, model)
    meta = ModelMetadata.from_props(model.props)
    _check_key_window(signers, verifiers, meta.log_size)
    if origin is not None and meta.log_origin != origin:
        raise ModelVerificationError(
            f"the model names log {meta.log_origin!r}, not {origin!r}",
            what="metadata:lethe.log.origin",
        )
    if receipt is not None:
        _check_receipt(model, meta, receipt, verifiers)
    return meta


def _check_key_window(
    signers: Sequence[note.Verifier],
    verifiers: note.Verifier | Sequence[note.Verifier],
    log_size: int,
) -> None:
    """The model was signed when the log had ``log_size`` entries: a key must have been valid
    then (a key past its retirement signs nothing, see ``lethe_audit.keys.TrustedKey``)."""
    from lethe_audit.verify import KeyWindows

    try:
        KeyWindows(verifiers).check(
            "the model's signature", log_size, (v.key_hint for v in signers)
        )
    except SignatureError as e:
        raise ModelVerificationError(str(e), what="signature") from None


def _check_receipt(
    model: _Subject,
    meta: ModelMetadata,
    receipt: str | bytes,
    verifiers: note.Verifier | Sequence[note.Verifier],
) -> None:
    """The receipt verifies and its statement attests this model: an applied unlearning
    attestation naming the file (or, for a variant, the fp32 file it was made from), or the
    variant's own attestation (``urn:lethe:attestation:variant:v1``)."""
    from lethe_audit.statements import UNLEARNING_V1, VARIANT_V1
    from lethe_audit.verify import parse_receipt, verify_receipt

    verify_receipt(receipt, verifiers, origin=meta.log_origin)
    r = parse_receipt(receipt)
    st = r.statement

    def fail(message: str) -> ModelVerificationError:
        return ModelVerificationError(
            f"receipt entry {r.index}: {message}",
            what="receipt",
            index=r.index,
            size=r.checkpoint.size,
        )

    p = st.predicate
    if st.predicate_type == UNLEARNING_V1:
        if p.get("outcome") != "applied":
            raise fail(f"the attestation's outcome is {p.get('outcome')!r}, not 'applied'")
        request_ids = {q["id"] for q in p.get("requests", ())}
    elif st.predicate_type == VARIANT_V1:
        request_ids = set(p.get("requests", ()))
    else:
        raise fail(f"the logged statement is a {st.predicate_type}, not an unlearning attestation")
    _check_names_model(model, meta, st, fail)
    _check_same_apply(meta, p, request_ids, fail)
    if r.index < meta.log_size:
        raise fail(
            f"the attestation is entry {r.index} but the model names the log at size "
            f"{meta.log_size}: it must have been logged after that state"
        )


def _check_names_model(
    model: _Subject, meta: ModelMetadata, st: Any, fail: Callable[[str], ModelVerificationError]
) -> None:
    """The statement names this file by SHA-256 (an unlearning attestation: or the fp32 file
    a variant was made from), or, for an older attestation, by its content hash."""
    from lethe_audit.statements import VARIANT_V1

    onnx_ref = st.predicate.get("onnx") or {}
    if st.predicate_type == VARIANT_V1:  # a variant's own attestation names exactly one file
        digests = {onnx_ref.get("sha256")}
    else:
        digests = {s.digest.get("sha256") for s in st.subject}
        if meta.source_sha256 is not None and meta.source_sha256 in digests:
            return  # the apply's attestation names the fp32 file this variant was made from
    if model.sha256 in digests:
        return
    if onnx_ref.get("content_hash") == model.content_hash:
        return
    raise fail(
        f"the attestation names another ONNX model (content hash "
        f"{onnx_ref.get('content_hash')}), not this one ({model.content_hash}, file sha256 "
        f"{model.sha256})"
    )


def _check_same_apply(
    meta: ModelMetadata,
    p: Mapping[str, Any],
    request_ids: set[str],
    fail: Callable[[str], ModelVerificationError],
) -> None:
    m = p["model"]
    for label, logged, mine in (
        ("model name", m.get("name"), meta.model_name),
        ("base model digest", m.get("base_digest"), meta.base_digest),
        ("folded model digest", m.get("folded_digest"), meta.folded_digest),
        ("forgotten classes", tuple(p.get("forgotten_classes", ())), meta.forgotten_classes),
    ):
        if logged != mine:
            raise fail(f"{label} is {logged!r} in the log but {mine!r} in the model")
    missing = sorted(request_ids - set(meta.requests))
    if missing:
        raise fail(f"requests {missing} of the attestation are not in the model's metadata")
