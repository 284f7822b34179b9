"""Is a bundle's graph self-contained? A walk of the ONNX protobuf, without onnx.

An ONNX tensor may keep its data in another file (``external_data``, ``data_location =
EXTERNAL``); onnxruntime would then read whatever file the graph names, from wherever it
points. A bundle is one graph whose sha256 the manifest pins, so a graph that reaches
outside itself is refused. The daemon must not import onnx (or protobuf's ONNX classes,
which come with it), so this walks the protobuf wire format itself, along the only paths
where a tensor can sit: model → graph (also in functions and training info) → initializer,
sparse initializer, node attribute (tensor, tensors, subgraphs). Field numbers are onnx.proto's.
"""

from __future__ import annotations

from collections.abc import Iterator

from sensord.errors import MalformedGraphError

# message kind -> {field number: kind of the sub-message in it}
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node"},
}
_TENSOR_EXTERNAL_DATA = 13  # repeated StringStringEntryProto
_TENSOR_DATA_LOCATION = 14  # enum: 0 DEFAULT, 1 EXTERNAL
_EXTERNAL = 1
_MAX_DEPTH = 64  # subgraphs nest; a graph nested deeper than this is not a sensord graph


def uses_external_data(graph: bytes) -> bool:
    """True if any tensor of the ONNX model in ``graph`` keeps its data outside it.

    Raises MalformedGraphError for bytes that are not a well-formed protobuf message.
    """
    return _walk(memoryview(graph), "model", 0)


def _walk(message: memoryview, kind: str, depth: int) -> bool:
    if depth > _MAX_DEPTH:
        raise MalformedGraphError("messages nested too deeply")
    children = _CHILDREN.get(kind, {})
    for field, wire_type, value in _fields(message):
        if kind == "tensor":
            if field == _TENSOR_EXTERNAL_DATA and wire_type == 2:
                return True
            if field == _TENSOR_DATA_LOCATION and wire_type == 0 and value == _EXTERNAL:
                return True
            continue
        child = children.get(field)
        if (
            child is not None
            and wire_type == 2
            and isinstance(value, memoryview)
            and _walk(value, child, depth + 1)
        ):
            return True
    return False


def _fields(message: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of each field; length-delimited values as views."""
    pos, end = 0, len(message)
    while pos < end:
        key, pos = _varint(message, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(message, pos)
            yield field, wire_type, value
        elif wire_type == 1:
            pos += 8
        elif wire_type == 2:
            size, pos = _varint(message, pos)
            if pos + size > end:
                raise MalformedGraphError("a field runs past the end of its message")
            yield field, wire_type, message[pos : pos + size]
            pos += size
        elif wire_type == 5:
            pos += 4
        else:
            raise MalformedGraphError(f"wire type {wire_type} at byte {pos}")
    if pos != end:
        raise MalformedGraphError("the last field runs past the end of its message")


def _varint(message: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(message) or shift > 63:
            raise MalformedGraphError("a truncated or overlong varint")
        byte = message[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
