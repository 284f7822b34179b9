"""What sensord publishes, and where (schema version 1).

- ``<prefix>/alerts/<stream>``: one JSON object per ``raised`` / ``cleared`` event, QoS 1,
  not retained;
- ``<prefix>/state/<stream>``: the stream's current status, retained, published when the
  status changes (``warming_up``, ``normal``, ``alert``, ``evicted``);
- ``<prefix>/status``: ``online`` (retained, on every connect) or ``offline`` (at a clean
  stop, and as the Last Will when the connection dies).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import orjson

from sensord.alert import AlertEvent
from sensord.timestamps import format_timestamp

SCHEMA_VERSION = 1
ONLINE = b"online"
OFFLINE = b"offline"


def status_topic(prefix: str) -> str:
    return f"{prefix}/status"


def alert_topic(prefix: str, stream: str) -> str:
    return f"{prefix}/alerts/{stream}"


def state_topic(prefix: str, stream: str) -> str:
    return f"{prefix}/state/{stream}"


def alert_payload(
    event: AlertEvent,
    *,
    topic: str,
    route: str,
    features: Sequence[str],
    received: float,
    published: float,
) -> bytes:
    """The JSON of an alert event."""
    return orjson.dumps(
        {
            "schema": SCHEMA_VERSION,
            "event": event.event,
            "alert_id": event.alert_id,
            "stream": event.stream,
            "topic": topic,
            "route": route,
            "time": format_timestamp(event.ts),
            "ts": event.ts,
            "raised_at": format_timestamp(event.raised_ts),
            "received_at": format_timestamp(received),
            "published_at": format_timestamp(published),
            "value": dict(zip(features, event.values, strict=True)),
            "expected": dict(zip(features, event.expected, strict=True)),
            "error": _finite_or_none(event.error),
            "score": _finite_or_none(event.score),
            "peak_score": _finite_or_none(event.peak_score),
            "threshold": event.threshold,
            "severity": event.severity,
            "model": {"name": event.model, "version": event.model_version},
        }
    )


def state_payload(
    *,
    stream: str,
    status: str,
    since: float,
    route: str,
    model: str,
    model_version: str,
    alert_id: str | None = None,
) -> bytes:
    """The JSON of a stream's retained state."""
    return orjson.dumps(
        {
            "schema": SCHEMA_VERSION,
            "stream": stream,
            "status": status,
            "since": format_timestamp(since),
            "route": route,
            "alert_id": alert_id,
            "model": {"name": model, "version": model_version},
        }
    )


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
