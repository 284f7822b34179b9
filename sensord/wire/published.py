"""What sensord publishes, and where (schema version 1).

- ``<prefix>/alerts/<stream>``: one JSON object per ``raised`` / ``updated`` / ``cleared``
  event of an alert (one alert id from raised to cleared), QoS 1, not retained;
- ``<prefix>/state/<stream>``: the stream's current status, retained, published when the
  status changes (``warming_up``, ``normal``, ``alert``, ``evicted``);
- ``<prefix>/nodata/<stream>``: ``raised`` / ``cleared`` data-quality events (a stream went
  silent, or came back), QoS 1, not retained;
- ``<prefix>/feedback/<stream>/response``: the answer to an operator's feedback (feedback.py);
- ``<prefix>/status``: ``online`` (retained, on every connect) or ``offline`` (at a clean
  stop, and as the Last Will when the connection dies).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from sensord.core.alert import AlertEvent
from sensord.core.timestamps import format_timestamp

SCHEMA_VERSION = 1
ONLINE = b"online"
OFFLINE = b"offline"


def status_topic(prefix: str) -> str:
    return f"{prefix}/status"


def alert_topic(prefix: str, stream: str) -> str:
    return f"{prefix}/alerts/{stream}"


def state_topic(prefix: str, stream: str) -> str:
    return f"{prefix}/state/{stream}"


def availability_topic(prefix: str, stream: str) -> str:
    """Retained ``online`` while the stream sends, ``offline`` once it fell silent (nodata),
    as zigbee2mqtt's ``<device>/availability``; removed when the stream is evicted."""
    return f"{prefix}/availability/{stream}"


def nodata_topic(prefix: str, stream: str) -> str:
    return f"{prefix}/nodata/{stream}"


def bridge_info_topic(prefix: str) -> str:
    return f"{prefix}/bridge/info"


def bridge_info_payload(
    *, version: str, prefix: str, routes: list[dict[str, Any]], features: dict[str, Any], now: float
) -> bytes:
    """The JSON of ``<prefix>/bridge/info`` (retained): what this sensord is and runs, as
    zigbee2mqtt's ``bridge/info`` says it of itself. Nothing secret goes in: no broker
    address, user or password, no paths."""
    return orjson.dumps(
        {
            "schema": SCHEMA_VERSION,
            "kind": "bridge_info",
            "sensord_version": version,
            "prefix": prefix,
            "time": format_timestamp(now),
            "routes": routes,
            "features": features,
        }
    )


def feedback_filter(prefix: str) -> str:
    return f"{prefix}/feedback/+"


def feedback_response_topic(prefix: str, stream: str) -> str:
    return f"{prefix}/feedback/{stream}/response"


def nodata_payload(
    *, event: str, stream: str, route: str, last: float, period_s: float, now: float
) -> bytes:
    """The JSON of a ``nodata`` raised/cleared event."""
    return orjson.dumps(
        {
            "schema": SCHEMA_VERSION,
            "kind": "nodata",
            "event": event,
            "stream": stream,
            "route": route,
            "time": format_timestamp(now),
            "last_reading_at": format_timestamp(last),
            "silent_s": round(now - last, 3),
            "usual_period_s": _finite_or_none(round(period_s, 6)),
        }
    )


def feedback_response(
    *,
    stream: str,
    alert_id: str | None,
    verdict: str | None,
    accepted: bool,
    reason: str | None,
    now: float,
) -> bytes:
    """The JSON answer to one feedback message."""
    return orjson.dumps(
        {
            "schema": SCHEMA_VERSION,
            "stream": stream,
            "alert_id": alert_id,
            "verdict": verdict,
            "accepted": accepted,
            "reason": reason,
            "time": format_timestamp(now),
        }
    )


def alert_payload(
    event: AlertEvent,
    *,
    topic: str | None,
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
            "channel": event.channel,
            "drivers": drivers(event, features),
            "reason": event.reason,
            "model": {"name": event.model, "version": event.model_version},
        }
    )


def drivers(event: AlertEvent, features: Sequence[str]) -> list[dict[str, object]]:
    """The features that drove the event, first the one that decided it: each with its
    reading, what the model expected and the difference, in the sensor's own units."""
    index = {name: i for i, name in enumerate(features)}
    out: list[dict[str, object]] = []
    for name, share in event.drivers:
        i = index[name]
        value, expected = event.values[i], event.expected[i]
        out.append(
            {
                "feature": name,
                "share": share,
                "value": _finite_or_none(value),
                "expected": _finite_or_none(expected),
                "deviation": _finite_or_none(value - expected),
            }
        )
    return out


def state_payload(
    *,
    stream: str,
    status: str,
    since: float,
    route: str,
    model: str,
    model_version: str,
    alert_id: str | None = None,
    feedback: dict[str, object] | None = None,
) -> bytes:
    """The JSON of a stream's retained state (with the operator's feedback on its alert)."""
    return orjson.dumps(
        {
            "schema": SCHEMA_VERSION,
            "stream": stream,
            "status": status,
            "since": format_timestamp(since),
            "route": route,
            "alert_id": alert_id,
            "feedback": feedback,
            "model": {"name": model, "version": model_version},
        }
    )


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
