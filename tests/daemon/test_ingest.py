"""Ingest's batch path gives exactly what the general decoder gives, payload by payload."""

from __future__ import annotations

import math
import random

import orjson
import pytest

from sensord.daemon.ingest import Ingest, RouteRule
from sensord.daemon.transport import Message
from sensord.errors import DecodeError
from sensord.logs import RateLimitedLog
from sensord.wire.payloads import PayloadFormat, decode, decode_single
from sensord.wire.topics import TopicFilter

NOW = 1_700_000_000.0
FORMATS: tuple[PayloadFormat, ...] = ("auto", "json", "number", "senml")
TRICKY = [
    b"21.5",
    b" 21.5",
    b"21.5 \n",
    b"1_000",
    b"+1",
    b"inf",
    b"nan",
    b"1e400",
    b"-0",
    b"\xd9\xa1",
    b"",
    b"   ",
    b"{}",
    b"[]",
    b"null",
    b"true",
    b'"21.5"',
    b'{"value": 1.5}',
    b'{"value": 1.5, "ts": 1700000001}',
    b'{"value": 1.5, "ts": 1700000001500}',
    b'{"value": 1.5, "ts": -1700000001500}',
    b'{"value": 1.5, "ts": "2023-11-14T22:13:21Z"}',
    b'{"value": 1.5, "ts": null}',
    b'{"value": 1.5, "ts": true}',
    b'{"value": 1.5, "timestamp": 1700000001}',
    b'{"value": 1.5, "time": 1700000001, "ts": 5}',
    b'{"value": true}',
    b'{"value": null}',
    b'{"value": [1.5]}',
    b'{"value": [1.5, 2]}',
    b'{"value": "1.5"}',
    b'{"value": 18446744073709551615}',
    b'{"value": 1e400}',
    b'{"value": NaN}',
    b'{"temp": 3, "ts": 1700000001}',
    b'{"temp": 3, "value": 4}',
    b'{"value": 1, "other": {"deep": [1, 2]}}',
    b'{"value": 1.5',
    b'[{"n": "value", "v": 3, "t": 1700000001}]',
    b'[{"bn": "urn:dev:x:", "n": "temp", "v": 3}]',
]


def general(payload: bytes, fmt: PayloadFormat, feature: str) -> tuple[str, object]:
    try:
        readings = decode(payload, fmt, (feature,), NOW)
    except DecodeError as exc:
        return "rejected", exc.reason
    return "readings", [(r.ts, r.values.tolist()) for r in readings]


def batched(payload: bytes, fmt: PayloadFormat, feature: str) -> tuple[str, object]:
    ingest = Ingest(
        rules=[RouteRule(TopicFilter("s/+"), "{wild}", fmt, (feature,))],
        max_payload_bytes=1 << 20,
        limiter=RateLimitedLog(3600.0),
    )
    (part,) = ingest.route_batch([Message("s/a", payload, NOW, 1)])
    if ingest.rejected:
        (reason,) = ingest.rejected
        return "rejected", reason
    ts, values, _ = part.arrays()
    return "readings", [(t, v) for t, v in zip(ts.tolist(), values.tolist(), strict=True)]


def random_payload(rng: random.Random) -> bytes:
    atoms: list[object] = [
        rng.uniform(-1e6, 1e6),
        rng.randint(-(10**20), 10**20),
        rng.choice([0, 1, -1, 1e11, 1e12, 1.7e9, 1.7e12]),
        True,
        None,
        "x",
        "2024-01-01T00:00:00Z",
        [1.0],
        {"a": 1},
    ]
    if rng.random() < 0.2:
        return str(rng.choice(atoms[:3])).encode()
    obj = {
        key: rng.choice(atoms)
        for key in rng.sample(["value", "ts", "timestamp", "time", "temp", "z"], rng.randint(0, 4))
    }
    try:
        text = orjson.dumps(obj)
    except TypeError:  # an integer orjson will not write
        text = b'{"value": ' + str(obj.get("value")).encode() + b"}"
    if rng.random() < 0.1:
        cut = rng.randint(0, len(text))
        text = text[:cut] + bytes([rng.randint(0, 255)]) + text[cut + 1 :]
    return text


def same(a: tuple[str, object], b: tuple[str, object]) -> bool:
    if a[0] != b[0] or a[0] == "rejected":
        return a == b
    left, right = a[1], b[1]
    assert isinstance(left, list) and isinstance(right, list)
    return len(left) == len(right) and all(
        math.isclose(x[0], y[0], rel_tol=0, abs_tol=1e-9) and x[1] == y[1]
        for x, y in zip(left, right, strict=True)
    )


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("feature", ["value", "temp"])
def test_tricky_payloads_decode_alike(fmt: PayloadFormat, feature: str) -> None:
    for payload in TRICKY:
        expected, got = general(payload, fmt, feature), batched(payload, fmt, feature)
        assert same(expected, got), (payload, fmt, feature, expected, got)


def test_random_payloads_decode_alike() -> None:
    rng = random.Random(5)
    for _ in range(4000):
        payload = random_payload(rng)
        fmt = rng.choice(FORMATS)
        feature = rng.choice(["value", "temp"])
        expected, got = general(payload, fmt, feature), batched(payload, fmt, feature)
        assert same(expected, got), (payload, fmt, feature, expected, got)


def test_a_batch_keeps_arrival_order_and_counts_rejects_by_reason() -> None:
    ingest = Ingest(
        rules=[RouteRule(TopicFilter("s/+"), "{wild}", "auto", ("value",))],
        max_payload_bytes=64,
        limiter=RateLimitedLog(3600.0),
    )
    messages = [
        Message("s/a", b'{"value": 1, "ts": 10}', NOW, 1),
        Message("s/b", b"2", NOW + 1, 1),
        Message("other/topic", b"3", NOW, 1),
        Message("s/a", b"x" * 65, NOW, 1),
        Message("s/a", b"{", NOW, 1),
        Message("s/a", b'{"value": 4, "ts": 11}', NOW, 1),
    ]
    (part,) = ingest.route_batch(messages)
    ts, values, received = part.arrays()
    assert part.streams == ["a", "b", "a"]
    assert ts.tolist() == [10.0, NOW + 1, 11.0]
    assert values.ravel().tolist() == [1.0, 2.0, 4.0]
    assert received.tolist() == [NOW, NOW + 1, NOW]
    assert dict(ingest.rejected) == {"unknown_topic": 1, "too_large": 1, "malformed": 1}


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_short_path_never_reads_what_decode_would_not(fmt: PayloadFormat) -> None:
    rng = random.Random(11)
    for payload in TRICKY + [random_payload(rng) for _ in range(1000)]:
        short = decode_single(payload, fmt, NOW)
        if short is None:
            continue  # decode gives the verdict
        ts, value = short
        assert general(payload, fmt, "value") == ("readings", [(ts, [value])]), (payload, fmt)
