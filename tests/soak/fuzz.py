"""Soak the payload decoders: the properties of tests/test_fuzz.py over many payloads.

    python -m tests.soak.fuzz [--examples N] [--seed S] [--json OUT]

A seeded hand-rolled generator (fast, reproducible: the same seed gives the same payloads)
makes N payloads of every kind tests/test_fuzz.py's strategies make: random bytes, numbers
as text in odd forms, JSON objects with codec's key names, SenML packs, arbitrary JSON
trees, very deep nesting, and byte-level mutations of all those. Each payload is decoded in
every format (decode and decode_single, checked with test_fuzz's checkers) and sent once
through ``Ingest.route_batch`` on a random topic, in batches.

Prints a table (and writes it as JSON with ``--json``): payloads, ingest's accepted and
rejected by reason, decode's verdicts per format, unexpected exceptions (anything but
DecodeError) and contract violations by kind. Exits 1 on any unexpected exception or
violation.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import struct
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from sensord.daemon.transport import Message
from sensord.logs import configure
from tests.test_fuzz import (
    FEATURE_SETS,
    FORMATS,
    ISO_FORMS,
    MAX_DOUBLE,
    NOW,
    OBJECT_KEYS,
    ODD_NUMBER_TEXTS,
    ODD_NUMBER_TOKENS,
    RULES,
    SENML_KEYS,
    TOPICS,
    WHITESPACE,
    ContractError,
    Pairs,
    Raw,
    check_decode,
    check_decode_single,
    check_route_batch,
    deep_nesting,
    encode,
    expected_route,
    iso_form,
    mutate,
)

T = TypeVar("T")
BATCH = 200
SAMPLES_PER_KIND = 3
KINDS = (
    ("bytes", 8),
    ("number_text", 12),
    ("object_for", 18),
    ("single_object", 8),
    ("senml_for", 16),
    ("value_object", 8),
    ("senml_pack", 6),
    ("json_tree", 8),
    ("deep", 2),
    ("mutated", 14),
)


class PayloadGenerator:
    """Payloads of every kind test_fuzz's strategies draw, from one seeded Random."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    # -- numbers and timestamps -----------------------------------------------------------

    def any_float(self) -> float:
        """Any double, NaN and infinities included (random bits)."""
        value: float = struct.unpack("<d", self.rng.getrandbits(64).to_bytes(8, "little"))[0]
        return value

    def good_number(self) -> object:
        rng = self.rng
        pick = rng.randrange(4)
        if pick == 0:
            return rng.uniform(-1e6, 1e6)
        if pick == 1:
            return rng.randint(-(10**6), 10**6)
        if pick == 2:
            value = self.any_float()
            return value if math.isfinite(value) else 0.5
        return rng.choice([0, -0.0, 1, -1, 0.5])

    def extreme_number(self) -> object:
        rng = self.rng
        pick = rng.randrange(4)
        if pick == 0:
            return rng.randint(-(10**30), 10**30)
        if pick == 1:
            return self.any_float()
        if pick == 2:
            return rng.choice([MAX_DOUBLE, -MAX_DOUBLE, 5e-324, 2**53 + 1, 2**64, 1e308])
        return Raw(rng.choice(ODD_NUMBER_TOKENS))

    def number(self) -> object:
        return self.good_number() if self.rng.random() < 0.6 else self.extreme_number()

    def epoch(self) -> object:
        rng = self.rng
        pick = rng.randrange(4)
        if pick == 0:
            return rng.uniform(1.6e9, 1.8e9)
        if pick == 1:
            return rng.uniform(1.6e12, 1.8e12)
        if pick == 2:
            return rng.randint(-(2**40), 2**42)
        return rng.choice([1e11, 1e11 - 1, -1e11, 2**28, 2**28 - 1, -(2**28), 0])

    def iso_text(self) -> str:
        rng = self.rng
        moment = datetime(1, 1, 1) + timedelta(seconds=rng.uniform(0, 315537897599.0))
        zone = rng.randrange(3)
        if zone == 1:
            moment = moment.replace(tzinfo=UTC)
        elif zone == 2:
            offset = timedelta(minutes=rng.randint(-(23 * 60 + 59), 23 * 60 + 59))
            moment = moment.replace(tzinfo=timezone(offset))
        text = moment.isoformat(sep=rng.choice("T "))
        return iso_form(moment, text, rng.choice(ISO_FORMS), rng.randint(0, len(text)))

    def text(self, max_size: int) -> str:
        """Short text: ASCII, any code point (lone surrogates too), digits of other scripts."""
        rng = self.rng
        size = rng.randint(0, max_size)
        pick = rng.randrange(3)
        if pick == 0:
            return "".join(chr(rng.randint(32, 126)) for _ in range(size))
        if pick == 1:
            return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(size))
        return "".join(rng.choice("0123456789-:.TZ+ \u0661\uff15e") for _ in range(size))

    def timestamp_text(self) -> str:
        rng = self.rng
        pick = rng.randrange(6)
        if pick < 2:
            return self.iso_text()
        if pick == 2:
            return str(self.epoch())
        if pick == 3:
            return rng.choice(ODD_NUMBER_TEXTS)
        if pick == 4:
            return repr(self.any_float())
        return self.text(12)

    def good_timestamp(self) -> object:
        return self.epoch() if self.rng.random() < 0.5 else self.iso_text()

    def timestamp(self) -> object:
        pick = self.rng.randrange(6)
        if pick < 2:
            return self.good_timestamp()
        if pick == 2:
            return self.timestamp_text()
        if pick == 3:
            return self.number()
        if pick == 4:
            return self.rng.choice([None, True, False])
        return self.tree()

    # -- JSON trees -----------------------------------------------------------------------

    def key(self) -> str:
        if self.rng.random() < 0.6:
            return self.rng.choice(OBJECT_KEYS + SENML_KEYS)
        return self.text(6)

    def scalar(self) -> object:
        pick = self.rng.randrange(5)
        if pick == 0:
            return self.rng.choice([None, True, False])
        if pick <= 2:
            return self.number()
        if pick == 3:
            return self.text(12)
        return self.timestamp_text()

    def tree(self, depth: int = 0) -> object:
        rng = self.rng
        if depth >= 3 or rng.random() < 0.55:
            return self.scalar()
        size = rng.randint(0, 4)
        pick = rng.randrange(3)
        if pick == 0:
            return [self.tree(depth + 1) for _ in range(size)]
        if pick == 1:
            return {self.key(): self.tree(depth + 1) for _ in range(size)}
        return Pairs(tuple((self.key(), self.tree(depth + 1)) for _ in range(size)))

    def numberish(self) -> object:
        pick = self.rng.randrange(4)
        if pick < 2:
            return self.number()
        if pick == 2:
            return [self.number() for _ in range(self.rng.randint(0, 4))]
        return self.tree()

    def value_object(self) -> dict[str, object]:
        rng = self.rng
        obj: dict[str, object] = {self.text(6): self.tree() for _ in range(rng.randint(0, 3))}
        for name in ("value", "temp", "hum", "a", "b", "c"):
            if rng.random() < 0.3:
                obj[name] = self.numberish()
        for name in ("ts", "timestamp", "time"):
            if rng.random() < 0.3:
                obj[name] = self.timestamp()
        return obj

    def object_for(self, features: Sequence[str]) -> object:
        rng = self.rng
        obj: dict[str, object] = {}
        if rng.random() < 0.5:
            if len(features) == 1 and rng.random() < 0.5:
                obj["value"] = self.good_number()
            else:
                obj["value"] = [self.good_number() for _ in features]
        else:
            obj.update((name, self.good_number()) for name in features)
        ts_key = rng.choice([None, "ts", "ts", "timestamp", "time"])
        if ts_key is not None:
            obj[ts_key] = self.good_timestamp() if rng.random() < 0.67 else self.timestamp()
        flaw = rng.choice(["none", "none", "extra", "override", "drop"])
        if flaw == "extra":
            obj.update((self.key(), self.tree()) for _ in range(rng.randint(0, 2)))
        elif flaw == "override":
            obj.update(self.value_object())
        elif flaw == "drop" and obj:
            del obj[rng.choice(sorted(obj))]
        return obj

    def single_object(self) -> object:
        rng = self.rng
        obj: dict[str, object] = {self.key(): self.tree() for _ in range(rng.randint(0, 2))}
        obj["value"] = self.good_number() if rng.random() < 0.67 else self.number()
        if rng.random() < 0.6:
            obj["ts"] = self.epoch() if rng.random() < 0.67 else self.timestamp()
        if rng.random() < 0.2:
            obj["time"] = self.timestamp()
        return obj

    # -- SenML ----------------------------------------------------------------------------

    def senml_name(self) -> object:
        rng = self.rng
        pick = rng.randrange(4)
        if pick == 0:
            return rng.choice(["", "temp", "hum", "value", "a", "urn:dev:x:", "dev/hum"])
        if pick == 1:
            return rng.choice(["dev.temp", "urn:dev:x:temp", "x:value", "b", "c", "pressure"])
        if pick == 2:
            return self.text(6)
        return self.tree()

    def senml_time(self) -> object:
        rng = self.rng
        pick = rng.randrange(5)
        if pick == 0:
            return rng.uniform(-(2**28), 2**28)
        if pick == 1:
            return self.epoch()
        if pick == 2:
            return rng.choice([MAX_DOUBLE, -MAX_DOUBLE, 1e308, 2**28])
        if pick == 3:
            return self.number()
        return self.tree()

    def senml_value(self) -> object:
        rng = self.rng
        pick = rng.randrange(6)
        if pick < 3:
            return self.good_number()
        if pick == 3:
            return rng.choice([MAX_DOUBLE, -MAX_DOUBLE, 1e308])
        if pick == 4:
            return self.number()
        return self.tree()

    def senml_record(self) -> dict[str, object]:
        rng = self.rng
        makers: dict[str, Callable[[], object]] = {
            "bn": self.senml_name,
            "bt": self.senml_time,
            "bv": self.senml_value,
            "n": self.senml_name,
            "t": self.senml_time,
            "v": self.senml_value,
            "vs": lambda: self.text(4),
            "vb": lambda: rng.random() < 0.5,
            "u": lambda: rng.choice(["Cel", "%RH", ""]),
        }
        return {key: make() for key, make in makers.items() if rng.random() < 0.4}

    def senml_pack(self) -> object:
        return [
            self.senml_record() if self.rng.random() < 0.75 else self.tree()
            for _ in range(self.rng.randint(0, 8))
        ]

    def senml_for(self, features: Sequence[str]) -> object:
        rng = self.rng
        head: dict[str, object] = {}
        base_name = rng.choice(["", "", "urn:dev:x:", "dev/", "dev."])
        if base_name:
            head["bn"] = base_name
        if rng.random() < 0.5:
            head["bt"] = rng.choice([self.epoch(), rng.uniform(-1e6, 1e6), self.senml_time()])
        if rng.random() < 0.5:
            head["bv"] = self.good_number() if rng.random() < 0.5 else self.senml_value()
        moments = [
            rng.randint(-100, 100) if rng.random() < 0.5 else self.senml_time()
            for _ in range(rng.randint(1, 3))
        ]
        records: list[dict[str, object]] = []
        for moment in moments:
            for feature in features:
                record: dict[str, object] = {"n": feature, "v": self.senml_value()}
                if moment != 0 or rng.random() < 0.5:
                    record["t"] = moment
                records.append(record)
        if head:
            records[0] = {**head, **records[0]}
        flaw = rng.choice(["none", "none", "none", "drop", "wild", "shuffle", "string"])
        if flaw == "drop":
            del records[rng.randrange(len(records))]
        elif flaw == "wild":
            records.insert(rng.randint(0, len(records)), self.senml_record())
        elif flaw == "shuffle":
            rng.shuffle(records)
        elif flaw == "string":
            records.append({"n": features[0], "vs": "on"})
        return records

    # -- payloads -------------------------------------------------------------------------

    def document(self, tree: object) -> bytes:
        rng = self.rng
        pad = ("", "") if rng.random() < 0.5 else (rng.choice(WHITESPACE), rng.choice(WHITESPACE))
        return encode(tree, ascii_only=rng.random() < 0.5, pad=pad)

    def number_text(self) -> bytes:
        rng = self.rng
        pick = rng.randrange(8)
        if pick == 0:
            text = repr(self.good_number())
        elif pick == 1:
            text = repr(self.any_float())
        elif pick == 2:
            text = rng.choice(ODD_NUMBER_TEXTS)
        elif pick == 3:
            text = f"{self.any_float():e}"
        elif pick == 4:
            text = f"{self.any_float():.17g}"
        elif pick == 5:
            text = str(rng.randint(-(10**400), 10**400))
        elif pick == 6:
            digits = "0123456789\u0660\u0661\u0665\u06f3\u0966\u09e7\uff10\uff15"
            text = "".join(rng.choice(digits) for _ in range(rng.randint(1, 6)))
        else:
            alphabet = "0123456789.eE+-_ infatyINFATY"
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        if rng.random() < 0.5:
            text = rng.choice(WHITESPACE) + text + rng.choice(WHITESPACE)
        return text.encode(rng.choice(["ascii", "utf-8", "utf-8", "utf-16"]), "replace")

    def payload(self, kind: str, features: Sequence[str]) -> bytes:
        rng = self.rng
        if kind == "bytes":
            return rng.randbytes(rng.randint(0, 48))
        if kind == "number_text":
            return self.number_text()
        if kind == "deep":
            opener = rng.choice(["[", '{"value":', '{"a":', '[{"v":', '{"ts":['])
            depth = rng.randint(1, 3000)
            inner = rng.choice(["1", "", "null", "[]", "{}", "1e400"])
            return deep_nesting(depth, opener, inner, rng.choice([depth, rng.randint(0, depth)]))
        if kind == "mutated":
            base = rng.choice(["number_text", "object_for", "senml_for", "json_tree"])
            edits = [
                (rng.randrange(4), rng.randrange(10**6), rng.randbytes(rng.randint(1, 3)))
                for _ in range(rng.randint(1, 3))
            ]
            return mutate(self.payload(base, features), edits)
        trees: dict[str, Callable[[], object]] = {
            "object_for": lambda: self.object_for(features),
            "single_object": self.single_object,
            "senml_for": lambda: self.senml_for(features),
            "value_object": self.value_object,
            "senml_pack": self.senml_pack,
            "json_tree": self.tree,
        }
        return self.document(trees[kind]())


@dataclass
class Failure:
    kind: str
    fmt: str
    payload: str
    detail: str


@dataclass
class Report:
    seed: int
    payloads: int = 0
    seconds: float = 0.0
    kinds: Counter[str] = field(default_factory=Counter)
    ingest_accepted: int = 0
    ingest_rejected: Counter[str] = field(default_factory=Counter)
    decode: dict[str, Counter[str]] = field(default_factory=dict)
    short_path: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    samples: list[Failure] = field(default_factory=list)

    def failed(self) -> bool:
        return bool(self.unexpected) or bool(self.violations)

    def as_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "payloads": self.payloads,
            "seconds": round(self.seconds, 2),
            "payload_kinds": dict(self.kinds),
            "ingest": {
                "messages": self.payloads,
                "accepted": self.ingest_accepted,
                "rejected": dict(self.ingest_rejected),
            },
            "decode": {fmt: dict(verdicts) for fmt, verdicts in self.decode.items()},
            "decode_single": dict(self.short_path),
            "unexpected_exceptions": sum(self.unexpected.values()),
            "unexpected_by_type": dict(self.unexpected),
            "violations": dict(self.violations),
            "samples": [sample.__dict__ for sample in self.samples],
        }


class Soak:
    def __init__(self, report: Report) -> None:
        self.report = report

    def guarded(self, fmt: str, payload: bytes, check: Callable[[], T]) -> T | None:
        """``check()``, or None with the violation or unexpected exception recorded."""
        try:
            return check()
        except ContractError as exc:
            self.record(exc.kind, fmt, payload, str(exc), self.report.violations)
        except Exception as exc:
            name = type(exc).__name__
            self.record(name, fmt, payload, traceback.format_exc(), self.report.unexpected)
        return None

    def record(
        self, kind: str, fmt: str, payload: bytes, detail: str, counter: Counter[str]
    ) -> None:
        counter[kind] += 1
        if sum(1 for s in self.report.samples if s.kind == kind) < SAMPLES_PER_KIND:
            self.report.samples.append(Failure(kind, fmt, repr(payload[:300]), detail[-2000:]))

    def decode_all_ways(self, payload: bytes, features: Sequence[str], received: float) -> None:
        rng = random.Random(len(payload))  # varies the feature set, reproducibly
        for fmt in FORMATS:
            chosen = features if rng.random() < 0.5 else rng.choice(FEATURE_SETS)
            check = functools.partial(check_decode, payload, fmt, chosen, received)
            outcome = self.guarded(fmt, payload, check)
            verdict = "failed" if outcome is None else outcome.reason or "accepted"
            self.report.decode.setdefault(fmt, Counter())[verdict] += 1
            feature = "value" if rng.random() < 0.5 else "temp"
            single = functools.partial(check_decode_single, payload, fmt, feature, received)
            short = self.guarded(fmt, payload, single)
            self.report.short_path[f"{fmt}: {'short' if short else 'decode decides'}"] += 1

    def route(self, messages: list[Message], limit: int) -> None:
        """One batch through route_batch; on a failure, each message alone to pin it down."""
        try:
            accepted, rejected = check_route_batch(messages, limit)
        except Exception:  # re-run one by one below
            for message in messages:
                self.route_one(message, limit)
            return
        self.report.ingest_accepted += accepted
        self.report.ingest_rejected.update(rejected)

    def route_one(self, message: Message, limit: int) -> None:
        check = functools.partial(check_route_batch, [message], limit)
        result = self.guarded("ingest:" + message.topic, message.payload, check)
        if result is not None:
            self.report.ingest_accepted += result[0]
            self.report.ingest_rejected.update(result[1])


def run(examples: int, seed: int) -> Report:
    report = Report(seed=seed)
    soak = Soak(report)
    generator = PayloadGenerator(seed)
    rng = generator.rng
    names = [kind for kind, _ in KINDS]
    weights = [weight for _, weight in KINDS]
    pending: list[tuple[str, bytes]] = []
    started = time.perf_counter()
    for _ in range(examples):
        topic = rng.choice(TOPICS)
        route = expected_route(topic)
        features = RULES[route[0]].features if isinstance(route, tuple) else ("value",)
        kind = rng.choices(names, weights)[0]
        payload = generator.payload(kind, features)
        report.kinds[kind] += 1
        report.payloads += 1
        soak.decode_all_ways(payload, features, NOW if rng.random() < 0.5 else rng.uniform(0, 4e9))
        pending.append((topic, payload))
        if len(pending) == BATCH:
            flush(soak, rng, pending)
    flush(soak, rng, pending)
    report.seconds = time.perf_counter() - started
    return report


def flush(soak: Soak, rng: random.Random, pending: list[tuple[str, bytes]]) -> None:
    if not pending:
        return
    start = NOW if rng.random() < 0.5 else rng.uniform(0, 4e9)
    messages = [Message(topic, payload, start + i, 1) for i, (topic, payload) in enumerate(pending)]
    soak.route(messages, rng.choice([1 << 20, 1 << 20, 1024, 64]))
    pending.clear()


def table(report: Report) -> str:
    reasons = ["accepted", "empty", "malformed", "non_finite", "wrong_fields", "bad_timestamp"]
    reasons.append("failed")  # a violation or an unexpected exception
    lines = [
        f"sensord decoder soak: {report.payloads} payloads, seed {report.seed},"
        f" {report.seconds:.1f} s",
        "payload kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(report.kinds.items())),
        "",
        f"ingest (each payload once through Ingest.route_batch, batches of {BATCH}):",
        f"  {'messages':<16}{report.payloads:>9}",
        f"  {'accepted':<16}{report.ingest_accepted:>9}",
    ]
    lines += [
        f"  {'rejected ' + reason:<28}{count:>9}"
        for reason, count in report.ingest_rejected.most_common()
    ]
    total = report.ingest_accepted + sum(report.ingest_rejected.values())
    lines += [
        f"  accepted + rejected = {total} ({'all' if total == report.payloads else 'NOT all'}"
        " messages accounted for)",
        "",
        "decode (each payload in every format; features: the route's or another set):",
        "  " + f"{'format':<8}" + "".join(f"{r:>14}" for r in reasons),
    ]
    for fmt in FORMATS:
        verdicts = report.decode.get(fmt, Counter())
        lines.append("  " + f"{fmt:<8}" + "".join(f"{verdicts[r]:>14}" for r in reasons))
    short = sum(n for k, n in report.short_path.items() if k.endswith("short"))
    lines += [
        f"decode_single: {short} short-path answers checked against decode",
        "",
        f"unexpected exceptions: {sum(report.unexpected.values())}"
        + "".join(f"\n  {kind}: {n}" for kind, n in report.unexpected.most_common()),
        f"contract violations: {sum(report.violations.values())}"
        + "".join(f"\n  {kind}: {n}" for kind, n in report.violations.most_common()),
    ]
    for sample in report.samples:
        detail = sample.detail.strip().splitlines()[-1]
        lines.append(
            f"  e.g. {sample.kind} [{sample.fmt}] {sample.payload[:120]} -> {detail[:200]}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak.fuzz", description=__doc__)
    parser.add_argument("--examples", type=int, default=100_000, help="payloads (100000)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (1)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    configure(level="error")  # route_batch warns about every rejection reason
    report = run(args.examples, args.seed)
    print(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    return 1 if report.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
