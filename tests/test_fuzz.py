"""Property tests of every payload decoder: any bytes in, readings or a DecodeError out.

The contract (sensord/wire/payloads.py): ``decode`` returns a non-empty list of readings in strictly
increasing time order, each a finite float timestamp and a float64 vector of finite values,
one per feature (exactly one reading unless the payload took the SenML path; the receive time
for a bare number), or raises :class:`DecodeError` with one of the known reason codes; never
any other exception. ``decode_single`` returns None or a pair of finite floats that ``decode``
reads alike. ``Ingest.route_batch`` puts every message either in its route's columns or in
``rejected``, exactly once, and never raises.

The checkers below are shared with the long soak run (``python -m tests.soak.fuzz``), which
feeds them from a seeded hand-rolled generator instead of hypothesis. The examples here are
derandomized (the same on every run); SENSORD_FUZZ_EXAMPLES=5000 runs more of them.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from sensord.daemon.ingest import Ingest, RouteRule
from sensord.daemon.transport import Message
from sensord.errors import DecodeError, StreamIdError
from sensord.logs import RateLimitedLog
from sensord.wire.payloads import (
    SENML_RELATIVE_BELOW,
    PayloadFormat,
    Reading,
    decode,
    decode_single,
)
from sensord.wire.topics import TopicFilter, stream_id

pytestmark = pytest.mark.slow  # models trained, runs end to end: seconds each

NOW = 1_700_000_000.0
FORMATS: tuple[PayloadFormat, ...] = ("auto", "number", "json", "senml")
FEATURE_SETS: tuple[tuple[str, ...], ...] = (
    ("value",),
    ("temp",),
    ("temp", "hum"),
    ("value", "temp"),
    ("a", "b", "c"),
)
REASONS = frozenset({"empty", "malformed", "non_finite", "wrong_fields", "bad_timestamp"})
INGEST_REASONS = REASONS | {"too_large", "unknown_topic", "bad_stream_id"}

# Keys codec looks for (plain objects, then SenML records), and number tokens JSON writers
# do not produce: overflowing, NaN-like, negative zero, beyond 64 bits, not JSON at all.
OBJECT_KEYS = ("value", "ts", "timestamp", "time", "temp", "hum", "a", "b", "c")
SENML_KEYS = ("bn", "bt", "bv", "n", "t", "v", "vs", "vb", "vd", "u", "bu", "bver")
ODD_NUMBER_TOKENS = (
    "1e400",
    "-1e400",
    "1E+308",
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "1.7976931348623159e308",
    "5e-324",
    "1e-400",
    "-0",
    "-0.0",
    "0e0",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "1" + "0" * 308,
    "1" + "0" * 400,
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "nan",
    "inf",
    "1.",
    ".5",
    "01",
    "+1",
    "0x10",
    "1_000",
    "1e",
    "--1",
)
ODD_NUMBER_TEXTS = (
    *ODD_NUMBER_TOKENS,
    " 5 ",
    "\t-3e2\n",
    "+.5",
    "5.",
    "1_0",
    "infinity",
    "-inf",
    "+nan",
    "1e-5000",
    "0" * 500 + "1",
    "\u0661\u0662",  # Arabic-Indic digits
    "\uff15",  # fullwidth five
    "\u0665.\u0665",
    "5\x00",
    "\x1c5",
    "5\xa0",
    "\ufeff5",
)
WHITESPACE = ("", " ", "\n", "\t", " \r\n", "\x0b", "\x0c", "\x1c", "\xa0", "\u2003")
MAX_DOUBLE = 1.7976931348623157e308


class ContractError(AssertionError):
    """A decoder broke its contract; ``kind`` names how (the soak counts by kind)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def violation(kind: str, payload: bytes, fmt: str, detail: str) -> ContractError:
    return ContractError(kind, f"{detail}; fmt={fmt!r} payload={payload[:200]!r}")


@dataclass(frozen=True)
class Outcome:
    """What decode made of a payload: a rejection reason, or readings as plain lists."""

    reason: str | None
    readings: tuple[tuple[float, tuple[float, ...]], ...] = ()


def takes_senml_path(payload: bytes, fmt: PayloadFormat) -> bool:
    """True if decode reads ``payload`` as a SenML pack (the only multi-reading path)."""
    return fmt == "senml" or (fmt == "auto" and payload.strip()[:1] == b"[")


def check_decode(
    payload: bytes, fmt: PayloadFormat, features: Sequence[str], received: float
) -> Outcome:
    """decode's verdict on ``payload``; raise ContractError if it breaks the contract.

    Any exception but DecodeError propagates: the caller sees it as the bug it is.
    """
    try:
        readings = decode(payload, fmt, features, received)
    except DecodeError as exc:
        if exc.reason not in REASONS:
            raise violation("unknown_reason", payload, fmt, f"reason {exc.reason!r}") from None
        if not isinstance(exc.detail, str):
            raise violation("detail_type", payload, fmt, repr(exc.detail)) from None
        return Outcome(exc.reason)
    if not isinstance(readings, list) or not readings:
        raise violation("no_readings", payload, fmt, f"decode returned {readings!r}")
    senml = takes_senml_path(payload, fmt)
    if not senml and len(readings) != 1:
        raise violation("reading_count", payload, fmt, f"{len(readings)} readings")
    rows: list[tuple[float, tuple[float, ...]]] = []
    finite = True
    for reading in readings:
        if not isinstance(reading, Reading):
            raise violation("reading_type", payload, fmt, repr(reading))
        ts, values = reading.ts, reading.values
        if type(ts) is not float:
            raise violation("ts_type", payload, fmt, f"ts is {type(ts).__name__}")
        if not (
            isinstance(values, np.ndarray)
            and values.dtype == np.float64
            and values.shape == (len(features),)
        ):
            raise violation("values_shape", payload, fmt, f"values {values!r} for {features}")
        if rows and not ts > rows[-1][0]:
            raise violation("time_order", payload, fmt, f"ts {ts} after {rows[-1][0]}")
        finite = finite and math.isfinite(ts) and bool(np.isfinite(values).all())
        rows.append((ts, tuple(values.tolist())))
    plain_number = fmt == "number" or (fmt == "auto" and payload.strip()[:1] not in b"{[")
    if plain_number and rows[0][0] != received:
        raise violation("ts_not_received", payload, fmt, f"ts {rows[0][0]} != {received}")
    if not finite:
        raise violation("non_finite_accepted", payload, fmt, f"readings {rows}")
    return Outcome(None, tuple(rows))


def check_decode_single(
    payload: bytes, fmt: PayloadFormat, feature: str, received: float
) -> tuple[float, float] | None:
    """decode_single's answer, checked against decode wherever it gives one."""
    short = decode_single(payload, fmt, received)
    if short is None:
        return None
    if not (isinstance(short, tuple) and len(short) == 2):
        raise violation("short_type", payload, fmt, repr(short))
    ts, value = short
    if type(ts) is not float or type(value) is not float:
        raise violation("short_type", payload, fmt, repr(short))
    if not (math.isfinite(ts) and math.isfinite(value)):
        raise violation("non_finite_accepted", payload, fmt, f"decode_single gave {short}")
    expected = check_decode(payload, fmt, (feature,), received)
    if expected != Outcome(None, ((ts, (value,)),)):
        raise violation("short_path_disagrees", payload, fmt, f"{short} vs decode {expected}")
    return short


# Routes of the ingest checks: every format, one and several features, a {topic} template
# and one whose stream ids are never safe (bad_stream_id).
RULES: tuple[RouteRule, ...] = (
    RouteRule(TopicFilter("a/+"), "{wild}", "auto", ("value",)),
    RouteRule(TopicFilter("j/+"), "{wild}", "json", ("temp",)),
    RouteRule(TopicFilter("n/+"), "{wild}", "number", ("value",)),
    RouteRule(TopicFilter("s/+"), "{wild}", "senml", ("temp", "hum")),
    RouteRule(TopicFilter("s1/+"), "{wild}", "senml", ("value",)),
    RouteRule(TopicFilter("m/#"), "{topic}", "auto", ("temp", "hum")),
    RouteRule(TopicFilter("x/+/y"), "{5}", "auto", ("value",)),
)
TOPICS = (
    "a/1",
    "a/2",
    "j/1",
    "n/1",
    "s/1",
    "s1/1",
    "m",
    "m/1/2",
    "x/1/y",
    "a/bad id",
    "a/1/extra",
    "zzz",
    "$SYS/a",
)


def expected_route(topic: str) -> tuple[int, str] | str:
    """The route index and stream id of ``topic``, or the rejection reason."""
    for index, rule in enumerate(RULES):
        wild = rule.filter.match(topic)
        if wild is None:
            continue
        try:
            return index, stream_id(rule.template, topic, wild)
        except StreamIdError:
            return "bad_stream_id"
    return "unknown_topic"


Row = tuple[str, str, float, tuple[float, ...], float]


def check_route_batch(messages: Sequence[Message], limit: int) -> tuple[int, Counter[str]]:
    """Messages accepted and rejections by reason of one route_batch; checked against decode.

    ``received`` must be distinct per message: it tells which message a column row is from.
    """
    if len({m.received for m in messages}) != len(messages):
        raise ValueError("check_route_batch needs a distinct receive time per message")
    ingest = Ingest(rules=RULES, max_payload_bytes=limit, limiter=RateLimitedLog(3600.0))
    parts = ingest.route_batch(messages)
    expected: list[list[Row]] = [[] for _ in RULES]
    rejected: Counter[str] = Counter()
    for topic, payload, received, *_ in messages:
        if len(payload) > limit:
            rejected["too_large"] += 1
            continue
        route = expected_route(topic)
        if isinstance(route, str):
            rejected[route] += 1
            continue
        index, stream = route
        rule = RULES[index]
        try:
            readings = decode(payload, rule.format, rule.features, received)
        except DecodeError as exc:
            rejected[exc.reason] += 1
            continue
        expected[index].extend(
            (stream, topic, r.ts, tuple(r.values.tolist()), received) for r in readings
        )
    sample = f"batch of {len(messages)}, first payloads {[m.payload[:40] for m in messages[:3]]}"
    if len(parts) != len(RULES):
        raise ContractError("batch_parts", f"{len(parts)} parts; {sample}")
    accepted: set[float] = set()
    non_finite: list[Row] = []
    for index, (part, rule) in enumerate(zip(parts, RULES, strict=True)):
        n, f = len(part), len(rule.features)
        columns = (part.streams, part.topics, part.ts, part.received)
        if part.features != f or any(len(c) != n for c in columns) or len(part.values) != n * f:
            raise ContractError("batch_columns", f"route {index} ragged columns; {sample}")
        got: list[Row] = [
            (part.streams[i], part.topics[i], part.ts[i], tuple(part.values[i * f : (i + 1) * f]),
             part.received[i])
            for i in range(n)
        ]  # fmt: skip
        if got != expected[index]:
            raise ContractError(
                "batch_disagrees",
                f"route {index}: got {got[:4]} expected {expected[index][:4]}; {sample}",
            )
        accepted.update(part.received)
        non_finite.extend(
            row for row in got if not all(math.isfinite(x) for x in (row[2], *row[3]))
        )
    if ingest.rejected != rejected or not set(ingest.rejected) <= INGEST_REASONS:
        raise ContractError(
            "rejected_miscounted", f"{dict(ingest.rejected)} expected {dict(rejected)}; {sample}"
        )
    if len(accepted) + sum(ingest.rejected.values()) != len(messages):
        raise ContractError(
            "message_lost",
            f"{len(accepted)} accepted + {ingest.rejected.total()} rejected"
            f" != {len(messages)}; {sample}",
        )
    if non_finite:
        raise ContractError("non_finite_accepted", f"rows {non_finite[:4]}; {sample}")
    return len(accepted), rejected


# ---------------------------------------------------------------------------------------
# JSON text with what JSON writers refuse: raw number tokens, duplicate keys, lone
# surrogates (invalid UTF-8 once encoded with surrogatepass), odd whitespace.


@dataclass(frozen=True)
class Raw:
    """A token written as is (``1e400``, ``NaN``, ``01``...)."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """A JSON object written from key/value pairs, so a key may repeat."""

    items: tuple[tuple[str, object], ...]


def dump(node: object, ascii_only: bool = False) -> str:
    """JSON text of a tree of None/bool/int/float/str/list/dict/Raw/Pairs."""
    if isinstance(node, Raw):
        return node.text
    if node is None or isinstance(node, bool | int | float):
        return json.dumps(node)  # NaN and Infinity for those floats
    if isinstance(node, str):
        return json.dumps(node, ensure_ascii=ascii_only)
    if isinstance(node, list):
        return "[" + ",".join(dump(item, ascii_only) for item in node) + "]"
    if isinstance(node, Pairs):
        items = node.items
    elif isinstance(node, dict):
        items = tuple(node.items())
    else:
        raise TypeError(f"cannot write {type(node).__name__} as JSON")
    return "{" + ",".join(f"{dump(k, ascii_only)}:{dump(v, ascii_only)}" for k, v in items) + "}"


def encode(node: object, ascii_only: bool = False, pad: tuple[str, str] = ("", "")) -> bytes:
    return (pad[0] + dump(node, ascii_only) + pad[1]).encode("utf-8", "surrogatepass")


def deep_nesting(depth: int, opener: str, inner: str, closed: int) -> bytes:
    """``depth`` openers around ``inner``, ``closed`` of them closed again."""
    closer = {"[": "]", '{"value":': "}", '{"a":': "}", '[{"v":': "}]", '{"ts":[': "]}"}[opener]
    return (opener * depth + inner + closer * min(closed, depth)).encode()


def mutate(payload: bytes, edits: Sequence[tuple[int, int, bytes]]) -> bytes:
    """Byte edits: 0 insert, 1 replace, 2 delete, 3 truncate, at ``position % (len + 1)``."""
    for op, position, data in edits:
        at = position % (len(payload) + 1)
        if op == 0:
            payload = payload[:at] + data + payload[at:]
        elif op == 1:
            payload = payload[:at] + data + payload[at + len(data) :]
        elif op == 2:
            payload = payload[:at] + payload[at + len(data) :]
        else:
            payload = payload[:at]
    return payload


# ---------------------------------------------------------------------------------------
# Hypothesis strategies: the key names codec reads, timestamps of every kind, SenML packs.

# Clean text most of the time; otherwise whitespace JSON allows, and some it does not.
pads = st.one_of(
    st.just(("", "")), st.tuples(st.sampled_from(WHITESPACE), st.sampled_from(WHITESPACE))
)
good_numbers: st.SearchStrategy[object] = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 1, -1, 0.5]),
)
extreme_numbers: st.SearchStrategy[object] = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([MAX_DOUBLE, -MAX_DOUBLE, 5e-324, 2**53 + 1, 2**64, 1e308]),
    st.sampled_from(ODD_NUMBER_TOKENS).map(Raw),
)
json_numbers = st.one_of(good_numbers, extreme_numbers)
epoch_numbers: st.SearchStrategy[object] = st.one_of(
    st.floats(min_value=1.6e9, max_value=1.8e9),
    st.floats(min_value=1.6e12, max_value=1.8e12),
    st.integers(min_value=-(2**40), max_value=2**42),
    st.sampled_from([1e11, 1e11 - 1, -1e11, 2**28, 2**28 - 1, -(2**28), 0]),
)
DAY = timedelta(hours=23, minutes=59)
utc_offsets = st.builds(timezone, st.timedeltas(min_value=-DAY, max_value=DAY))


@st.composite
def iso_texts(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(timezones=st.one_of(st.none(), st.just(UTC), utc_offsets)))
    text = moment.isoformat(sep=draw(st.sampled_from(["T", " "])))
    form = draw(st.sampled_from(ISO_FORMS))
    return iso_form(moment, text, form, draw(st.integers(0, len(text))))


ISO_FORMS = ("as_is", "as_is", "z", "date", "lower_z", "cut")


def iso_form(moment: datetime, text: str, form: str, cut_at: int) -> str:
    """ISO text in one of the shapes sensors send: a Z added, a date only, cut short."""
    if form == "z" and moment.tzinfo is None:
        return text + "Z"
    if form == "lower_z" and moment.tzinfo is None:
        return text + "z"
    if form == "date":
        return moment.date().isoformat()
    if form == "cut":
        return text[:cut_at]
    return text


timestamp_texts: st.SearchStrategy[str] = st.one_of(
    iso_texts(),
    iso_texts(),
    st.builds(str, epoch_numbers),
    st.sampled_from(ODD_NUMBER_TEXTS),
    st.builds(repr, st.floats()),
    st.text(alphabet="0123456789-:.TZ+ ", max_size=30),
    st.text(max_size=12),
)
good_timestamps: st.SearchStrategy[object] = st.one_of(epoch_numbers, iso_texts())
scalars: st.SearchStrategy[object] = st.one_of(
    st.none(), st.booleans(), json_numbers, st.text(max_size=12), timestamp_texts
)
keys = st.one_of(st.sampled_from(OBJECT_KEYS + SENML_KEYS), st.text(max_size=6))
json_values: st.SearchStrategy[object] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=4),
        st.builds(Pairs, st.lists(st.tuples(keys, children), max_size=4).map(tuple)),
    ),
    max_leaves=10,
)
timestamps: st.SearchStrategy[object] = st.one_of(
    good_timestamps, timestamp_texts, json_numbers, st.none(), st.booleans(), json_values
)
numberish: st.SearchStrategy[object] = st.one_of(
    json_numbers, json_numbers, st.lists(json_numbers, max_size=4), json_values
)
# Any object with codec's key names (and others): mostly rejected, in every way.
value_objects: st.SearchStrategy[dict[str, object]] = st.builds(
    lambda named, extra: {**extra, **named},
    st.fixed_dictionaries(
        {},
        optional={
            "value": numberish,
            "ts": timestamps,
            "timestamp": timestamps,
            "time": timestamps,
            "temp": numberish,
            "hum": numberish,
            "a": numberish,
            "b": numberish,
            "c": numberish,
        },
    ),
    st.dictionaries(st.text(max_size=6), json_values, max_size=3),
)


@st.composite
def objects_for(draw: st.DrawFn, features: Sequence[str]) -> object:
    """A JSON object that should read as one reading of ``features``, often with a flaw."""
    obj: dict[str, object] = {}
    if draw(st.booleans()):
        if len(features) == 1 and draw(st.booleans()):
            obj["value"] = draw(good_numbers)
        else:
            n = len(features)
            obj["value"] = draw(st.lists(good_numbers, min_size=n, max_size=n))
    else:
        obj.update((name, draw(good_numbers)) for name in features)
    ts_key = draw(st.sampled_from([None, "ts", "ts", "timestamp", "time"]))
    if ts_key is not None:
        obj[ts_key] = draw(st.one_of(good_timestamps, good_timestamps, timestamps))
    flaw = draw(st.sampled_from(["none", "none", "extra", "override", "drop"]))
    if flaw == "extra":
        obj.update(draw(st.dictionaries(keys, json_values, max_size=2)))
    elif flaw == "override":
        obj.update(draw(value_objects))
    elif flaw == "drop" and obj:
        del obj[draw(st.sampled_from(sorted(obj)))]
    return obj


# What decode_single's short path reads: a numeric value, maybe a numeric or other ts.
single_objects: st.SearchStrategy[object] = st.builds(
    lambda named, extra: {**extra, **named},
    st.fixed_dictionaries(
        {"value": st.one_of(good_numbers, good_numbers, json_numbers)},
        optional={"ts": st.one_of(epoch_numbers, epoch_numbers, timestamps), "time": timestamps},
    ),
    st.one_of(st.just({}), st.dictionaries(keys, json_values, max_size=2)),
)
senml_names: st.SearchStrategy[object] = st.one_of(
    st.sampled_from(["", "temp", "hum", "value", "a", "urn:dev:x:", "dev/hum", "dev.temp"]),
    st.sampled_from(["urn:dev:x:temp", "x:value", "b", "c", "pressure"]),
    st.text(max_size=6),
    json_values,
)
senml_times: st.SearchStrategy[object] = st.one_of(
    st.floats(min_value=-(2**28), max_value=2**28),
    epoch_numbers,
    st.sampled_from([MAX_DOUBLE, -MAX_DOUBLE, 1e308, SENML_RELATIVE_BELOW]),
    json_numbers,
    json_values,
)
senml_values: st.SearchStrategy[object] = st.one_of(
    good_numbers,
    st.sampled_from([MAX_DOUBLE, -MAX_DOUBLE, 1e308]),
    json_numbers,
    json_values,
)
# Any SenML-like record: every field optional, of any JSON type.
senml_records: st.SearchStrategy[object] = st.fixed_dictionaries(
    {},
    optional={
        "bn": senml_names,
        "bt": senml_times,
        "bv": senml_values,
        "n": senml_names,
        "t": senml_times,
        "v": senml_values,
        "vs": st.text(max_size=4),
        "vb": st.booleans(),
        "u": st.sampled_from(["Cel", "%RH", ""]),
    },
)
senml_packs: st.SearchStrategy[object] = st.lists(
    st.one_of(senml_records, senml_records, senml_records, json_values), max_size=8
)


@st.composite
def senml_for(draw: st.DrawFn, features: Sequence[str]) -> object:
    """A SenML pack of readings of ``features`` (names plain or under a base name), often
    with a flaw: a record lost, a wild record added, records shuffled, huge numbers."""
    base_name = draw(st.sampled_from(["", "", "urn:dev:x:", "dev/", "dev."]))
    head: dict[str, object] = {}
    if base_name:
        head["bn"] = base_name
    if draw(st.booleans()):
        head["bt"] = draw(st.one_of(epoch_numbers, st.floats(-1e6, 1e6), senml_times))
    if draw(st.booleans()):
        head["bv"] = draw(st.one_of(good_numbers, senml_values))
    moments = draw(st.lists(st.one_of(st.integers(-100, 100), senml_times), min_size=1, max_size=3))
    records: list[object] = []
    for moment in moments:
        for feature in features:
            record: dict[str, object] = {"n": feature, "v": draw(senml_values)}
            if moment != 0 or draw(st.booleans()):
                record["t"] = moment
            records.append(record)
    if head:
        first = records[0]
        assert isinstance(first, dict)
        records[0] = {**head, **first}
    flaw = draw(st.sampled_from(["none", "none", "none", "drop", "wild", "shuffle", "string"]))
    if flaw == "drop":
        del records[draw(st.integers(0, len(records) - 1))]
    elif flaw == "wild":
        records.insert(draw(st.integers(0, len(records))), draw(senml_records))
    elif flaw == "shuffle":
        records = draw(st.permutations(records))
    elif flaw == "string":
        records.append({"n": features[0], "vs": "on"})
    return records


def documents(trees: st.SearchStrategy[object]) -> st.SearchStrategy[bytes]:
    return st.builds(encode, trees, st.booleans(), pads)


feature_sets = st.sampled_from(FEATURE_SETS)
number_texts: st.SearchStrategy[bytes] = st.builds(
    lambda text, pad, encoding: (pad[0] + text + pad[1]).encode(encoding, "replace"),
    st.one_of(
        st.builds(repr, good_numbers),
        st.builds(repr, st.floats()),
        st.sampled_from(ODD_NUMBER_TEXTS),
        st.builds("{:e}".format, st.floats()),
        st.builds("{:.17g}".format, st.floats()),
        st.builds(str, st.integers(min_value=-(10**400), max_value=10**400)),
        st.text(st.characters(categories=["Nd"]), min_size=1, max_size=6),
        st.text(alphabet="0123456789.eE+-_ infatyINFATY", min_size=1, max_size=12),
    ),
    pads,
    st.sampled_from(["ascii", "utf-8", "utf-8", "utf-16"]),
)
deep_payloads: st.SearchStrategy[bytes] = st.builds(
    deep_nesting,
    st.integers(min_value=1, max_value=3000),
    st.sampled_from(["[", '{"value":', '{"a":', '[{"v":', '{"ts":[']),
    st.sampled_from(["1", "", "null", "[]", "{}", "1e400"]),
    st.integers(min_value=0, max_value=3000),
)
well_formed: st.SearchStrategy[bytes] = st.one_of(
    feature_sets.flatmap(lambda features: documents(objects_for(features))),
    feature_sets.flatmap(lambda features: documents(senml_for(features))),
    documents(single_objects),
)
structured: st.SearchStrategy[bytes] = st.one_of(
    number_texts,
    well_formed,
    documents(json_values),
    documents(value_objects),
    documents(senml_packs),
)
mutations = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 10**6), st.binary(min_size=1, max_size=3)),
    min_size=1,
    max_size=3,
)
payloads: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=48),
    number_texts,
    well_formed,
    documents(json_values),
    documents(value_objects),
    documents(senml_packs),
    deep_payloads,
    st.builds(mutate, structured, mutations),
)
formats = st.sampled_from(FORMATS)
receives = st.one_of(st.just(NOW), st.floats(min_value=0.0, max_value=4e9))

EXAMPLES = int(os.environ.get("SENSORD_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays deterministic
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------------------
# The properties.


def verdict(outcome: Outcome) -> str:
    return outcome.reason or f"{min(len(outcome.readings), 3)}+ reading(s)"


@FUZZ
@given(payload=payloads, fmt=formats, features=feature_sets, received=receives)
@example(b"\xff\xfe\x00garbage", "auto", ("value",), NOW)
@example(b"[" * 5000 + b"]" * 5000, "auto", ("value",), NOW)
@example(b'{"value": ' + b"9" * 400 + b"}", "json", ("value",), NOW)
@example(b" \xd9\xa1\xd9\xa2 ", "number", ("value",), NOW)
@example(
    b'[{"bt": 1.7e9, "n": "temp", "v": 1}, {"n": "hum", "v": 2}]', "auto", ("temp", "hum"), NOW
)
def test_decode_returns_finite_readings_or_raises_decode_error(
    payload: bytes, fmt: PayloadFormat, features: tuple[str, ...], received: float
) -> None:
    event(f"{fmt}: {verdict(check_decode(payload, fmt, features, received))}")


@st.composite
def object_cases(draw: st.DrawFn) -> tuple[bytes, tuple[str, ...]]:
    features = draw(feature_sets)
    tree = draw(st.one_of(objects_for(features), objects_for(features), value_objects))
    return draw(documents(st.just(tree))), features


@FUZZ
@given(case=object_cases(), fmt=formats, received=receives)
def test_json_objects_with_the_real_keys(
    case: tuple[bytes, tuple[str, ...]], fmt: PayloadFormat, received: float
) -> None:
    payload, features = case
    event(f"{fmt}: {verdict(check_decode(payload, fmt, features, received))}")


@st.composite
def senml_cases(draw: st.DrawFn) -> tuple[bytes, tuple[str, ...]]:
    features = draw(feature_sets)
    tree = draw(st.one_of(senml_for(features), senml_for(features), senml_packs))
    return draw(documents(st.just(tree))), features


@FUZZ
@given(case=senml_cases(), fmt=st.sampled_from(["auto", "senml"]), received=receives)
def test_senml_packs(
    case: tuple[bytes, tuple[str, ...]], fmt: PayloadFormat, received: float
) -> None:
    payload, features = case

    event(f"{fmt}: {verdict(check_decode(payload, fmt, features, received))}")


@FUZZ
@given(payload=number_texts, fmt=formats, features=feature_sets, received=receives)
def test_numbers_as_text(
    payload: bytes, fmt: PayloadFormat, features: tuple[str, ...], received: float
) -> None:
    event(f"{fmt}: {verdict(check_decode(payload, fmt, features, received))}")


@FUZZ
@given(
    payload=st.one_of(documents(single_objects), number_texts, payloads),
    fmt=formats,
    feature=st.sampled_from(["value", "temp"]),
    received=receives,
)
@example(b"1_000", "auto", "value", NOW)
@example(b'{"value": 1.5, "ts": 1700000001500}', "json", "temp", NOW)
@example(b'{"value": 18446744073709551616, "ts": -0}', "auto", "value", NOW)
def test_decode_single_agrees_with_decode(
    payload: bytes, fmt: PayloadFormat, feature: str, received: float
) -> None:
    short = check_decode_single(payload, fmt, feature, received)
    event(f"{fmt}: {'short path' if short is not None else 'decode decides'}")


def payloads_for(topic: str) -> st.SearchStrategy[bytes]:
    """Any payload, or one made for the features of the topic's route."""
    route = expected_route(topic)
    features = RULES[route[0]].features if isinstance(route, tuple) else ("value",)
    fitting = st.one_of(objects_for(features), senml_for(features))
    return st.one_of(documents(fitting), payloads)


TOPIC_PAYLOADS = {topic: payloads_for(topic) for topic in TOPICS}
messages = st.lists(
    st.one_of([st.tuples(st.just(topic), TOPIC_PAYLOADS[topic]) for topic in TOPICS]),
    max_size=8,
)


@FUZZ
@given(batch=messages, limit=st.sampled_from([64, 1024, 1 << 20]), start=receives)
def test_route_batch_accounts_for_every_message(
    batch: list[tuple[str, bytes]], limit: int, start: float
) -> None:
    msgs = [Message(topic, payload, start + i, 1) for i, (topic, payload) in enumerate(batch)]

    accepted, rejected = check_route_batch(msgs, limit)
    event(f"accepted {min(accepted, 3)}+ of {min(len(msgs), 3)}+")
    for reason in rejected:
        event(f"rejected {reason}")


# ---------------------------------------------------------------------------------------
# Regressions: payloads that once broke the contract, pinned.


@pytest.mark.parametrize("fmt", ["senml", "auto"])
@pytest.mark.parametrize(
    ("payload", "sum_name"),
    [
        (b'[{"bv": 1e308, "v": 1e308}]', "bv + v"),
        (b'[{"bv": -1.7976931348623157e308, "v": -1e308}]', "bv + v"),
        (b'[{"bt": 1e308, "t": 1e308, "v": 1}]', "bt + t"),
    ],
)
def test_senml_sums_that_overflow_are_rejected(
    payload: bytes, sum_name: str, fmt: PayloadFormat
) -> None:
    """SenML sums bv + v and bt + t of finite numbers that overflow to inf: non_finite.

    codec once accepted these with an infinite value or timestamp.
    """
    with pytest.raises(DecodeError) as info:
        decode(payload, fmt, ("value",), NOW)
    assert info.value.reason == "non_finite"
    assert sum_name in info.value.detail
    assert check_decode(payload, fmt, ("value",), NOW) == Outcome("non_finite")


def test_the_checkers_catch_a_decoder_that_raises_value_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The properties can fail: a ValueError that is no DecodeError gets through."""
    import sensord.daemon.ingest

    def raising(*args: object) -> list[Reading]:
        raise ValueError("boom")

    monkeypatch.setattr(f"{__name__}.decode", raising)
    monkeypatch.setattr(sensord.daemon.ingest, "decode", raising)
    with pytest.raises(ValueError, match="boom"):
        check_decode(b"x", "auto", ("value",), NOW)
    with pytest.raises(ValueError, match="boom"):
        check_route_batch([Message("a/1", b"x", NOW, 1)], 64)


def test_the_checkers_catch_a_non_finite_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def infinite(*args: object) -> list[Reading]:
        return [Reading(NOW, np.array([math.inf]))]

    monkeypatch.setattr(f"{__name__}.decode", infinite)
    with pytest.raises(ContractError) as info:
        check_decode(b"1", "auto", ("value",), NOW)
    assert info.value.kind == "non_finite_accepted"


def test_the_checkers_catch_a_short_path_that_disagrees(monkeypatch: pytest.MonkeyPatch) -> None:
    def lying(payload: bytes, fmt: str, received: float) -> tuple[float, float]:
        return received, 2.0

    monkeypatch.setattr(f"{__name__}.decode_single", lying)
    with pytest.raises(ContractError) as info:
        check_decode_single(b"1", "auto", "value", NOW)
    assert info.value.kind == "short_path_disagrees"
