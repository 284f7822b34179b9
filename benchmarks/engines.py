"""The engine's cost per reading against Mosquitto's, and MQTT through the engine's gateway
against a native JetStream consumer, side by side in one run (cluster mode, docs/cluster.md).

The same workload in three cases: a paho publisher (MQTT 3.1.1, QoS 1, a process of its own)
sends N readings, JSON ``{"value": v, "ts": t}``, round-robin on ``sensors/s<i>/value`` for
S streams, and one consumer (a process of its own) takes them all:

- **mosquitto**: a child Mosquitto; the consumer is a paho subscriber on ``sensors/#`` at
  QoS 1 (paho acknowledges each message itself);
- **nats-mqtt**: the same publisher and subscriber against nats-server's MQTT gateway (with
  JetStream: the gateway keeps QoS 1 sessions there);
- **nats-jetstream**: the same publisher to the gateway, the engine mapping each subject to
  its partition (``part.<n>.sensors.<stream>.value``, ``subject_mapping(12)``); the consumer
  is native: a file-stored JetStream stream over ``part.>`` and one durable pull consumer
  (explicit ack) fetching batches of 256, acknowledging each message with a plain ``ack``
  (not ``ack_sync``: like paho's PUBACK, it is sent and not waited on).

Every case is MQTT 3.1.1 end to end (the gateway speaks nothing newer), so the three differ
only in the broker and the consumer. For each: readings per second from the first publish
to the last reading received; the broker's CPU seconds per 1,000 readings (utime + stime of
its process, from before the publisher starts to after the consumer has them all); the
consumer's CPU seconds per 1,000 readings (its own ``process_time``, from subscribed to
done); and each as a ratio to Mosquitto's in the same round. The cases take turns, round
after round, each on a fresh broker; medians are reported, and ratios are the median of
same-round ratios (these machines are shared and noisy: only same-run ratios mean
something). A consumer that stops receiving gives up after STALL_S and the run reports how
many readings were missing.

    python benchmarks/engines.py [--readings 50000] [--streams 100] [--rounds 3] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from benchmarks.report import machine, machine_load
from sensord.cli.broker import start_mosquitto
from sensord.cli.engine import LocalEngine, start_engine
from sensord.wire.partition import subject_mapping

CASES = ("mosquitto", "nats-mqtt", "nats-jetstream")
BASELINE = "mosquitto"
PARTITIONS = 12  # the cluster's default partition count
# Mosquitto as deploy/mosquitto/sensord.conf sizes it: every queued reading kept, 512 in
# flight to a client (the gateway's own default is 1024 pending acks per session).
MOSQUITTO_CONFIG = "max_queued_messages 0\nmax_inflight_messages 512\n"
READINGS_STREAM = "READINGS"  # the readings journal of docs/cluster.md's design
DURABLE = "bench"
FETCH_BATCH = 256
FETCH_TIMEOUT_S = 1.0
PUBLISH_INFLIGHT = 1000  # QoS 1 publishes the publisher lets wait for their PUBACK
# paho numbers unacknowledged QoS 1 messages with 16-bit ids (queued ones too): stay well
# below 65,535 so that an id is never reused while its message still waits.
MAX_UNACKED = 20_000
STALL_S = 15.0  # a consumer, or the publisher's acks, that make no progress this long: give up
READY_TIMEOUT_S = 30.0  # a consumer must be subscribed within this
CHILD_TIMEOUT_S = 900.0  # the last resort if a child hangs in spite of its own deadlines
T0 = 1_700_000_000.0


# the children: the publisher and the two consumers, each a process of its own so that
# their CPU is neither the broker's nor each other's


@dataclass
class Published:
    sent: int
    acked: int
    first_at: float  # time.time() just before the first publish
    cpu_s: float


@dataclass
class Consumed:
    received: int  # distinct readings (topic or subject, payload)
    duplicates: int  # redeliveries of readings already received
    last_at: float  # time.time() when the last distinct reading arrived (nan: none did)
    cpu_s: float  # this process's CPU from subscribed to done


def payloads(streams: int, readings: int) -> list[tuple[str, bytes]]:
    """Round-robin over the streams, each stream's ``ts`` one second apart: every (topic,
    payload) is distinct, so a consumer can tell a redelivery from a new reading."""
    values = 20.0 + np.random.default_rng(0).standard_normal(readings)
    return [
        (
            f"sensors/s{i % streams}/value",
            orjson.dumps({"value": round(float(values[i]), 5), "ts": T0 + i // streams}),
        )
        for i in range(readings)
    ]


def mqtt_client(client_id: str) -> paho.Client:
    return paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv311,
    )


def publish(port: int, streams: int, readings: int) -> Published:
    """Publish every reading at QoS 1 as fast as paho lets it; wait for the PUBACKs.

    paho runs without its network thread (as in benchmarks/traffic.py): ``publish`` writes
    to the socket at once and acknowledgements are read every 16 publishes, so no GIL
    hand-over between two threads is in the figures."""
    work = payloads(streams, readings)
    client = mqtt_client(f"bench-publisher-{os.getpid()}")
    client.max_inflight_messages_set(PUBLISH_INFLIGHT)
    client.max_queued_messages_set(0)  # beyond the in-flight window, paho queues: never drop
    client.connect("127.0.0.1", port)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not client.is_connected() and time.monotonic() < deadline:
        client.loop(timeout=0.1)  # until the CONNACK
    infos: list[paho.MQTTMessageInfo] = []
    acked = 0  # infos[:acked] are all acknowledged
    cpu0, first_at = time.process_time(), time.time()
    for i, (topic, payload) in enumerate(work):
        infos.append(client.publish(topic, payload, qos=1))
        if i % 16 == 0:
            client.loop(timeout=0.0)
        if i + 1 - acked > MAX_UNACKED:
            acked = _wait_acks(client, infos, acked, MAX_UNACKED)
            if len(infos) - acked > MAX_UNACKED:
                break  # the broker stopped acknowledging: report what was sent
    acked = _wait_acks(client, infos, acked, 0)
    cpu_s = time.process_time() - cpu0
    client.disconnect()
    return Published(len(infos), acked, first_at, cpu_s)


def _wait_acks(
    client: paho.Client, infos: list[paho.MQTTMessageInfo], acked: int, unacked: int
) -> int:
    """Read PUBACKs until at most ``unacked`` publishes wait for theirs, or none has come for
    STALL_S; return how many of ``infos``, from the first, are acknowledged."""
    moved = time.monotonic()
    while len(infos) - acked > unacked and time.monotonic() - moved < STALL_S:
        client.loop(timeout=0.01)
        now_acked = _acked_prefix(infos, acked)
        if now_acked > acked:
            acked, moved = now_acked, time.monotonic()
    return acked


def _acked_prefix(infos: list[paho.MQTTMessageInfo], start: int) -> int:
    """How many of ``infos``, from the first, are acknowledged (brokers acknowledge QoS 1
    in order: a later PUBACK before an earlier one only delays the count)."""
    while start < len(infos) and infos[start].is_published():
        start += 1
    return start


class Tally:
    """What a consumer has received: distinct readings, redeliveries, when the last came."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.seen: set[tuple[str, bytes]] = set()
        self.duplicates = 0
        self.last_at = float("nan")
        self.cpu_at_last = float("nan")
        self.done = threading.Event()

    def add(self, key: tuple[str, bytes]) -> None:
        if key in self.seen:
            self.duplicates += 1
            return
        self.seen.add(key)
        self.last_at = time.time()
        if len(self.seen) >= self.expect:
            self.cpu_at_last = time.process_time()
            self.done.set()

    def result(self, cpu0: float) -> Consumed:
        # The CPU up to the last reading; if some never came, up to giving up (it includes
        # the STALL_S of waiting, which costs next to nothing).
        cpu1 = self.cpu_at_last if self.done.is_set() else time.process_time()
        return Consumed(len(self.seen), self.duplicates, self.last_at, cpu1 - cpu0)


def ready() -> None:
    """Tell the parent this consumer is subscribed: the publisher may start."""
    sys.stdout.write("ready\n")
    sys.stdout.flush()


def consume_mqtt(port: int, readings: int) -> Consumed:
    """A paho subscriber on ``sensors/#`` at QoS 1 (clean session) that counts readings."""
    tally = Tally(readings)
    client = mqtt_client(f"bench-consumer-{os.getpid()}")
    subscribed = threading.Event()
    granted: list[ReasonCode] = []

    def on_subscribe(
        c: paho.Client, userdata: object, mid: int, codes: list[ReasonCode], props: object
    ) -> None:
        granted.extend(codes)
        subscribed.set()

    def on_message(c: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        tally.add((message.topic, bytes(message.payload)))

    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe("sensors/#", qos=1)
    if not subscribed.wait(READY_TIMEOUT_S) or [c.value for c in granted] != [1]:
        raise SystemExit(f"the subscription was not granted at QoS 1: {granted}")
    cpu0 = time.process_time()
    ready()
    _wait_done(tally)
    result = tally.result(cpu0)
    client.disconnect()
    client.loop_stop()
    return result


def _wait_done(tally: Tally) -> None:
    """Until every reading is in, or none has come for STALL_S (then the rest are missing)."""
    moved, count = time.monotonic(), 0
    while not tally.done.wait(0.1):
        if len(tally.seen) > count:
            moved, count = time.monotonic(), len(tally.seen)
        elif time.monotonic() - moved > STALL_S:
            return


async def consume_jetstream(url: str, readings: int) -> Consumed:
    """A file-stored stream over ``part.>`` and a durable pull consumer taking it in
    batches, acknowledging each message (explicit ack, not waited on)."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

    tally = Tally(readings)
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name=READINGS_STREAM, subjects=["part.>"], storage=StorageType.FILE)
    )
    pull = await js.pull_subscribe(
        "part.>",
        durable=DURABLE,
        stream=READINGS_STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT),
    )
    cpu0 = time.process_time()
    ready()
    moved = time.monotonic()
    while not tally.done.is_set() and time.monotonic() - moved < STALL_S:
        try:
            messages = await pull.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_S)
        except TimeoutError:  # nats-py raises both its own (a subclass) and asyncio's
            continue
        for message in messages:
            tally.add((message.subject, message.data))
            await message.ack()
        moved = time.monotonic()
    result = tally.result(cpu0)
    await nc.close()
    return result


def child(argv: Sequence[str]) -> int:
    """A child's side: ``--child publish|mqtt|jetstream``; one JSON line on stdout."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=("publish", "mqtt", "jetstream"), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--url", default="")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--readings", type=int, required=True)
    args = parser.parse_args(argv)
    result: Published | Consumed
    if args.child == "publish":
        result = publish(args.port, args.streams, args.readings)
    elif args.child == "mqtt":
        result = consume_mqtt(args.port, args.readings)
    else:
        result = asyncio.run(consume_jetstream(args.url, args.readings))
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    return 0


# the parent: brokers, the children, the figures


class BenchmarkError(RuntimeError):
    """A part of the benchmark did not do what it must."""


@dataclass(frozen=True)
class Broker:
    """What a case needs of its broker: the MQTT port, the process, and (for NATS) its URL."""

    port: int
    pid: int
    url: str = ""


@dataclass
class Measured:
    """One case in one round."""

    case: str
    round: int
    readings: int
    received: int
    duplicates: int
    unacked: int  # publishes the broker never acknowledged
    seconds: float  # first publish to last reading received
    engine_cpu_s: float
    consumer_cpu_s: float
    publisher_cpu_s: float
    gateway_stored: int | None  # messages the MQTT gateway wrote to its $MQTT_msgs stream

    @property
    def missing(self) -> int:
        return self.readings - self.received

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else float("nan")

    def per_1000(self, cpu_s: float) -> float:
        return cpu_s / self.readings * 1000.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "missing": self.missing,
            "readings_per_s": round(self.rate, 1),
            "engine_cpu_s_per_1000": round(self.per_1000(self.engine_cpu_s), 5),
            "consumer_cpu_s_per_1000": round(self.per_1000(self.consumer_cpu_s), 5),
            "publisher_cpu_s_per_1000": round(self.per_1000(self.publisher_cpu_s), 5),
        }


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process, all its threads (/proc/<pid>/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mosquitto_pid(port: int) -> int:
    """The pid of the Mosquitto that ``start_mosquitto`` started on ``port``.

    ``LocalBroker`` does not expose its process. start_mosquitto runs the binary itself (no
    shell) as ``mosquitto -c <its own config>``, so the broker is a direct child of this
    process whose config file says ``listener <port>``. That needs neither ``ss`` (not on
    every box, and it shows other users' pids only to root) nor a guess at the temporary
    folder's name, and it can never pick the system broker or another run's.
    """
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().decode().split("\0")[:-1]
            if ppid != me or len(argv) != 3 or argv[1] != "-c":
                continue
            if not argv[0].endswith("mosquitto"):
                continue
            if f"listener {port} " in Path(argv[2]).read_text():
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue  # a process that exited while we looked
    raise BenchmarkError(f"no Mosquitto child of this process listens on {port}")


@contextmanager
def broker_for(case: str) -> Iterator[Broker]:
    """A fresh broker for one case in one round, stopped (and its store deleted) after."""
    if case == "mosquitto":
        mosquitto = start_mosquitto(extra_config=MOSQUITTO_CONFIG)
        try:
            yield Broker(mosquitto.port, mosquitto_pid(mosquitto.port))
        finally:
            mosquitto.stop()
        return
    mappings = subject_mapping(PARTITIONS) if case == "nats-jetstream" else None
    engine = start_engine(mappings=mappings, mqtt=True)
    try:
        yield Broker(_mqtt_port(engine), _engine_pid(engine), engine.url)
    finally:
        engine.remove()


def _mqtt_port(engine: LocalEngine) -> int:
    if engine.mqtt_port is None:
        raise BenchmarkError("the engine was started without its MQTT gateway")
    return engine.mqtt_port


def _engine_pid(engine: LocalEngine) -> int:
    if engine.process is None:
        raise BenchmarkError("the engine is not running")
    return engine.process.pid


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_ready(consumer: subprocess.Popen[str]) -> None:
    """Until the consumer says it is subscribed (its first line), within READY_TIMEOUT_S."""
    assert consumer.stdout is not None
    readable, _, _ = select.select([consumer.stdout], [], [], READY_TIMEOUT_S)
    line = consumer.stdout.readline() if readable else ""
    if line.strip() != "ready":
        consumer.kill()
        _, err = consumer.communicate()
        raise BenchmarkError(f"the consumer did not subscribe: {line!r} {err[-2000:]}")


def finish(process: subprocess.Popen[str], what: str) -> dict[str, Any]:
    """A child's JSON line, once it exits (each child keeps deadlines of its own)."""
    try:
        out, err = process.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise BenchmarkError(f"the {what} hung past {CHILD_TIMEOUT_S} s") from None
    if process.returncode != 0:
        raise BenchmarkError(f"the {what} exited with {process.returncode}: {err[-2000:]}")
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


def run_case(case: str, round_: int, streams: int, readings: int) -> Measured:
    with broker_for(case) as broker:
        if case == "nats-jetstream":
            where = ["--child", "jetstream", "--url", broker.url]
        else:
            where = ["--child", "mqtt", "--port", str(broker.port)]
        consumer = spawn(*where, "--readings", str(readings))
        wait_ready(consumer)
        engine0 = process_cpu_s(broker.pid)
        publisher = spawn(
            "--child", "publish", "--port", str(broker.port), "--streams", str(streams),
            "--readings", str(readings),
        )  # fmt: skip
        published = Published(**finish(publisher, "publisher"))
        consumed = Consumed(**finish(consumer, "consumer"))
        engine_cpu_s = process_cpu_s(broker.pid) - engine0
        stored = asyncio.run(gateway_stored(broker.url)) if broker.url else None
    return Measured(
        case=case,
        round=round_,
        readings=readings,
        received=consumed.received,
        duplicates=consumed.duplicates,
        unacked=published.sent - published.acked,
        seconds=consumed.last_at - published.first_at,
        engine_cpu_s=engine_cpu_s,
        consumer_cpu_s=consumed.cpu_s,
        publisher_cpu_s=published.cpu_s,
        gateway_stored=stored,
    )


async def gateway_stored(url: str) -> int:
    """Messages the gateway ever wrote to its $MQTT_msgs stream (its last sequence: the
    stream keeps a message only while a session has yet to acknowledge it), read after the
    CPU was: whether the gateway wrote the QoS 1 publishes to JetStream on top of routing
    them."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info("$MQTT_msgs")
        return int(info.state.last_seq)
    except NotFoundError:
        return 0
    finally:
        await nc.close()


# the report


def ratio(rows: list[Measured], base: list[Measured], figure: str) -> float:
    """The median over rounds of this case's figure over the baseline's in the same round."""
    return statistics.median(
        _figure(r, figure) / _figure(b, figure) for r, b in zip(rows, base, strict=True)
    )


def _figure(row: Measured, figure: str) -> float:
    if figure == "rate":
        return row.rate
    if figure == "engine":
        return row.per_1000(row.engine_cpu_s)
    if figure == "publisher":
        return row.per_1000(row.publisher_cpu_s)
    return row.per_1000(row.consumer_cpu_s)


def summarise(runs: list[Measured]) -> list[dict[str, Any]]:
    by_case = {case: [r for r in runs if r.case == case] for case in CASES}
    base = by_case[BASELINE]
    rows = []
    for case, measured in by_case.items():
        rows.append(
            {
                "case": case,
                "readings_per_s": round(statistics.median(r.rate for r in measured), 1),
                "engine_cpu_s_per_1000": round(
                    statistics.median(_figure(r, "engine") for r in measured), 5
                ),
                "consumer_cpu_s_per_1000": round(
                    statistics.median(_figure(r, "consumer") for r in measured), 5
                ),
                # Context for the rates: the publisher is Python, and where it is the
                # bottleneck the rate is the publisher's, not the broker's.
                "publisher_cpu_s_per_1000": round(
                    statistics.median(_figure(r, "publisher") for r in measured), 5
                ),
                "throughput_vs_mosquitto": round(ratio(measured, base, "rate"), 3),
                "engine_cpu_vs_mosquitto": round(ratio(measured, base, "engine"), 3),
                "consumer_cpu_vs_mosquitto": round(ratio(measured, base, "consumer"), 3),
                "received": [r.received for r in measured],
                "missing": [r.missing for r in measured],
                "duplicates": [r.duplicates for r in measured],
                "unacked": [r.unacked for r in measured],
                "gateway_stored": [r.gateway_stored for r in measured],
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\n{args.readings:,} readings on {args.streams} streams, QoS 1, MQTT 3.1.1, "
        f"{args.rounds} rounds: medians, and same-round ratios to {BASELINE}"
    )
    print(
        f"{'case':<16}{'readings/s':>11}{'x':>7}{'engine CPU':>12}{'x':>7}"
        f"{'consumer CPU':>14}{'x':>7}{'publisher CPU':>15}{'missing':>9}"
    )
    print(f"{'':<16}{'':>11}{'':>7}{'s/1k':>12}{'':>7}{'s/1k':>14}{'':>7}{'s/1k':>15}")
    for row in rows:
        print(
            f"{row['case']:<16}{row['readings_per_s']:>11,.0f}"
            f"{row['throughput_vs_mosquitto']:>7.2f}"
            f"{row['engine_cpu_s_per_1000']:>12.4f}{row['engine_cpu_vs_mosquitto']:>7.2f}"
            f"{row['consumer_cpu_s_per_1000']:>14.4f}{row['consumer_cpu_vs_mosquitto']:>7.2f}"
            f"{row['publisher_cpu_s_per_1000']:>15.4f}{sum(row['missing']):>9}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--child"]:  # a publisher or consumer of run_case, in its own process
        return child(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=50_000, help="per case and round")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    load = machine_load()
    print(f"machine: {load['why']}", flush=True)
    runs: list[Measured] = []
    try:
        for round_ in range(1, args.rounds + 1):
            for case in CASES:
                run = run_case(case, round_, args.streams, args.readings)
                runs.append(run)
                print(
                    f"  round {round_} {case:<15} {run.rate:>9,.0f} readings/s, engine "
                    f"{run.per_1000(run.engine_cpu_s):.4f} s/1k, consumer "
                    f"{run.per_1000(run.consumer_cpu_s):.4f} s/1k, missing {run.missing}",
                    flush=True,
                )
    except BenchmarkError as exc:
        print(f"engines: error: {exc}", file=sys.stderr)
        return 1
    rows = summarise(runs)
    print_table(rows, args)
    lost = [r for r in runs if r.missing or r.unacked]
    for r in lost:
        print(
            f"WARNING: {r.case} round {r.round}: {r.missing} of {r.readings} readings missing, "
            f"{r.unacked} publishes unacknowledged"
        )
    if load["busy"]:
        print(f"WARNING: {load['why']}: these figures are not to be trusted")
    if args.json:
        result = {
            "readings": args.readings,
            "streams": args.streams,
            "rounds": args.rounds,
            "method": "QoS 1, MQTT 3.1.1 publisher in its own process; consumer in its own "
            "process; first publish to last reading received",
            "machine": machine(),
            "load": load,
            "rows": rows,
            "runs": [r.as_dict() for r in runs],
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0  # losses are figures of the run (missing, above and in the JSON), not a failure


if __name__ == "__main__":
    sys.exit(main())
