"""``sensord simulate``: many synthetic sensors publishing to a broker at a set rate.

Stream ``i`` plays the generated series of synthetic.py (a daily cycle plus noise, one
sample per message) as JSON ``{"value": v, "ts": <sample time>}`` on the topic template with
``{stream}`` filled in. The sample times are the series' own, ``interval_s`` apart and ending
when the simulation starts: the daily cycle plays fast, and the model, which reads the time
of day, sees it at the pace it was trained on (send times would freeze its clock).

Anomalies of one sample are injected at random streams and samples after ``min_index``
samples, in turn: a spike and a dip far beyond the range the stream
shows (``ANOMALY_SIZE``), and a spike and a dip *inside* it (``IN_RANGE_SIZE``, about 15
times the series' noise, where the daily cycle leaves room for it: only the model's
prediction tells them from normal readings). Each is reported when it is sent.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from sensord.cli.arguments import SubParsers, positive_int
from sensord.errors import SensordError
from sensord.offline.synthetic import generate

ANOMALY_SIZE = 8.0  # raw units; the generated series varies by about ±4 around 20
IN_RANGE_SIZE = 2.5  # raw units: inside the cycle's range where it is near its middle
KINDS = ("spike", "dip", "in-range spike", "in-range dip")
OFFSETS = {"spike": ANOMALY_SIZE, "dip": -ANOMALY_SIZE, "in-range spike": IN_RANGE_SIZE}
OFFSETS["in-range dip"] = -IN_RANGE_SIZE
IN_RANGE_ROOM = 1.0  # an in-range anomaly lands where the value is this close to the middle
CONNACK_TIMEOUT_S = 10.0  # how long the broker may take to answer the connection


@dataclass(frozen=True)
class Injected:
    stream: str
    index: int  # the stream's sample number
    kind: str  # one of KINDS
    ts: float  # its sample time (the "ts" it was sent with)
    value: float


@dataclass(frozen=True)
class SimulationReport:
    sent: int
    seconds: float
    injected: tuple[Injected, ...]


@dataclass(frozen=True)
class SimulationPlan:
    streams: int = 10
    rate: float = 100.0  # messages per second, all streams together
    duration_s: float = 30.0
    anomalies: int = 4
    # The daemon's calibrated channels speak after 100 samples of a stream (in-range
    # anomalies need them); the range rule after 100 too.
    min_index: int = 110
    topic: str = "sensors/{stream}/value"
    seed: int = 0
    qos: int = 1
    interval_s: float = 300.0  # simulated time between a stream's samples (synthetic.py's)

    def stream_name(self, i: int) -> str:
        return f"sim-{i:04d}"

    @property
    def samples_per_stream(self) -> int:
        return max(1, int(self.duration_s * self.rate / self.streams))


def plan_anomalies(
    plan: SimulationPlan, series: list[npt.NDArray[np.float64]]
) -> dict[tuple[int, int], str]:
    """(stream, sample index) -> kind, spread over streams, after min_index; in-range ones
    where the stream's value is near the middle of its cycle."""
    rng = np.random.default_rng(plan.seed + 7)
    last = plan.samples_per_stream - 5
    if plan.anomalies and last <= plan.min_index:
        raise SensordError(
            f"simulation too short for anomalies: {plan.samples_per_stream} "
            f"samples per stream, anomalies start after {plan.min_index}"
        )
    chosen: dict[tuple[int, int], str] = {}
    for n in range(plan.anomalies):
        stream, kind = n % plan.streams, KINDS[n % len(KINDS)]
        values = series[stream]
        middle = float(np.median(values))
        candidates = np.arange(plan.min_index, last)
        if kind.startswith("in-range"):
            near = np.abs(values[candidates] - middle) <= IN_RANGE_ROOM
            candidates = candidates[near] if near.any() else candidates
        chosen[(stream, int(rng.choice(candidates)))] = kind
    return chosen


def simulate(
    plan: SimulationPlan,
    host: str,
    port: int,
    protocol: str = "5",
    *,
    on_anomaly: Callable[[Injected], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SimulationReport:
    """Publish the plan's traffic; returns what was sent and injected."""
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        protocol=MQTTProtocolVersion.MQTTv5 if protocol == "5" else MQTTProtocolVersion.MQTTv311,
    )
    answer = Connack()
    client.on_connect = answer.record
    try:
        client.connect(host, port)
    except OSError as exc:
        raise SensordError(f"cannot reach the broker at {host}:{port} ({exc})") from None
    client.loop_start()
    try:
        answer.check(f"{host}:{port}", protocol)
        return _publish_all(client, plan, on_anomaly, should_stop)
    finally:
        client.disconnect()
        client.loop_stop()


class Connack:
    """The broker's answer to the connection, waited for before publishing: a broker that
    refuses it (nats-server's MQTT gateway refuses MQTT 5) closes the socket, and every
    publish after that would fail with no word of why."""

    def __init__(self) -> None:
        self.answered = threading.Event()
        self.reason: ReasonCode | None = None

    def record(
        self,
        _client: object,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _properties: object = None,
    ) -> None:
        if not self.answered.is_set():  # paho retries: the first answer is the one
            self.reason = reason
            self.answered.set()

    def check(self, broker: str, protocol: str) -> None:
        """Raise a one-line error unless the broker accepted the connection."""
        if not self.answered.wait(CONNACK_TIMEOUT_S):
            raise SensordError(
                f"the broker at {broker} did not answer within {CONNACK_TIMEOUT_S:.0f} s"
            )
        reason = self.reason
        if reason is None or not reason.is_failure:
            return
        if protocol == "5" and reason.getName() == "Unsupported protocol version":
            raise SensordError(
                f"the broker at {broker} does not speak MQTT 5 (nats-server's MQTT gateway "
                "speaks only 3.1.1): pass --protocol 3.1.1"
            )
        raise SensordError(f"the broker at {broker} refused the connection: {reason}")


def _publish_all(
    client: paho.Client,
    plan: SimulationPlan,
    on_anomaly: Callable[[Injected], None] | None,
    should_stop: Callable[[], bool] | None,
) -> SimulationReport:
    n = plan.samples_per_stream
    start = time.time() - n * plan.interval_s  # the simulated history ends now
    generated = [
        generate(n, seed=plan.seed * 1000 + i, interval_s=plan.interval_s, start=start)
        for i in range(plan.streams)
    ]
    series = [g.values for g in generated]
    times = start + plan.interval_s * np.arange(n, dtype=np.float64)  # as generate() has them
    anomalies = plan_anomalies(plan, series)
    topics = [plan.topic.format(stream=plan.stream_name(i)) for i in range(plan.streams)]
    injected: list[Injected] = []
    started = time.monotonic()
    sent = 0
    info = None
    for k in range(n):
        for i in range(plan.streams):
            if should_stop is not None and should_stop():
                break
            _pace(started, sent, plan.rate)
            value = float(series[i][k])
            kind = anomalies.get((i, k))
            if kind is not None:
                value += OFFSETS[kind]
            ts = float(times[k])
            payload = orjson.dumps({"value": round(value, 6), "ts": ts})
            info = client.publish(topics[i], payload, qos=plan.qos)
            sent += 1
            if kind is not None:
                event = Injected(plan.stream_name(i), k, kind, ts, value)
                injected.append(event)
                if on_anomaly is not None:
                    on_anomaly(event)
    if info is not None and plan.qos > 0:
        try:
            info.wait_for_publish(timeout=10)
        except RuntimeError as exc:  # paho's word for a connection lost on the way
            raise SensordError(f"publishing to the broker failed: {exc}") from None
    return SimulationReport(sent, time.monotonic() - started, tuple(injected))


def _pace(started: float, sent: int, rate: float) -> None:
    delay = started + sent / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def add_command(commands: SubParsers) -> None:
    p = commands.add_parser("simulate", help="publish synthetic sensor streams to a broker")
    p.add_argument("--host", default="localhost", help="MQTT broker host")
    p.add_argument("--port", type=int, default=1883, help="MQTT broker port")
    p.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT version")
    p.add_argument("--topic", default="sensors/{stream}/value", help="topic template with {stream}")
    p.add_argument("--streams", type=positive_int, default=10, help="simulated sensors")
    p.add_argument("--rate", type=float, default=100.0, help="messages per second, in all")
    p.add_argument("--duration", type=float, default=30.0, help="seconds")
    p.add_argument(
        "--anomalies",
        type=int,
        default=4,
        help="one-sample anomalies to inject, in turn: spike, dip, in-range spike, in-range dip",
    )
    p.add_argument(
        "--min-index",
        type=int,
        default=110,
        help="no anomaly in a stream's first N samples (the detector's own warm-up is 100)",
    )
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1, help="MQTT QoS of readings")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same readings)")
    p.set_defaults(command=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from sensord.core.timestamps import format_timestamp

    plan = SimulationPlan(
        streams=args.streams,
        rate=args.rate,
        duration_s=args.duration,
        anomalies=args.anomalies,
        min_index=args.min_index,
        topic=args.topic,
        seed=args.seed,
        qos=args.qos,
    )

    def show(event: Injected) -> None:
        print(
            f"{format_timestamp(event.ts)} injected {event.kind} on {event.stream} "
            f"(sample {event.index}, value {event.value:.3f})",
            flush=True,
        )

    report = simulate(plan, args.host, args.port, args.protocol, on_anomaly=show)
    print(
        f"sent {report.sent} messages in {report.seconds:.1f} s "
        f"({report.sent / max(report.seconds, 1e-9):.0f}/s), {len(report.injected)} anomalies"
    )
    return 0
