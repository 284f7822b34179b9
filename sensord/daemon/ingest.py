"""From MQTT messages to samples: size check, route, stream id, decode; rejections counted.

Runs in the daemon loop (never in paho's thread). The first route whose filter matches a
topic wins; the topic's route and stream id are cached, since a sensor publishes on the same
topic again and again.

``route_batch`` turns a whole micro-batch into columns per route (stream ids, timestamps,
values, receive times, topics) without a per-reading object. The two payloads sensors send
most take codec.decode_single's short path; every other payload goes through codec.decode,
which says why it is rejected. Both paths accept and reject exactly the same payloads
(tests/daemon/test_ingest.py checks this).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sensord.arrays import F64
from sensord.daemon.transport import Message
from sensord.errors import DecodeError, StreamIdError
from sensord.logs import RateLimitedLog
from sensord.wire.payloads import PayloadFormat, decode, decode_single
from sensord.wire.topics import TopicFilter, stream_id

ROUTE_CACHE_LIMIT = 200_000


@dataclass(frozen=True)
class RouteMatch:
    route: int
    stream: str


@dataclass
class RouteRule:
    """What ingest needs of a route."""

    filter: TopicFilter
    template: str
    format: PayloadFormat
    features: tuple[str, ...]

    @property
    def short_path(self) -> bool:
        """Single-feature JSON/number routes take ingest's short path."""
        return len(self.features) == 1 and self.format in ("auto", "json", "number")


@dataclass
class Routed:
    """One route's share of a micro-batch, as columns in arrival order."""

    features: int
    streams: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)  # features per reading, flat
    received: list[float] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)  # each reading's message in its batch

    def __len__(self) -> int:
        return len(self.streams)

    def arrays(self) -> tuple[F64, F64, F64]:
        """``ts[n]``, ``values[n, F]`` and ``received[n]`` as numpy arrays."""
        values = np.asarray(self.values, dtype=np.float64).reshape(len(self), self.features)
        return np.asarray(self.ts), values, np.asarray(self.received)

    def keep(self, mask: Sequence[bool]) -> Routed:
        """The readings where ``mask`` is true."""
        kept = Routed(self.features)
        f = self.features
        for i, ok in enumerate(mask):
            if ok:
                kept.add(
                    self.streams[i],
                    self.topics[i],
                    self.ts[i],
                    self.values[i * f : (i + 1) * f],
                    self.received[i],
                    message=self.messages[i],
                )
        return kept

    def add(
        self,
        stream: str,
        topic: str,
        ts: float,
        values: Iterable[float],
        received: float,
        *,
        message: int = -1,
    ) -> None:
        self.streams.append(stream)
        self.topics.append(topic)
        self.ts.append(ts)
        self.values.extend(values)
        self.received.append(received)
        self.messages.append(message)


@dataclass
class Ingest:
    rules: Sequence[RouteRule]
    max_payload_bytes: int
    limiter: RateLimitedLog
    rejected: Counter[str] = field(default_factory=Counter)
    _cache: dict[str, RouteMatch | str] = field(default_factory=dict)

    def reject(self, reason: str, topic: str, detail: str) -> None:
        self.rejected[reason] += 1
        self.limiter.warn(reason, topic, detail)

    def admit(self, part: Routed, route: str, known: Mapping[str, int], max_streams: int) -> Routed:
        """``part`` less the readings of new streams past the route's ``max_streams``
        (rejected, reason ``stream_cap``); streams it already ``known`` always pass."""
        room = max_streams - len(known)
        new = [s for s in dict.fromkeys(part.streams) if s not in known]
        if len(new) <= room:
            return part
        refused = set(new[max(room, 0) :])
        keep = [s not in refused for s in part.streams]
        for stream, topic, ok in zip(part.streams, part.topics, keep, strict=True):
            if not ok:
                self.reject(
                    "stream_cap",
                    topic,
                    f"route {route} is at max_streams {max_streams} (stream {stream})",
                )
        return part.keep(keep)

    def match(self, topic: str) -> RouteMatch | None:
        cached = self._cache.get(topic)
        if cached is None:
            cached = self._match(topic)
            if len(self._cache) >= ROUTE_CACHE_LIMIT:
                self._cache.clear()
            self._cache[topic] = cached
        if isinstance(cached, str):
            reason, _, detail = cached.partition(":")
            self.reject(reason, topic, detail)
            return None
        return cached

    def _match(self, topic: str) -> RouteMatch | str:
        for index, rule in enumerate(self.rules):
            wild = rule.filter.match(topic)
            if wild is None:
                continue
            try:
                return RouteMatch(index, stream_id(rule.template, topic, wild))
            except StreamIdError as exc:
                return f"bad_stream_id:{exc}"
        return "unknown_topic:no route matches the topic"

    def route_batch(self, messages: Iterable[Message]) -> list[Routed]:
        """A micro-batch as columns per route (indexed like ``rules``); rejects counted."""
        parts = [Routed(len(rule.features)) for rule in self.rules]
        limit, cache = self.max_payload_bytes, self._cache
        for index, (topic, payload, received, _qos, _mid, _session) in enumerate(messages):
            if len(payload) > limit:
                self.reject("too_large", topic, f"{len(payload)} bytes > {limit}")
                continue
            found = cache.get(topic)
            if found is None or isinstance(found, str):
                found = self.match(topic)
                if found is None:
                    continue
            rule = self.rules[found.route]
            part = parts[found.route]
            if rule.short_path:
                reading = decode_single(payload, rule.format, received)
                if reading is not None:
                    part.add(
                        found.stream, topic, reading[0], (reading[1],), received, message=index
                    )
                    continue
            try:
                readings = decode(payload, rule.format, rule.features, received)
            except DecodeError as exc:
                self.reject(exc.reason, topic, exc.detail)
                continue
            for r in readings:
                part.add(found.stream, topic, r.ts, r.values.tolist(), received, message=index)
        return parts
