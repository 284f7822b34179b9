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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from sensord.core.alert import AlertEvent
from sensord.core.timestamps import format_timestamp

# 2: alerts carry the error in the sensor's units (by feature; the scaled RMS is
# error_scaled), units, a message, duration_s on a clear and a severity only while raised;
# states carry the score and the reading that changed them.
SCHEMA_VERSION = 2
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
    units: Mapping[str, str] | None = None,
) -> bytes:
    """The JSON of an alert event."""
    cleared = event.event == "cleared"
    return orjson.dumps(
        {
            "schema": SCHEMA_VERSION,
            "event": event.event,
            "alert_id": event.alert_id,
            "stream": event.stream,
            "message": alert_message(event, features, units or {}),
            "topic": topic,
            "route": route,
            "time": format_timestamp(event.ts),
            "ts": event.ts,
            "raised_at": format_timestamp(event.raised_ts),
            "duration_s": round(event.ts - event.raised_ts, 3) if cleared else None,
            "received_at": format_timestamp(received),
            "published_at": format_timestamp(published),
            "value": by_feature(features, event.values),
            "expected": by_feature(features, event.expected),
            "error": by_feature(
                features, [v - e for v, e in zip(event.values, event.expected, strict=True)]
            ),
            "units": {f: units[f] for f in features if f in units} if units else None,
            "error_scaled": _finite_or_none(event.error),
            "score": _finite_or_none(event.score),
            "peak_score": _finite_or_none(event.peak_score),
            "threshold": event.threshold,
            "severity": None if cleared else event.severity,
            "channel": event.channel,
            "drivers": drivers(event, features),
            "reason": event.reason,
            "model": {"name": event.model, "version": event.model_version},
        }
    )


def alert_message(event: AlertEvent, features: Sequence[str], units: Mapping[str, str]) -> str:
    """One line an operator reads at a glance, e.g. ``boiler.t1: anomaly (point): value
    14.92 °C, expected 22.98 °C`` or ``boiler.t1: back to normal after 4 min``."""
    if event.event == "cleared":
        after = _duration(event.ts - event.raised_ts)
        how = {"accepted": " (accepted as the new normal)", "adopted": " (adopted)"}
        return f"{event.stream}: back to normal after {after}{how.get(event.reason or '', '')}"
    lead = event.drivers[0][0] if event.drivers else features[0]
    i = list(features).index(lead)
    unit = f" {units[lead]}" if lead in units else ""
    what = "anomaly" if event.event == "raised" else "anomaly goes on"
    return (
        f"{event.stream}: {what} ({event.channel}): {lead} {event.values[i]:.4g}{unit}, "
        f"expected {event.expected[i]:.4g}{unit}"
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def by_feature(features: Sequence[str], values: Iterable[float]) -> dict[str, float | None]:
    """Values by feature name, non-finite ones as null (alerts and states alike)."""
    return {f: _finite_or_none(float(v)) for f, v in zip(features, values, strict=True)}


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
    score: float | None = None,
    value: Mapping[str, float | None] | None = None,
    expected: Mapping[str, float | None] | None = None,
) -> bytes:
    """The JSON of a stream's retained state (with the operator's feedback on its alert):
    its status since when, and the score, reading and expectation that changed it."""
    return orjson.dumps(
        {
            "schema": SCHEMA_VERSION,
            "stream": stream,
            "status": status,
            "since": format_timestamp(since),
            "route": route,
            "alert_id": alert_id,
            "score": None if score is None else _finite_or_none(score),
            "value": value,
            "expected": expected,
            "feedback": feedback,
            "model": {"name": model, "version": model_version},
        }
    )


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
