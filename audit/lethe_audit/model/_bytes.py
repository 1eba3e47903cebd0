"""Byte-level view of an ONNX file: its top-level protobuf records, the metadata removed.

The ``lethe.onnx/v2`` signature signs the SHA-256 of the file's exact bytes with every
top-level ``ModelProto.metadata_props`` record (field 14) cut out. Computing it needs one pass
over the bytes and no protobuf parse: an edge device hashes what it will load.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import BinaryIO

from lethe_audit.errors import FormatError

__all__ = ["ModelBytes", "scan_model_bytes", "scan_model_file"]

_METADATA_FIELD = 14  # ModelProto.metadata_props (repeated StringStringEntryProto)
_GRAPH_FIELD = 7  # ModelProto.graph


@dataclass(frozen=True)
class ModelBytes:
    """What one pass over a model file gives: its SHA-256, the metadata-stripped SHA-256 (both
    ``sha256:<hex>`` / hex as noted) and the metadata entries (nothing verified)."""

    sha256: str  #: hex SHA-256 of the whole file (what a log statement names it by)
    stripped: str  #: ``sha256:<hex>`` of the bytes without the top-level metadata records
    props: Mapping[str, str]
    data: bytes = field(default=b"", repr=False, compare=False)  #: the bytes (if kept)
    path: str | None = field(default=None, compare=False)  #: the file streamed (if one was)


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(10):
        if pos + i >= len(data):
            raise FormatError("not an ONNX model: truncated protobuf varint")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise FormatError("not an ONNX model: protobuf varint longer than 10 bytes")


def _record_end(data: memoryview, pos: int, wire: int) -> tuple[int, int]:
    """Where the value of a record starting at ``pos`` (after its tag) begins and ends."""
    if wire == 0:
        return pos, _varint(data, pos)[1]
    if wire == 1:
        return pos, pos + 8
    if wire == 5:
        return pos, pos + 4
    if wire == 2:
        length, start = _varint(data, pos)
        return start, start + length
    raise FormatError(f"not an ONNX model: protobuf wire type {wire} at top level")


def _entry(raw: memoryview) -> tuple[str, str]:
    """Decode one ``StringStringEntryProto`` (field 1 ``key``, field 2 ``value``, both strings;
    unknown fields skipped, the last value of a repeated field wins, as protobuf reads it)."""
    key = value = ""
    pos = 0
    while pos < len(raw):
        tag, after = _varint(raw, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise FormatError("not an ONNX model: malformed metadata entry (field number 0)")
        start, end = _record_end(raw, after, wire)
        if end > len(raw):
            raise FormatError("not an ONNX model: malformed metadata entry (truncated)")
        if number in (1, 2):
            if wire != 2:
                raise FormatError("not an ONNX model: a metadata key or value is not a string")
            try:
                text = bytes(raw[start:end]).decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError("not an ONNX model: metadata is not valid UTF-8") from None
            key, value = (text, value) if number == 1 else (key, text)
        pos = end
    return key, value


_HEADER = 21  # a tag varint (<= 10 bytes) + a length varint (<= 10) + 1


def scan_model_bytes(data: bytes) -> ModelBytes:
    """Split ``data`` into top-level protobuf records in one pass: hash the whole file, hash it
    without the ``metadata_props`` records, and decode those records (no ``onnx`` import).

    The two hashes share every byte before the first metadata record (the usual layout puts
    metadata near the end), so this costs about one SHA-256 of the file. :class:`FormatError`
    for bytes that are not a protobuf message, have no graph or repeat a metadata key.
    """
    view = memoryview(data)
    stripped = hashlib.sha256()
    full: hashlib._Hash | None = None
    props: dict[str, str] = {}
    pos = run = 0  # ``run``: start of the pending stretch of non-metadata bytes
    graph = False
    while pos < len(view):
        tag, after_tag = _varint(view, pos)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise FormatError("not an ONNX model: protobuf field number 0")
        start, end = _record_end(view, after_tag, wire)
        if end > len(view):
            raise FormatError("not an ONNX model: a protobuf record runs past the end of the file")
        graph = graph or (field == _GRAPH_FIELD and wire == 2)
        if field == _METADATA_FIELD:
            if wire != 2:
                raise FormatError("not an ONNX model: metadata_props is not length-delimited")
            stripped.update(view[run:pos])
            if full is None:
                full = stripped.copy()
            else:
                full.update(view[run:pos])
            full.update(view[pos:end])
            key, value = _entry(view[start:end])
            if key in props:
                raise FormatError(f"metadata key {key!r} appears twice")
            props[key] = value
            run = end
        pos = end
    if not graph:
        raise FormatError("not an ONNX model: it has no graph")
    stripped.update(view[run:])
    if full is None:
        full = stripped
    else:
        full.update(view[run:])
    return ModelBytes(
        sha256=full.hexdigest(),
        stripped="sha256:" + stripped.hexdigest(),
        props=MappingProxyType(props),
        data=data,
    )


def scan_model_file(f: BinaryIO, size: int, *, chunk: int = 1 << 20) -> ModelBytes:
    """:func:`scan_model_bytes` of the next ``size`` bytes of the open file ``f``, streamed in
    ``chunk``-sized reads through one reused buffer and not kept (``data`` is empty): about as
    fast as hashing the file can be (no fresh memory to fault in, the bytes hashed while in the
    cache). For verifying a file; :class:`FormatError` if it is not ``size`` bytes long."""
    stripped = hashlib.sha256()
    full: hashlib._Hash | None = None
    props: dict[str, str] = {}
    pending = bytearray()  # bytes from offset ``pos`` not yet classified (a header, a record)
    pos = plain_left = 0  # next record start; bytes of a plain record still to stream in
    graph = False
    read = 0
    while True:
        data = f.read(min(chunk, size - read)) if read < size else b""
        read += len(data)
        if not data and read < size:
            raise FormatError("the model file shrank while being read")
        final = read >= size
        view = memoryview(data)
        if plain_left:
            take = min(plain_left, len(view))
            stripped.update(view[:take])
            if full is not None:
                full.update(view[:take])
            plain_left -= take
            view = view[take:]
        pending += view
        while pending and not plain_left and (final or len(pending) >= _HEADER):
            head = memoryview(pending)
            tag, after_tag = _varint(head, 0)
            field, wire = tag >> 3, tag & 7
            if field == 0:
                raise FormatError("not an ONNX model: protobuf field number 0")
            start, end = _record_end(head, after_tag, wire)
            if pos + end > size:
                raise FormatError(
                    "not an ONNX model: a protobuf record runs past the end of the file"
                )
            graph = graph or (field == _GRAPH_FIELD and wire == 2)
            if field == _METADATA_FIELD:
                if wire != 2:
                    raise FormatError("not an ONNX model: metadata_props is not length-delimited")
                if end > len(pending):
                    head.release()
                    break  # decode it once all of it has arrived
                if full is None:
                    full = stripped.copy()
                full.update(head[:end])
                key, value = _entry(head[start:end])
                if key in props:
                    raise FormatError(f"metadata key {key!r} appears twice")
                props[key] = value
            else:
                take = min(end, len(pending))
                stripped.update(head[:take])
                if full is not None:
                    full.update(head[:take])
                plain_left = end - take
            head.release()
            del pending[: min(end, len(pending))]
            pos += end
        if final:
            break
    if pending or plain_left:
        raise FormatError("not an ONNX model: a protobuf record runs past the end of the file")
    if not graph:
        raise FormatError("not an ONNX model: it has no graph")
    if full is None:
        full = stripped
    return ModelBytes(
        sha256=full.hexdigest(),
        stripped="sha256:" + stripped.hexdigest(),
        props=MappingProxyType(props),
    )
