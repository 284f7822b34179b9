"""The MQTT edge on a real broker: the buffered packet reader, driven by poll."""

from __future__ import annotations

import random
import time

from sensord.broker import LocalBroker
from sensord.config import MqttSettings
from sensord.mqtt import READ_CHUNK, MqttAdapter

from .conftest import mqtt_client, wait_for


def adapter_for(broker: LocalBroker, client_id: str) -> MqttAdapter:
    settings = MqttSettings(
        host=broker.host, port=broker.port, protocol=broker.protocol, client_id=client_id
    )
    adapter = MqttAdapter(settings, "sensord-mqtt-test", ["edge/+/value"])
    adapter.start()
    return adapter


def test_packets_across_read_boundaries_arrive_whole_and_in_order(broker: LocalBroker) -> None:
    adapter = adapter_for(broker, f"edge-{time.monotonic_ns()}")
    try:
        assert wait_for(lambda: (adapter.poll(0.05), adapter.connected.is_set())[1], 10)
        rng = random.Random(3)
        # Sizes from tiny to several KiB: over ~3 MB, many packets straddle a 64 KiB read.
        payloads = [
            bytes(rng.randrange(256) for _ in range(rng.choice((1, 40, 700, 5000))))
            for _ in range(1500)
        ]
        with mqtt_client(broker) as publisher:
            for i, payload in enumerate(payloads):
                publisher.publish(f"edge/s{i % 7}/value", payload)
            got: list[bytes] = []
            largest_poll = 0
            deadline = time.monotonic() + 60
            while len(got) < len(payloads) and time.monotonic() < deadline:
                adapter.poll(0.05)
                taken = adapter.take(1 << 30)
                largest_poll = max(largest_poll, sum(len(m.payload) for m in taken))
                got.extend(m.payload for m in taken)
        assert got == payloads
        assert adapter.counters.received == len(payloads)
        # One poll takes at most one read off the socket (plus what was left of the last).
        assert largest_poll <= 2 * READ_CHUNK + max(len(p) for p in payloads)
    finally:
        adapter.stop()
        assert adapter.client.socket() is None


def test_a_clean_stop_sends_disconnect_so_the_will_stays_unsent(broker: LocalBroker) -> None:
    with mqtt_client(broker, subscribe="sensord-mqtt-test/status") as watcher:
        adapter = adapter_for(broker, f"edge-{time.monotonic_ns()}")
        assert wait_for(lambda: (adapter.poll(0.05), adapter.connected.is_set())[1], 10)
        for i in range(50):  # queued by paho, written by poll in one send
            adapter.publish(f"sensord-mqtt-test/out/{i}", b"x", qos=1)
        adapter.stop()
        assert adapter.client.socket() is None
        time.sleep(1.0)  # a Will would be published as soon as the broker saw the socket go
        statuses = [m.payload for m in watcher.on("sensord-mqtt-test/status") if not m.retain]
        assert statuses == [b"online", b"offline"]  # the stop's own offline, and no Will
