"""Benchmark traffic: generated sensor readings published from a process of their own.

``python -m benchmarks.traffic --port P --streams S --first I --count K --messages N`` publishes
readings of streams ``I .. I+K-1`` (of ``S`` in all) round-robin, each stream's samples in
order, as JSON ``{"value": v, "ts": t}`` on ``bench/<stream>/value`` at QoS 1, and prints
one JSON line: what it sent, when, and the anomalies it injected. ``--rate R`` paces it
(messages per second from this process); without it, it publishes as fast as paho lets it
(the backlog the throughput runs drain). A paced publisher looks at the clock every 16
messages, so readings leave in bursts of up to 16; ``--smooth`` looks before every one and
sends each when it is due, as many independent sensors would (the live-rate runs: bursts
made the daemon's micro-batches several times larger than one-by-one arrivals do).
``--anomalies A`` adds ``A`` spikes at known samples; ``ts`` is the send time, so
``alert receive time - ts`` is publish-to-alert latency.

Each stream belongs to exactly one publisher process, so per-stream order holds however many
publishers run side by side. paho runs without its network thread here: ``publish`` writes
the packet to the socket at once, and acknowledgements are read while pacing, so the time
between a reading's ``ts`` and its bytes leaving is the least this process can make it (a
threaded paho client handed each publish to its thread through the GIL first, which put
this process's own scheduling into the latency being measured).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from sensord.offline.synthetic import generate

TOPIC = "bench/{stream}/value"
FILTER = "bench/+/value"
SPIKE = 8.0  # raw units; the generated series varies by about +-4 around 20
BASE_ROWS = 4096  # one generated series; stream i reads it from its own offset
PACE_TICK_S = 0.002  # a paced publisher sends what is due every tick
PACE_EVERY = 16  # messages between its looks at the clock (and reads of acknowledgements)
SMOOTH_TICK_S = 0.0002  # --smooth: sleep whenever this far ahead, before every message
# paho numbers unacknowledged QoS 1 messages with 16-bit ids: stay well below 65,535.
MAX_UNACKED = 20_000


def stream_name(i: int) -> str:
    return f"s{i:05d}"


@dataclass(frozen=True)
class Injected:
    stream: str
    index: int
    ts: float


@dataclass(frozen=True)
class Sent:
    messages: int
    first_ts: float
    last_ts: float
    injected: list[Injected]


WARM_READINGS = 110  # a spike's earliest sample in its stream


def anomaly_plan(
    first: int, count: int, per_stream: int, anomalies: int, seed: int
) -> dict[tuple[int, int], bool]:
    """(stream, sample index) of each spike: distinct streams, after the streams warm up.

    A spike raises an alert that clears some samples later; one spike per stream keeps
    every spike a separate alert.
    """
    if not anomalies:
        return {}
    rng = np.random.default_rng(seed)
    # After a stream's tails have seen the 100 values they need before they speak
    # (DetectorSettings.min_samples): a new stream's spike before then is not raised. (A
    # third of the stream, as this once was, put most spikes of a 130-reading live run
    # before then: 5-8 of 30 alerted.) Streams too short for that keep the old third.
    warm = WARM_READINGS if per_stream >= WARM_READINGS + 11 else per_stream // 3
    low, high = warm, max(warm + 1, per_stream - 10)
    streams = rng.choice(np.arange(first, first + count), size=min(anomalies, count), replace=False)
    return {(int(s), int(rng.integers(low, high))): True for s in streams}


def publish(
    host: str,
    port: int,
    *,
    first: int,
    count: int,
    messages: int,
    rate: float | None,
    anomalies: int,
    seed: int,
    smooth: bool = False,
) -> Sent:
    base = generate(BASE_ROWS, seed=seed).values
    per_stream = -(-messages // count)
    plan = anomaly_plan(first, count, per_stream, anomalies, seed + first)
    topics = [TOPIC.format(stream=stream_name(first + j)) for j in range(count)]
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    injected: list[Injected] = []
    unacked: deque[paho.MQTTMessageInfo] = deque()
    last_ts = 0.0
    first_ts = time.time()
    started = time.monotonic()
    info = None
    sent = 0
    try:
        for k in range(per_stream):
            for j in range(count):
                if sent == messages:
                    break
                if sent % PACE_EVERY == 0:
                    client.loop(timeout=0.0)  # read acknowledgements
                    _pace(started, sent, rate, PACE_TICK_S)
                elif smooth:
                    _pace(started, sent, rate, SMOOTH_TICK_S)
                stream = first + j
                value = float(base[(stream * 37 + k) % BASE_ROWS])
                spike = plan.get((stream, k), False)
                if spike:
                    value += SPIKE
                # Strictly increasing per stream even when the clock has not moved.
                ts = max(time.time(), last_ts + 1e-6)
                last_ts = ts
                payload = orjson.dumps({"value": round(value, 5), "ts": ts})
                info = client.publish(topics[j], payload, qos=1)
                unacked.append(info)
                while len(unacked) > MAX_UNACKED:
                    client.loop(timeout=0.01)
                    while unacked and unacked[0].is_published():
                        unacked.popleft()
                sent += 1
                if spike:
                    injected.append(Injected(stream_name(stream), k, ts))
        deadline = time.monotonic() + 120
        while info is not None and not info.is_published() and time.monotonic() < deadline:
            client.loop(timeout=0.01)
    finally:
        client.disconnect()
        client.loop(timeout=0.1)
    return Sent(sent, first_ts, last_ts, injected)


def _pace(started: float, sent: int, rate: float | None, tick: float) -> None:
    """If more than ``tick`` ahead of ``rate``, sleep until on time. (Not a wait in
    ``client.loop``: paho's own wake-up socket is readable after every publish, so it
    returns at once.)"""
    delay = 0.0 if rate is None else started + sent / rate - time.monotonic()
    if delay > tick:
        time.sleep(delay)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="first stream number")
    parser.add_argument("--count", type=int, required=True, help="streams of this publisher")
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--rate", type=float, default=None, help="messages/s (default: flat out)")
    parser.add_argument("--anomalies", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smooth", action="store_true", help="paced: each message when it is due, no bursts"
    )
    args = parser.parse_args(argv)
    sent = publish(
        args.host,
        args.port,
        first=args.first,
        count=args.count,
        messages=args.messages,
        rate=args.rate,
        anomalies=args.anomalies,
        seed=args.seed,
        smooth=args.smooth,
    )
    sys.stdout.write(json.dumps(asdict(sent)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
