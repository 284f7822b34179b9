"""Payload decoding: bytes from a sensor topic in, ``(timestamp, values)`` readings out.

Formats (``auto`` tells them apart by the first character):

- a bare number or JSON number: ``21.5`` (single-feature bundles only);
- a JSON object: ``{"value": 21.5, "ts": 1700000000}``, ``{"value": [21.5, 40]}`` or the
  bundle's feature names ``{"temp": 21.5, "hum": 40, "ts": "2024-01-01T00:00:00Z"}``;
- SenML (RFC 8428): a JSON array of records with base name/time/value (``bn``, ``bt``,
  ``bv``) and ``n``, ``t``, ``v``; records at the same resolved time form one reading, and
  their names (``bn`` + ``n``, or ``n`` alone) pick the features.

A timestamp is epoch seconds or milliseconds, or ISO 8601 text; without one, the receive
time counts. Every rejection raises :class:`DecodeError` with a short reason code (counted
by the daemon) and a detail for the log. Size is checked by the caller before decoding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson

from sensord.arrays import F64
from sensord.core.timestamps import epoch_from_number, parse_timestamp
from sensord.errors import DecodeError

PayloadFormat = Literal["auto", "number", "json", "senml"]
# RFC 8428 section 4.5.3: times below 2**28 are relative to now.
SENML_RELATIVE_BELOW = 2**28
TS_KEYS = ("ts", "timestamp", "time")


@dataclass(frozen=True)
class Reading:
    ts: float
    values: F64


def decode(
    payload: bytes, fmt: PayloadFormat, features: Sequence[str], received: float
) -> list[Reading]:
    """Readings in a payload, in time order; raise DecodeError with the reason."""
    text = payload.strip()
    if not text:
        raise DecodeError("empty", "empty payload")
    first = text[:1]
    if fmt == "number" or (fmt == "auto" and first not in (b"{", b"[")):
        return [Reading(received, _vector([_number(text)], features))]
    parsed = _json(text)
    if fmt == "senml" or (fmt == "auto" and first == b"["):
        return _senml(parsed, features, received)
    if isinstance(parsed, dict):
        return [_object(parsed, features, received)]
    if fmt == "json" and isinstance(parsed, int | float) and not isinstance(parsed, bool):
        return [Reading(received, _vector([_finite(parsed, "value")], features))]
    raise DecodeError("wrong_fields", f"expected a JSON object, got {type(parsed).__name__}")


def _number(text: bytes) -> float:
    try:
        value = float(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise DecodeError("malformed", f"not a number: {text[:40]!r}") from None
    return _finite(value, "value")


def _json(text: bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        # orjson rejects NaN, Infinity and numbers that overflow a double (1e400) too.
        reason = "non_finite" if "infinity" in str(exc) or "NaN" in str(exc) else "malformed"
        raise DecodeError(reason, f"not valid JSON ({exc})") from None
    except RecursionError:
        raise DecodeError("malformed", "JSON nested too deeply") from None


def _finite(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError("wrong_fields", f"{what} is {type(value).__name__}, not a number")
    number = float(value)
    if not math.isfinite(number):
        raise DecodeError("non_finite", f"{what} is {number}")
    return number


def _vector(values: Sequence[float], features: Sequence[str]) -> F64:
    if len(values) != len(features):
        raise DecodeError(
            "wrong_fields",
            f"{len(values)} value(s) for {len(features)} feature(s) ({', '.join(features)})",
        )
    return np.asarray(values, dtype=np.float64)


def _timestamp(value: object, received: float) -> float:
    if value is None:
        return received
    try:
        if isinstance(value, str):
            return parse_timestamp(value)
        return epoch_from_number(_finite(value, "ts"))
    except (ValueError, DecodeError) as exc:
        raise DecodeError("bad_timestamp", str(exc)) from None


def _object(obj: dict[str, Any], features: Sequence[str], received: float) -> Reading:
    ts = _timestamp(next((obj[k] for k in TS_KEYS if k in obj), None), received)
    if "value" in obj and "value" not in features:
        raw = obj["value"]
        values = raw if isinstance(raw, list) else [raw]
        return Reading(ts, _vector([_finite(v, "value") for v in values], features))
    missing = [name for name in features if name not in obj]
    if missing:
        raise DecodeError("wrong_fields", f"no 'value' and no field(s) {', '.join(missing)}")
    return Reading(ts, _vector([_finite(obj[name], name) for name in features], features))


def _senml(pack: object, features: Sequence[str], received: float) -> list[Reading]:
    if not isinstance(pack, list) or not pack:
        raise DecodeError("wrong_fields", "SenML must be a non-empty array of records")
    base_name, base_time, base_value = "", 0.0, 0.0
    by_time: dict[float, dict[str, float]] = {}
    for record in pack:
        if not isinstance(record, dict):
            raise DecodeError("wrong_fields", "SenML records must be objects")
        base_name = _str(record.get("bn", base_name), "bn")
        base_time = _finite(record.get("bt", base_time), "bt")
        base_value = _finite(record.get("bv", base_value), "bv")
        if "v" not in record:
            continue  # string, boolean and data values are not sensor readings here
        name = base_name + _str(record.get("n", ""), "n")
        # Each part is finite, but a sum may still overflow (bv 1e308 + v 1e308).
        value = _finite(base_value + _finite(record["v"], "v"), "bv + v")
        moment = _finite(base_time + _finite(record.get("t", 0.0), "t"), "bt + t")
        ts = received + moment if abs(moment) < SENML_RELATIVE_BELOW else moment
        by_time.setdefault(ts, {})[_feature_of(name, record.get("n"), features)] = value
    if not by_time:
        raise DecodeError("wrong_fields", "SenML pack has no numeric value")
    return [
        Reading(ts, _vector([fields[f] for f in features if f in fields], features))
        for ts, fields in sorted(by_time.items())
    ]


def _feature_of(name: str, short: object, features: Sequence[str]) -> str:
    if len(features) == 1:
        return features[0]
    for candidate in (name, short):
        if isinstance(candidate, str) and candidate in features:
            return candidate
    for feature in features:
        if name.endswith((":" + feature, "/" + feature, "." + feature)):
            return feature
    raise DecodeError("wrong_fields", f"SenML name {name!r} is none of {', '.join(features)}")


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise DecodeError("wrong_fields", f"SenML {what} must be a string")
    return value


def decode_single(
    payload: bytes, fmt: PayloadFormat, received: float
) -> tuple[float, float] | None:
    """``(ts, value)`` of the two payloads sensors send most, or None: ask ``decode``.

    The short path of a single-feature route, with no per-reading object: a JSON object with
    a numeric ``value`` and an optional numeric ``ts`` (other keys ignored), or a bare number.
    Anything else (no ``value``, a list, a text or other time key, a value that is not a
    finite number) returns None, and ``decode`` gives the verdict with its reason; the two
    accept and read the same payloads alike (tests/daemon/test_ingest.py).
    """
    first = payload[:1]
    if fmt == "senml":
        return None
    if first == b"{":
        return None if fmt == "number" else _single_object(payload, received)
    if fmt == "json" or first == b"[" or not first or first.isspace():
        return None
    try:
        number = float(payload)  # bytes: ASCII only, as _number's decode("ascii")
    except ValueError:
        return None
    return (received, number) if math.isfinite(number) else None


def _single_object(payload: bytes, received: float) -> tuple[float, float] | None:
    try:
        obj: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    value, ts = obj.get("value"), obj.get(TS_KEYS[0])
    if type(value) not in _NUMBER_TYPES:
        return None
    if ts is None:
        if any(key in obj for key in TS_KEYS):  # a null or an alternative time key
            return None
        return received, float(value)
    if type(ts) not in _NUMBER_TYPES:
        return None
    # JSON numbers that orjson accepts are finite.
    return epoch_from_number(float(ts)), float(value)


_NUMBER_TYPES = (float, int)  # exact types: bool is an int subclass but not a number here
