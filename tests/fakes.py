"""Seams for the core's unit tests (httpx's transport idea): a bundle made in memory and a
numpy LSTM in place of onnxruntime, so the core runs with no torch, no training, no files.

``NumpyEngine`` is a real LSTM step (the same gates as torch's and ONNX's), with fixed
random weights; its prediction is the last value plus a small learned-looking correction,
so the detectors see errors of a sensible size. It is deterministic: the same inputs give
the same outputs whatever the batch, which is what the batching tests compare.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from sensord.arrays import F32
from sensord.config import MqttSettings
from sensord.core.bundle import Bundle
from sensord.core.engine import SequenceResult, StepResult, cross_head, horizon_head
from sensord.core.inmemory import in_memory
from sensord.daemon.transport import (
    Ackable,
    Link,
    Message,
    OnPublished,
    Request,
    TransportOptions,
)

# A bundle's manifest as training would write it, with no graph behind it (named "fake").
fake_bundle = partial(in_memory, name="fake")


class NumpyEngine:
    """The ``StepEngine`` protocol in numpy: an LSTM step with fixed random weights."""

    def __init__(self, bundle: Bundle, seed: int | None = None) -> None:
        manifest = bundle.manifest
        self.bundle = bundle
        self.features = len(manifest.features)
        self.layers = manifest.layers
        self.hidden = manifest.hidden
        self.timings: list[float] | None = None
        # Each bundle its own weights (as two trained bundles would differ), unless told.
        rng = np.random.default_rng(zlib.crc32(manifest.name.encode()) if seed is None else seed)
        inputs = self.features + len(manifest.time_features)
        h = self.hidden
        self._weights = [
            (
                rng.normal(0, 0.3, (4 * h, (inputs if layer == 0 else h) + h)).astype(np.float32),
                rng.normal(0, 0.1, 4 * h).astype(np.float32),
            )
            for layer in range(self.layers)
        ]
        self._out = rng.normal(0, 0.05, (self.features, h)).astype(np.float32)
        # The heads the manifest declares: a spread from the last layer's h, the virtual
        # sensor's weights from the manifest itself (as the onnxruntime engine takes them).
        spread = manifest.heads.spread
        self._spread = rng.normal(0, 0.5, (self.features, h)).astype(np.float32) if spread else None
        self.cross = cross_head(bundle)
        self.horizon = horizon_head(bundle)
        ahead = self.horizon is not None
        self._ahead = rng.normal(0, 0.05, (self.features, h)).astype(np.float32) if ahead else None

    def zero_state(self, batch: int) -> tuple[F32, F32]:
        shape = (self.layers, batch, self.hidden)
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def step(self, x: F32, h: F32, c: F32) -> StepResult:
        layer_input = x
        h_out, c_out = np.empty_like(h), np.empty_like(c)
        for layer, (weights, bias) in enumerate(self._weights):
            # (einsum, not BLAS's matmul: each row's sums in one order whatever the batch,
            # so a stream's numbers do not depend on the streams stepped with it)
            joined = np.concatenate([layer_input, h[layer]], axis=1)
            gates = np.einsum("bi,oi->bo", joined, weights) + bias
            i, f, g, o = np.split(gates, 4, axis=1)
            c_out[layer] = _sigmoid(f) * c[layer] + _sigmoid(i) * np.tanh(g)
            h_out[layer] = _sigmoid(o) * np.tanh(c_out[layer])
            layer_input = h_out[layer]
        prediction = x[:, : self.features] + np.einsum("bh,fh->bf", layer_input, self._out)
        spread = ahead = None
        if self._spread is not None:
            spread = np.exp(np.einsum("bh,fh->bf", layer_input, self._spread)).astype(np.float32)
        if self._ahead is not None:
            ahead = x[:, : self.features] + np.einsum("bh,fh->bf", layer_input, self._ahead)
            ahead = ahead.astype(np.float32)
        return StepResult(prediction.astype(np.float32), h_out, c_out, spread, ahead)

    def run(self, x: F32, h: F32, c: F32) -> SequenceResult:
        predictions = np.empty((len(x), x.shape[1], self.features), np.float32)
        spreads = None if self._spread is None else np.empty_like(predictions)
        aheads = None if self._ahead is None else np.empty_like(predictions)
        for t in range(len(x)):
            result = self.step(x[t], h, c)
            predictions[t], h, c = result.prediction, result.h, result.c
            if spreads is not None and result.spread is not None:
                spreads[t] = result.spread
            if aheads is not None and result.ahead is not None:
                aheads[t] = result.ahead
        return SequenceResult(predictions, h, c, spreads, aheads)


def _sigmoid(z: F32) -> F32:
    out: F32 = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without overflow
    return out


class Sent:
    """What ``MemoryTransport.publish`` hands back: acknowledged at once."""

    def __init__(self, mid: int) -> None:
        self.mid = mid

    def is_published(self) -> bool:
        return True


@dataclass(frozen=True)
class Published:
    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True)
class Acked:
    mids: tuple[int, ...]


class MemoryTransport:
    """The daemon's MQTT side in memory (a ``sensord.daemon.transport.Transport``): the
    test puts messages in ``inbox``; what the daemon publishes and acknowledges is kept in
    one ``log``, in order. Every publish is acknowledged by the "broker" (PUBACK) at the
    next ``write``."""

    def __init__(self, settings: MqttSettings, options: TransportOptions) -> None:
        self.options = options
        self.inbox: list[Message] = []
        self.requests: list[Request] = []
        self.link = Link()
        self.log: list[Published | Acked] = []
        self._on_published: OnPublished | None = None
        self._mid = self._pubacked = 0

    def start(self) -> None:
        self.link.connected.set()
        self.link.ever_connected.set()
        self.link.counters.connects += 1

    def stop(self) -> None:
        self.link.connected.clear()

    def poll(self, timeout: float) -> None:
        pass  # what a test sends is in the inbox already

    def waiting(self) -> int:
        return len(self.inbox)

    def take(self, limit: int) -> list[Message]:
        taken, self.inbox = self.inbox[:limit], self.inbox[limit:]
        self.link.counters.received += len(taken)
        return taken

    def take_requests(self) -> list[Request]:
        taken, self.requests = self.requests, []
        return taken

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, correlation: bytes | None = None
    ) -> Sent:
        self._mid += 1
        self.log.append(Published(topic, payload, retain))
        return Sent(self._mid)

    def write(self) -> None:
        if self._on_published is not None:  # the broker's PUBACKs, for the outbox
            for mid in range(self._pubacked + 1, self._mid + 1):
                self._on_published(mid, True)
        self._pubacked = self._mid

    def on_published(self, callback: OnPublished) -> None:
        self._on_published = callback

    def ack(self, messages: Sequence[Ackable]) -> None:
        mids = tuple(m.mid for m in messages if m.qos)
        self.link.counters.acked += len(mids)
        self.log.append(Acked(mids))

    def published(self, prefix: str) -> list[Published]:
        return [e for e in self.log if isinstance(e, Published) and e.topic.startswith(prefix)]
