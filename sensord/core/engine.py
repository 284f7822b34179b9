"""The engine: one batched LSTM step of a bundle's graph in onnxruntime.

``step(x[B,F], h[L,B,H], c[L,B,H]) -> (y[B,F], h[L,B,H], c[L,B,H])``, float32. Opening a
bundle checks that the graph's inputs and outputs have the names and shapes its manifest
declares, so a graph and manifest that disagree fail at load, not at the first message.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnxruntime as ort

from sensord.arrays import F32
from sensord.core.bundle import GRAPH_FILE, INPUT_NAMES, OUTPUT_NAMES, Bundle
from sensord.errors import BundleError


@dataclass(frozen=True)
class StepResult:
    prediction: F32
    h: F32
    c: F32


class StepEngine(Protocol):
    """What the core needs of an engine: a bundle's shapes and one batched step."""

    bundle: Bundle
    features: int
    layers: int
    hidden: int
    timings: list[float] | None

    def zero_state(self, batch: int) -> tuple[F32, F32]: ...

    def step(self, x: F32, h: F32, c: F32) -> StepResult: ...


class Engine:
    """An onnxruntime session over a bundle's step graph."""

    def __init__(
        self, bundle: Bundle, threads: int = 1, timings: list[float] | None = None
    ) -> None:
        self.bundle = bundle
        self.features = len(bundle.manifest.features)
        self.inputs = self.features + len(bundle.manifest.time_features)
        self.layers = bundle.manifest.layers
        self.hidden = bundle.manifest.hidden
        # When a list is given (the daemon's), how long each step took is appended to it.
        self.timings = timings
        options = ort.SessionOptions()
        # One intra-op thread: the step is a few small matrix products, and the daemon
        # batches streams instead; more threads cost more in hand-off than they save.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                bundle.graph_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BundleError(
                f"{bundle.path / GRAPH_FILE}: onnxruntime cannot load the graph ({exc})"
            ) from None
        self._check_signature()

    def _check_signature(self) -> None:
        where = self.bundle.path / GRAPH_FILE
        f, layers, hidden = self.features, self.layers, self.hidden
        expected_inputs = {
            "x": [None, self.inputs],
            "h": [layers, None, hidden],
            "c": [layers, None, hidden],
        }
        expected_outputs = {
            "y": [None, f],
            "h_out": [layers, None, hidden],
            "c_out": [layers, None, hidden],
        }
        for kind, nodes, expected, names in (
            ("input", self._session.get_inputs(), expected_inputs, INPUT_NAMES),
            ("output", self._session.get_outputs(), expected_outputs, OUTPUT_NAMES),
        ):
            found = [node.name for node in nodes]
            if found != list(names):
                raise BundleError(f"{where}: graph {kind}s are {found}, expected {list(names)}")
            for node in nodes:
                want = expected[node.name]
                shape = [d if isinstance(d, int) else None for d in node.shape]
                if shape != want:
                    raise BundleError(
                        f"{where}: {kind} {node.name} has shape {_show(node.shape)}, the "
                        f"manifest implies {_show(want)} (F={f}, L={layers}, H={hidden})"
                    )

    def zero_state(self, batch: int) -> tuple[F32, F32]:
        shape = (self.layers, batch, self.hidden)
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def step(self, x: F32, h: F32, c: F32) -> StepResult:
        """One LSTM step for a batch of streams: ``x[B, F+T]`` in, prediction ``[B, F]`` out."""
        if self.timings is None:
            y, h_out, c_out = self._session.run(OUTPUT_NAMES, {"x": x, "h": h, "c": c})
        else:
            started = time.perf_counter()
            y, h_out, c_out = self._session.run(OUTPUT_NAMES, {"x": x, "h": h, "c": c})
            self.timings.append(time.perf_counter() - started)
        return StepResult(prediction=y, h=h_out, c=c_out)


def _show(shape: Sequence[object]) -> str:
    return "[" + ",".join("B" if d is None or isinstance(d, str) else str(d) for d in shape) + "]"


class PersistenceEngine:
    """ "Repeat the last value" in place of a bundle's network: its prediction of the next
    sample is this one, and its state stays zero. Benchmarks run every detector with it to
    measure what the model adds; it keeps the bundle's scaling, time features and shapes."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.features = len(bundle.manifest.features)
        self.layers = bundle.manifest.layers
        self.hidden = bundle.manifest.hidden
        self.timings: list[float] | None = None

    def zero_state(self, batch: int) -> tuple[F32, F32]:
        shape = (self.layers, batch, self.hidden)
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def step(self, x: F32, h: F32, c: F32) -> StepResult:
        return StepResult(prediction=np.array(x[:, : self.features], dtype=np.float32), h=h, c=c)
