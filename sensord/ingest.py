"""From MQTT messages to samples: size check, route, stream id, decode; rejections counted.

Runs in the daemon loop (never in paho's thread). The first route whose filter matches a
topic wins; the topic's route and stream id are cached, since a sensor publishes on the same
topic again and again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sensord.codec import DecodeError, PayloadFormat, decode
from sensord.logs import get_logger
from sensord.pipeline import Sample
from sensord.route import StreamIdError, TopicFilter, stream_id

log = get_logger(__name__)
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


class RateLimitedLog:
    """At most one warning per reason per interval, saying how many were not logged."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warn(self, reason: str, topic: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -float("inf")) < self.interval_s:
            self._suppressed[reason] += 1
            return
        self._last[reason] = now
        suppressed = self._suppressed.pop(reason, 0)
        log.warning(
            "reading rejected",
            reason=reason,
            topic=topic[:200],
            detail=detail[:200],
            suppressed_since_last=suppressed,
        )


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

    def samples(
        self, topic: str, payload: bytes, received: float
    ) -> tuple[RouteMatch, list[Sample]] | None:
        """The samples in one message, or None (rejected and counted)."""
        if len(payload) > self.max_payload_bytes:
            self.reject("too_large", topic, f"{len(payload)} bytes > {self.max_payload_bytes}")
            return None
        found = self.match(topic)
        if found is None:
            return None
        rule = self.rules[found.route]
        try:
            readings = decode(payload, rule.format, rule.features, received)
        except DecodeError as exc:
            self.reject(exc.reason, topic, exc.detail)
            return None
        return found, [Sample(found.stream, r.ts, r.values, received) for r in readings]
