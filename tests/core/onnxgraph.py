"""ONNX graphs for the engine's tests, written without the onnx package.

tests/core runs with torch and onnx unimportable (tests/test_imports.py), yet the engine is
onnxruntime over a graph's bytes. So this writes the few protobuf messages an LSTM graph
needs (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto; field numbers from
onnx.proto3) for a ``NumpyEngine``'s weights: onnxruntime then runs the same network the
fake computes in numpy. Both kinds a bundle can hold: a ``sequence`` (``x[T,B,I]``) and a
``step`` (``x[B,I]``, as bundles from before sequences), each built around ONNX's LSTM
operator, the step graph's input and output given a time axis of one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sensord.core.bundle import GraphKind
from tests.fakes import NumpyEngine

OPSET = 17
IR_VERSION = 8  # the IR of opset 17
FLOAT, INT64 = 1, 7  # TensorProto.DataType
INT, TENSOR_INTS = 2, 7  # AttributeProto.AttributeType: INT, INTS
# PyTorch's (and the fake's) gate blocks are i, f, g, o; ONNX's LSTM wants i, o, f, g.
ONNX_GATE_ORDER = (0, 3, 1, 2)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s as two's complement, as protobuf does
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return _varint(field << 3 | 2) + _varint(len(raw)) + raw


def _initializer(name: str, array: npt.NDArray[np.float32] | npt.NDArray[np.int64]) -> bytes:
    """A GraphProto's initializer (field 5): a TensorProto with its data in raw_data."""
    dims = b"".join(_int(1, d) for d in array.shape)
    kind = FLOAT if array.dtype == np.float32 else INT64
    raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    return _bytes(5, dims + _int(2, kind) + _bytes(8, name) + _bytes(9, raw))


def _node(op: str, inputs: list[str], outputs: list[str], **ints: int | list[int]) -> bytes:
    attributes = b""
    for name, value in ints.items():
        if isinstance(value, int):
            attribute = _bytes(1, name) + _int(3, value) + _int(20, INT)
        else:
            attribute = _bytes(1, name) + b"".join(_int(8, v) for v in value)
            attribute += _int(20, TENSOR_INTS)
        attributes += _bytes(5, attribute)
    return (
        b"".join(_bytes(1, i) for i in inputs)
        + b"".join(_bytes(2, o) for o in outputs)
        + _bytes(4, op)
        + attributes
    )


def _value(name: str, dims: list[int | str]) -> bytes:
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in dims)
    tensor_type = _int(1, FLOAT) + _bytes(2, shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def lstm_graph(engine: NumpyEngine, kind: GraphKind) -> bytes:
    """The model bytes of ``engine``'s network as a graph of ``kind``."""
    steps: list[int | str] = ["T"] if kind == "sequence" else []
    layers, hidden, features = engine.layers, engine.hidden, engine.features
    inputs = engine.features + len(engine.bundle.manifest.time_features)
    tensors, nodes = _constants(features), list[bytes]()
    x = "x"
    if kind == "step":  # the step's x[B,I] as a sequence of one
        nodes.append(_node("Unsqueeze", ["x", "axis0"], ["x_seq"]))
        x = "x_seq"
    layer_input = x
    for layer, (weights, bias) in enumerate(engine._weights):
        tensors += _lstm_weights(layer, weights, bias, hidden)
        tensors += _initializer(f"from{layer}", np.array([layer], np.int64))
        tensors += _initializer(f"to{layer}", np.array([layer + 1], np.int64))
        for state in ("h", "c"):
            bounds = [state, f"from{layer}", f"to{layer}", "axis0"]
            nodes.append(_node("Slice", bounds, [f"{state}{layer}"]))
        lstm_inputs = [layer_input, f"W{layer}", f"R{layer}", f"B{layer}", "", f"h{layer}"]
        outputs = [f"Y{layer}", f"Yh{layer}", f"Yc{layer}"]
        nodes.append(_node("LSTM", [*lstm_inputs, f"c{layer}"], outputs, hidden_size=hidden))
        nodes.append(_node("Squeeze", [f"Y{layer}", "axis1"], [f"out{layer}"]))
        layer_input = f"out{layer}"
    tensors += _initializer("head", np.ascontiguousarray(engine._out.T))
    nodes += [
        _node("Concat", [f"Yh{layer}" for layer in range(layers)], ["h_out"], axis=0),
        _node("Concat", [f"Yc{layer}" for layer in range(layers)], ["c_out"], axis=0),
        _node("MatMul", [layer_input, "head"], ["correction"]),
        _node("Slice", [x, "zero", "features", "last_axis"], ["current"]),
        _node("Add", ["current", "correction"], ["y" if kind == "sequence" else "y_seq"]),
    ]
    if kind == "step":
        nodes.append(_node("Squeeze", ["y_seq", "axis0"], ["y"]))
    state: list[int | str] = [layers, "B", hidden]
    graph = (
        b"".join(_bytes(1, node) for node in nodes)
        + _bytes(2, f"fake-{kind}")
        + tensors
        + _bytes(11, _value("x", [*steps, "B", inputs]))
        + b"".join(_bytes(11, _value(name, state)) for name in ("h", "c"))
        + _bytes(12, _value("y", [*steps, "B", features]))
        + b"".join(_bytes(12, _value(name, state)) for name in ("h_out", "c_out"))
    )
    return _int(1, IR_VERSION) + _bytes(8, _int(2, OPSET)) + _bytes(7, graph)


def _constants(features: int) -> bytes:
    named = {
        "axis0": [0],
        "axis1": [1],
        "zero": [0],
        "features": [features],
        "last_axis": [-1],
    }
    return b"".join(_initializer(n, np.array(v, np.int64)) for n, v in named.items())


def _lstm_weights(
    layer: int, weights: npt.NDArray[np.float32], bias: npt.NDArray[np.float32], hidden: int
) -> bytes:
    """The fake's ``[4H, in + H]`` gates and ``[4H]`` bias as ONNX's W, R and B."""
    blocks = [slice(g * hidden, (g + 1) * hidden) for g in ONNX_GATE_ORDER]
    ordered = np.concatenate([weights[b] for b in blocks])
    biases = np.concatenate([bias[b] for b in blocks])
    split = weights.shape[1] - hidden
    named = {
        f"W{layer}": ordered[None, :, :split],
        f"R{layer}": ordered[None, :, split:],
        # ONNX adds an input and a recurrent bias; the fake has one, so the second is zero.
        f"B{layer}": np.concatenate([biases, np.zeros_like(biases)])[None],
    }
    return b"".join(_initializer(n, v.astype(np.float32)) for n, v in named.items())
