"""Payload decoding: every supported format, and every kind of bad payload."""

import pytest

from sensord.errors import DecodeError
from sensord.wire.payloads import PayloadFormat, decode

NOW = 1_700_000_000.0
ONE = ("value",)
TWO = ("temp", "hum")


def one(
    payload: bytes, features: tuple[str, ...] = ONE, fmt: PayloadFormat = "auto"
) -> tuple[float, list[float]]:
    (reading,) = decode(payload, fmt, features, NOW)
    return reading.ts, reading.values.tolist()


def test_bare_and_json_numbers() -> None:
    assert one(b"21.5") == (NOW, [21.5])
    assert one(b" -3e2\n") == (NOW, [-300.0])
    assert one(b"7", fmt="json") == (NOW, [7.0])


def test_json_object_value_and_ts() -> None:
    assert one(b'{"value": 1.5, "ts": 1700000001}') == (1700000001.0, [1.5])
    assert one(b'{"value": 1.5, "ts": 1700000001500}') == (1700000001.5, [1.5])
    assert one(b'{"value": 2, "ts": "2023-11-14T22:13:21Z"}') == (1700000001.0, [2.0])
    assert one(b'{"value": [1, 2]}', TWO) == (NOW, [1.0, 2.0])


def test_json_object_named_features() -> None:
    assert one(b'{"hum": 40, "temp": 21.5, "extra": "x"}', TWO) == (NOW, [21.5, 40.0])


def test_senml_with_base_name_and_time() -> None:
    pack = (
        b'[{"bn": "urn:dev:mac:0024befffe804ff1:", "bt": 1700000000, "n": "temp", "v": 21},'
        b' {"n": "hum", "v": 40},'
        b' {"n": "temp", "t": 10, "v": 22}, {"n": "hum", "t": 10, "v": 41}]'
    )
    readings = decode(pack, "auto", TWO, NOW)
    assert [(r.ts, r.values.tolist()) for r in readings] == [
        (1700000000.0, [21.0, 40.0]),
        (1700000010.0, [22.0, 41.0]),
    ]


def test_senml_relative_time_and_base_value() -> None:
    readings = decode(b'[{"bv": 10, "v": 1.5, "t": -2}]', "senml", ONE, NOW)
    assert [(r.ts, r.values.tolist()) for r in readings] == [(NOW - 2, [11.5])]


@pytest.mark.parametrize(
    ("payload", "features", "reason"),
    [
        (b"", ONE, "empty"),
        (b"   ", ONE, "empty"),
        (b"\xff\xfe\x00garbage", ONE, "malformed"),
        (b"twenty", ONE, "malformed"),
        (b"NaN", ONE, "non_finite"),
        (b"Infinity", ONE, "non_finite"),
        (b"1e400", ONE, "non_finite"),
        (b'{"value": 1e400}', ONE, "non_finite"),
        (b'{"value": NaN}', ONE, "malformed"),
        (b"[" * 5000 + b"]" * 5000, ONE, "malformed"),
        (b'{"value": [[[[[1]]]]]}', ONE, "wrong_fields"),
        (b'{"value": [1, 2]}', ONE, "wrong_fields"),
        (b"1.5", TWO, "wrong_fields"),
        (b'{"temp": 1}', TWO, "wrong_fields"),
        (b'{"value": "hot"}', ONE, "wrong_fields"),
        (b'{"value": true}', ONE, "wrong_fields"),
        (b'{"value": 1, "ts": "noon"}', ONE, "bad_timestamp"),
        (b"[]", ONE, "wrong_fields"),
        (b'[{"n": "pressure", "v": 1}]', TWO, "wrong_fields"),
        (b'[{"vs": "text"}]', ONE, "wrong_fields"),
        (b'"a string"', ONE, "malformed"),
    ],
)
def test_bad_payloads_have_a_reason(payload: bytes, features: tuple[str, ...], reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(payload, "auto", features, NOW)
    assert info.value.reason == reason
