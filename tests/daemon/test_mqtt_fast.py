"""The PUBLISH fast path (daemon/mqttfast.py) on a real Mosquitto, MQTT 5 and 3.1.1: plain
readings parsed without paho, everything unusual left to paho's own handler, in order, and
acknowledged only when the adapter's ``ack`` says so."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sensord.cli.broker import LocalBroker
from sensord.config import MqttSettings
from sensord.daemon.mqtt import MqttAdapter
from sensord.daemon.transport import Message, TransportOptions
from tests.integration.conftest import start_broker, wait_for

pytestmark = pytest.mark.integration

PROTOCOLS = ("5", "3.1.1")


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalBroker]:
    b = start_broker()
    if b.protocol != "5":
        b.stop()
        pytest.skip("needs Mosquitto (MQTT 5)")
    yield b
    b.stop()


def connected(
    broker: LocalBroker,
    protocol: str,
    client_id: str,
    read_limit: int = 256,
    requests: str | None = None,
) -> tuple[MqttAdapter, Paths]:
    """An adapter on the broker, subscribed, and the paths its messages take from now on."""
    settings = MqttSettings(
        host=broker.host, port=broker.port, protocol=protocol, client_id=client_id
    )
    options = TransportOptions("fastd", ["fast/#"], requests=requests, read_limit=read_limit)
    adapter = MqttAdapter(settings, options)
    paths = watch(adapter)
    adapter.start()
    assert wait_for(lambda: polled(adapter) and adapter.link.connected.is_set(), 10)
    for _ in range(10):  # the SUBACKs
        adapter.poll(0.02)
    return adapter, paths


def polled(adapter: MqttAdapter) -> bool:
    adapter.poll(0.05)
    return True


def publisher(broker: LocalBroker, protocol: str) -> paho.Client:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        protocol=MQTTProtocolVersion.MQTTv5 if protocol == "5" else MQTTProtocolVersion.MQTTv311,
    )
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def send(
    client: paho.Client, messages: Sequence[tuple[str, bytes, int, Properties | None]]
) -> None:
    infos = [
        client.publish(topic, payload, qos=qos, properties=props)
        for topic, payload, qos, props in messages
    ]
    for info in infos:
        info.wait_for_publish(10)


def exchange(
    broker: LocalBroker,
    protocol: str,
    adapter: MqttAdapter,
    sent: Sequence[tuple[str, bytes, int, Properties | None]],
) -> list[Message]:
    """Publish ``sent`` and take them all through ``adapter``, which is stopped after."""
    pub = publisher(broker, protocol)
    try:
        send(pub, sent)
        return drain(adapter, len(sent))
    finally:
        pub.disconnect()
        pub.loop_stop()
        adapter.stop()


def drain(adapter: MqttAdapter, count: int, ack: bool = True) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + 20
    while len(got) < count and time.monotonic() < deadline:
        adapter.poll(0.05)
        taken = adapter.take(1 << 20)
        if ack:
            adapter.ack(taken)
        got.extend(taken)
    adapter.poll(0.05)  # anything more would show up as extra readings
    got.extend(adapter.take(1 << 20))
    return got


def with_property(protocol: str) -> Properties | None:
    if protocol != "5":
        return None
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("k", "v")
    return props


@dataclass
class Paths:
    """The topics each path handed to the adapter (the broker's own $SYS ones left out)."""

    fast: list[str] = field(default_factory=list)
    paho: list[str] = field(default_factory=list)


def watch(adapter: MqttAdapter) -> Paths:
    """Note which path each message takes, then hand it on as before."""
    paths = Paths()
    client = adapter.client
    on_reading, on_message = client.on_reading, client.on_message
    assert on_reading is not None and on_message is not None

    def fast(topic: str, payload: bytes, qos: int, mid: int) -> None:
        if not topic.startswith("$SYS"):
            paths.fast.append(topic)
        on_reading(topic, payload, qos, mid)

    def slow(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        if not message.topic.startswith("$SYS"):
            paths.paho.append(message.topic)
        on_message(client, userdata, message)

    client.on_reading, client.on_message = fast, slow
    return paths


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_plain_readings_take_the_fast_path_whole(broker: LocalBroker, protocol: str) -> None:
    """QoS 0 and 1, non-ASCII topics, payloads from empty to a two-byte remaining length:
    all parsed without paho, each exactly as sent."""
    adapter, paths = connected(broker, protocol, f"fast-plain-{time.monotonic_ns()}")
    sizes = (0, 1, 60, 100, 101, 102, 200, 3000)  # a remaining length of 127, 128, ...
    sent = [
        (f"fast/Größe-温度-{i}/value", bytes([i % 251]) * size, i % 2, None)
        for i, size in enumerate(sizes * 3)
    ]
    got = exchange(broker, protocol, adapter, sent)
    assert [(m.topic, m.payload, m.qos) for m in got] == [(t, p, q) for t, p, q, _ in sent]
    assert all((m.mid > 0) == (m.qos == 1) for m in got)
    assert paths == Paths(fast=[t for t, _, _, _ in sent])
    assert adapter.counters.received == len(sent)
    assert adapter.counters.acked == sum(q for _, _, q, _ in sent)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_packet_split_across_reads_is_finished_by_paho(
    broker: LocalBroker, protocol: str
) -> None:
    """Three-byte remaining lengths, and a packet larger than a read: what the buffer holds
    whole is parsed fast, the rest by paho, all in order."""
    adapter, paths = connected(broker, protocol, f"fast-big-{time.monotonic_ns()}")
    sizes = (16_000, 20_000, 70_000, 10, 20_000, 10)
    sent = [(f"fast/b{i}/value", bytes([i]) * size, 1, None) for i, size in enumerate(sizes)]
    pub = publisher(broker, protocol)
    try:
        send(pub, sent)
        time.sleep(0.3)  # all in the socket's buffer: the first read is a whole 64 KiB
        got = drain(adapter, len(sent))
    finally:
        pub.disconnect()
        pub.loop_stop()
        adapter.stop()
    assert [(m.topic, m.payload) for m in got] == [(t, p) for t, p, _, _ in sent]
    assert paths.fast[:2] == ["fast/b0/value", "fast/b1/value"]
    assert "fast/b2/value" in paths.paho
    assert sorted(paths.fast + paths.paho) == sorted(t for t, _, _, _ in sent)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_properties_go_to_paho_in_order(broker: LocalBroker, protocol: str) -> None:
    """MQTT 5 PUBLISH packets with properties fall back to paho's handler, interleaved with
    plain readings in one buffer: every one arrives, in publication order."""
    adapter, paths = connected(broker, protocol, f"fast-props-{time.monotonic_ns()}")
    unusual = with_property(protocol)
    sent = [(f"fast/s{i}/value", b"%d" % i, 1, unusual if i % 3 else None) for i in range(60)]
    got = exchange(broker, protocol, adapter, sent)
    assert [(m.topic, m.payload, m.qos) for m in got] == [(t, p, q) for t, p, q, _ in sent]
    unusual_topics = [t for t, _, _, p in sent if p is not None]  # none on 3.1.1
    assert paths.paho == unusual_topics
    assert paths.fast == [t for t, _, _, _ in sent if t not in unusual_topics]
    assert adapter.counters.callback_errors == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retained_and_qos2_go_to_paho(broker: LocalBroker, protocol: str) -> None:
    """A retained reading (sent on subscribing) and QoS 2 ones are paho's to handle; they
    arrive, and are acknowledged (PUBACK, PUBCOMP) by ``ack`` as before."""
    topic = f"fast/r{time.monotonic_ns()}/value"
    pub = publisher(broker, protocol)
    pub.publish(topic, b"retained", qos=1, retain=True).wait_for_publish(10)
    adapter, paths = connected(broker, protocol, f"fast-rq2-{time.monotonic_ns()}")
    adapter.client.subscribe("fast2/#", qos=2)  # settings allow 0 or 1; paho takes 2
    try:
        retained = drain(adapter, 1)
        assert [(m.topic, m.payload) for m in retained] == [(topic, b"retained")]
        assert paths == Paths(paho=[topic])
        send(pub, [(f"fast2/q{i}/value", b"%d" % i, 2, None) for i in range(20)])
        got = drain(adapter, 20)
    finally:
        adapter.stop()
        pub.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)  # clears it
        pub.disconnect()
        pub.loop_stop()
    # paho hands a QoS 2 message over at PUBREL, so their order is the broker's flow's
    assert sorted(m.payload for m in got) == sorted(b"%d" % i for i in range(20))
    assert {m.qos for m in got} == {2}
    assert paths.fast == [] and len(paths.paho) == 21
    assert adapter.counters.acked == 21


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_only_what_ack_names_is_acknowledged(broker: LocalBroker, protocol: str) -> None:
    """Readings read but not acknowledged come again (with dup set, through the fast path
    too) on the next connection; those acknowledged do not."""
    client_id = f"fast-ack-{time.monotonic_ns()}"
    adapter, paths = connected(broker, protocol, client_id)
    sent = [
        (f"fast/s{i % 5}/value", b"%d" % i, 1, None) for i in range(16)
    ]  # under 3.1.1's in-flight 20
    pub = publisher(broker, protocol)
    try:
        send(pub, sent)
        got = drain(adapter, len(sent), ack=False)
        assert len(got) == len(sent)
        adapter.ack(got[::2])
        adapter.poll(0.05)  # the PUBACKs go out
    finally:
        pub.disconnect()
        pub.loop_stop()
        adapter.stop()
    again, paths = connected(broker, protocol, client_id)
    try:
        redelivered = drain(again, 8)
    finally:
        again.stop()
    assert [m.payload for m in redelivered] == [m.payload for m in got[1::2]]
    assert len(paths.fast) == 8 and paths.paho == []  # resent with dup set: still plain


def test_requests_keep_their_properties(broker: LocalBroker) -> None:
    """A request with a response topic and correlation data (MQTT 5) goes through paho and
    keeps both; one without properties is parsed fast and has neither."""
    adapter, paths = connected(
        broker, "5", f"fast-req-{time.monotonic_ns()}", requests="fastd/feedback/+"
    )
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "back/here"
    props.CorrelationData = b"c1"
    pub = publisher(broker, "5")
    try:
        send(pub, [("fastd/feedback/a", b"with", 1, props), ("fastd/feedback/b", b"bare", 1, None)])
        assert wait_for(lambda: polled(adapter) and len(adapter.requests) == 2, 10)
    finally:
        pub.disconnect()
        pub.loop_stop()
        adapter.stop()
    with_props, bare = adapter.take_requests()
    assert (with_props.payload, with_props.response_topic, with_props.correlation) == (
        b"with",
        "back/here",
        b"c1",
    )
    assert (bare.payload, bare.response_topic, bare.correlation) == (b"bare", None, None)
    assert paths == Paths(fast=["fastd/feedback/b"], paho=["fastd/feedback/a"])


def test_parsing_stops_at_the_read_limit(broker: LocalBroker) -> None:
    """The fast path stops once ``read_limit`` readings wait, as paho's reads do."""
    adapter, _ = connected(broker, "5", f"fast-limit-{time.monotonic_ns()}", read_limit=7)
    pub = publisher(broker, "5")
    try:
        send(pub, [(f"fast/s{i}/value", b"%d" % i, 1, None) for i in range(50)])
        time.sleep(0.2)  # all of them in the socket's buffer
        adapter.poll(0.05)
        assert adapter.waiting() == 7
        got = drain(adapter, 50)
    finally:
        pub.disconnect()
        pub.loop_stop()
        adapter.stop()
    assert [m.payload for m in got] == [b"%d" % i for i in range(50)]
