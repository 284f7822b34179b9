"""The engine: a bundle's graph in onnxruntime, over a batch of streams.

``run(x[T,B,I], h[L,B,H], c[L,B,H]) -> (predictions[T,B,F], h, c)`` steps every stream of
the batch through T readings (I inputs: the F features, then the time features): the
prediction after each step, the state after the last. ``step(x[B,I], h, c) -> (y[B,F], h,
c)`` is one step (T = 1). float32 throughout. A ``sequence`` graph (bundle.py,
``graph.kind``) runs the T steps in ONE session call (a run of more than ``ROWS_PER_CALL``
rows, T x B, in calls of whole steps); a ``step`` graph (bundles from before) takes one call
per step, so ``run`` loops over T, and both kinds give the numbers their graph gives.
Opening a bundle checks that the graph's inputs and outputs have the names and shapes its
manifest declares, so a graph and manifest that disagree fail at load, not at the first
message.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnxruntime as ort

from sensord.arrays import F32, F64
from sensord.core.bundle import (
    AHEAD_OUTPUT,
    GRAPH_FILE,
    INPUT_NAMES,
    OUTPUT_NAMES,
    SPREAD_OUTPUT,
    Bundle,
)
from sensord.errors import BundleError

# At most this many rows (T x B) per session call of a sequence graph; a longer run is cut
# into calls of whole steps. onnxruntime's LSTM holds buffers of ~2 KB per row (a 2x64 net)
# and its memory arena keeps the largest call's for good: one call of 256 steps x 1,000
# streams grew the process by 525 MB. Measured on a 2x64 LSTM, 256 steps of 10 to 1,000
# streams: calls of 1,600 to 4,000 rows were also the fastest, 1.1x to 1.5x faster per step
# than one call of all 256 (their buffers stay in cache).
ROWS_PER_CALL = 4096


@dataclass(frozen=True)
class StepResult:
    prediction: F32
    h: F32
    c: F32
    spread: F32 | None = None  # [B, F] the spread head's, if the graph has one
    ahead: F32 | None = None  # [B, F] the horizon head's, if the graph has one


@dataclass(frozen=True)
class HorizonHead:
    """The horizon head (bundle.py ``Heads.horizon``): K steps ahead, and ``gain[F]``."""

    steps: int
    gain: F64


def horizon_head(bundle: Bundle) -> HorizonHead | None:
    heads = bundle.manifest.heads
    if heads.horizon == 0:
        return None
    return HorizonHead(heads.horizon, np.array(heads.horizon_gain, dtype=np.float64))


@dataclass(frozen=True)
class CrossHead:
    """The virtual-sensor head as arrays (bundle.py ``Cross``): ``weights[F, F]``, ``gain[F]``."""

    weights: F64
    gain: F64


def cross_head(bundle: Bundle) -> CrossHead | None:
    """The bundle's virtual-sensor head, if it has one."""
    cross = bundle.manifest.heads.cross
    if cross is None:
        return None
    return CrossHead(np.array(cross.weights, dtype=np.float64), np.array(cross.gain, np.float64))


@dataclass(frozen=True)
class SequenceResult:
    """``predictions[t]`` is the prediction made after step ``t`` (of the reading at
    ``t + 1``); ``h`` and ``c`` the state after the last step."""

    predictions: F32
    h: F32
    c: F32
    spread: F32 | None = None  # [T, B, F] the spread head's, if the graph has one
    ahead: F32 | None = None  # [T, B, F] the horizon head's, if the graph has one


class StepEngine(Protocol):
    """What the core needs of an engine: a bundle's shapes, one batched step, and a batch
    of streams stepped through T readings each; and the model's heads beyond its
    prediction (``cross``: the virtual sensor, ``horizon``: how far ahead the horizon head
    looks; None without either; the spread and the look ahead come with the results)."""

    bundle: Bundle
    features: int
    layers: int
    hidden: int
    timings: list[float] | None
    cross: CrossHead | None
    horizon: HorizonHead | None

    def zero_state(self, batch: int) -> tuple[F32, F32]: ...

    def step(self, x: F32, h: F32, c: F32) -> StepResult: ...

    def run(self, x: F32, h: F32, c: F32) -> SequenceResult: ...


class Engine:
    """An onnxruntime session over a bundle's graph, a sequence's or (older bundles) a step's."""

    def __init__(
        self,
        bundle: Bundle,
        threads: int = 1,
        timings: list[float] | None = None,
        rows_per_call: int = ROWS_PER_CALL,
    ) -> None:
        self.bundle = bundle
        self.kind = bundle.manifest.graph.kind
        self.rows_per_call = rows_per_call
        self.features = len(bundle.manifest.features)
        self.inputs = self.features + len(bundle.manifest.time_features)
        self.layers = bundle.manifest.layers
        self.hidden = bundle.manifest.hidden
        self.spread = bundle.manifest.heads.spread
        self.cross = cross_head(bundle)
        self.horizon = horizon_head(bundle)
        extra = ((SPREAD_OUTPUT,) if self.spread else ()) + (
            (AHEAD_OUTPUT,) if self.horizon else ()
        )
        self.outputs = (*OUTPUT_NAMES, *extra)
        # When a list is given (the daemon's), how long each session call took is appended.
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
        steps: list[int | str] = ["T"] if self.kind == "sequence" else []
        state: list[int | str] = [layers, "B", hidden]
        expected_inputs = {"x": [*steps, "B", self.inputs], "h": state, "c": state}
        expected_outputs = {"y": [*steps, "B", f], "h_out": state, "c_out": state}
        expected_outputs[SPREAD_OUTPUT] = expected_outputs[AHEAD_OUTPUT] = [*steps, "B", f]
        for kind, nodes, expected, names in (
            ("input", self._session.get_inputs(), expected_inputs, INPUT_NAMES),
            ("output", self._session.get_outputs(), expected_outputs, self.outputs),
        ):
            found = [node.name for node in nodes]
            if found != list(names):
                raise BundleError(f"{where}: graph {kind}s are {found}, expected {list(names)}")
            for node in nodes:
                want = expected[node.name]
                if _fixed(node.shape) != _fixed(want):
                    raise BundleError(
                        f"{where}: {kind} {node.name} has shape {_show(node.shape)}, the "
                        f"manifest implies {_show(want)} (graph.kind {self.kind}, F={f}, "
                        f"L={layers}, H={hidden})"
                    )

    def zero_state(self, batch: int) -> tuple[F32, F32]:
        shape = (self.layers, batch, self.hidden)
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def step(self, x: F32, h: F32, c: F32) -> StepResult:
        """One step for a batch of streams: ``x[B, I]`` in, prediction ``[B, F]`` out."""
        if self.kind == "step":
            y, h_out, c_out, *heads = self._call(x, h, c)
            return StepResult(y, h_out, c_out, *self._heads(heads))
        y, h_out, c_out, *heads = self._call(x[None], h, c)  # a sequence of one
        spread, ahead = self._heads(heads)
        return StepResult(
            y[0],
            h_out,
            c_out,
            None if spread is None else spread[0],
            None if ahead is None else ahead[0],
        )

    def _heads(self, extra: list[F32]) -> tuple[F32 | None, F32 | None]:
        """The spread and look-ahead outputs among a call's extra outputs (None: no head)."""
        found = iter(extra)
        spread = next(found) if self.spread else None
        ahead = next(found) if self.horizon else None
        return spread, ahead

    def run(self, x: F32, h: F32, c: F32) -> SequenceResult:
        """T steps for a batch of streams: ``x[T, B, I]`` in, ``predictions[T, B, F]`` out.
        A sequence graph takes one session call (for up to ``rows_per_call`` rows, T x B),
        a step graph one per step."""
        span = max(1, self.rows_per_call // max(1, x.shape[1]))
        if self.kind == "sequence" and 0 < len(x) <= span:
            y, h_out, c_out, *heads = self._call(x, h, c)
            return SequenceResult(y, h_out, c_out, *self._heads(heads))
        outputs = [np.empty((len(x), x.shape[1], self.features), np.float32)]
        outputs += [np.empty_like(outputs[0]) for _ in self.outputs[len(OUTPUT_NAMES) :]]
        if self.kind == "step":  # (or no steps: the state as it was)
            for t in range(len(x)):
                y, h, c, *heads = self._call(x[t], h, c)
                for into, got in zip(outputs, [y, *heads], strict=True):
                    into[t] = got
        else:
            for start in range(0, len(x), span):
                y, h, c, *heads = self._call(x[start : start + span], h, c)
                for into, got in zip(outputs, [y, *heads], strict=True):
                    into[start : start + span] = got
        return SequenceResult(outputs[0], h, c, *self._heads(outputs[1:]))

    def _call(self, x: F32, h: F32, c: F32) -> list[F32]:
        """One session call; its time appended to ``timings`` when they are kept."""
        if self.timings is None:
            out: list[F32] = self._session.run(self.outputs, {"x": x, "h": h, "c": c})
            return out
        started = time.perf_counter()
        out = self._session.run(self.outputs, {"x": x, "h": h, "c": c})
        self.timings.append(time.perf_counter() - started)
        return out


def _fixed(shape: Sequence[object]) -> list[object]:
    """The dimensions a graph fixes; a dynamic one (named or not) as None."""
    return [d if isinstance(d, int) else None for d in shape]


def _show(shape: Sequence[object]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


class PersistenceEngine:
    """ "Repeat the last value" in place of a bundle's network: its prediction of the next
    sample is this one, and its state stays zero. Benchmarks run every detector with it to
    measure what the model adds; it keeps the bundle's scaling, time features and shapes,
    and has none of the model's heads (no spread, no virtual sensor)."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.cross: CrossHead | None = None
        self.horizon: HorizonHead | None = None
        self.features = len(bundle.manifest.features)
        self.layers = bundle.manifest.layers
        self.hidden = bundle.manifest.hidden
        self.timings: list[float] | None = None

    def zero_state(self, batch: int) -> tuple[F32, F32]:
        shape = (self.layers, batch, self.hidden)
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def step(self, x: F32, h: F32, c: F32) -> StepResult:
        return StepResult(prediction=np.array(x[:, : self.features], dtype=np.float32), h=h, c=c)

    def run(self, x: F32, h: F32, c: F32) -> SequenceResult:
        # Each step's prediction is its own reading, whatever came before: no loop needed.
        predictions = np.array(x[..., : self.features], dtype=np.float32)
        return SequenceResult(predictions=predictions, h=h, c=c)
