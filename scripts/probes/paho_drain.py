"""Probe (issue 27, deliverable 3): CPU per received PUBLISH through ``MqttAdapter``.

Starts Mosquitto on a free port, makes a persistent session for an adapter, publishes N
readings (``{"value": v, "ts": t}`` on ``bench/<stream>/value``, QoS 1) while it is away,
then reconnects it and drains them: poll, take, ack, as the daemon's loop does. With
``--qos 0`` (which a session does not keep) a child process publishes while the adapter
drains. Prints JSON: this process's CPU per message over the drain, and with ``--profile``
the cProfile call counts per message of the busiest functions.

Compare two trees in one run by running it with ``PYTHONPATH`` set to each, alternating:
``PYTHONPATH=/work/base_paho .venv/bin/python scripts/probes/paho_drain.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

import sensord
from sensord.cli.broker import LocalBroker, start_mosquitto
from sensord.config import MqttSettings
from sensord.daemon.mqtt import MqttAdapter
from sensord.daemon.transport import TransportOptions

OPTIONS = TransportOptions("sensord-probe", ["bench/+/value"])


def adapter(broker: LocalBroker, protocol: str, qos: int) -> MqttAdapter:
    settings = MqttSettings(
        host=broker.host, port=broker.port, protocol=protocol, client_id="probe", qos=qos
    )
    a = MqttAdapter(settings, OPTIONS)
    a.start()
    deadline = time.monotonic() + 10
    while not a.link.connected.is_set() and time.monotonic() < deadline:
        a.poll(0.05)
    for _ in range(20):  # the SUBACK
        a.poll(0.01)
    return a


def publish(host: str, port: int, protocol: str, n: int, streams: int) -> None:
    v5 = protocol == "5"
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
    )
    client.max_inflight_messages_set(1000)
    client.connect(host, port)
    client.loop_start()
    infos = []
    for i in range(n):
        payload = json.dumps({"value": 20.0 + (i % 97) / 10, "ts": 1.7e9 + i}).encode()
        infos.append(client.publish(f"bench/s{i % streams:05d}/value", payload, qos=1))
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()


def drain(a: MqttAdapter, n: int) -> int:
    got = 0
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        a.poll(0.05)
        taken = a.take(1 << 30)
        a.ack(taken)
        got += len(taken)
    a.poll(0.0)
    return got


def profiled(profile: cProfile.Profile, got: int, top: int) -> dict[str, object]:
    """Calls per message in all, and the ``top`` functions by own time per message."""
    # pstats keeps its table as (file, line, name) -> (primitive calls, calls, own, cumulative,
    # callers); it is not part of its typed interface, so it is read by name.
    table = getattr(pstats.Stats(profile), "stats")  # noqa: B009
    per = max(got, 1)
    calls = sum(row[1] for row in table.values())
    rows = sorted(table.items(), key=lambda kv: -kv[1][2])[:top]
    return {
        "calls_per_message": round(calls / per, 2),
        "top": [
            f"{row[1] / per:6.2f} calls {1e6 * row[2] / per:6.2f} us "
            f"{where[0].split('site-packages/')[-1]}:{where[2]}"
            for where, row in rows
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--protocol", default="5")
    parser.add_argument("--qos", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--publish-to", type=int, help="(the child) publish to this port")
    args = parser.parse_args()
    if args.publish_to:
        time.sleep(0.3)
        publish("127.0.0.1", args.publish_to, args.protocol, args.messages, args.streams)
        return
    broker = start_mosquitto()
    child = None
    try:
        if args.qos:
            first = adapter(broker, args.protocol, args.qos)
            first.stop()  # the session stays, and keeps what is published next
            publish(broker.host, broker.port, args.protocol, args.messages, args.streams)
        a = adapter(broker, args.protocol, args.qos)
        if not args.qos:
            child = subprocess.Popen(
                [sys.executable, __file__, *sys.argv[1:], "--publish-to", str(broker.port)]
            )
        profile = cProfile.Profile() if args.profile else None
        cpu = time.process_time()
        if profile is not None:
            profile.enable()
        got = drain(a, args.messages)
        if profile is not None:
            profile.disable()
        cpu = time.process_time() - cpu
        a.stop()
    finally:
        if child is not None:
            child.wait(60)
        broker.stop()
    out = {
        "tree": sensord.__file__,
        "protocol": args.protocol,
        "qos": args.qos,
        "messages": got,
        "cpu_us_per_message": round(1e6 * cpu / max(got, 1), 2),
    }
    if profile is not None:
        out.update(profiled(profile, got, args.top))
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
