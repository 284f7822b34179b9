"""Nothing lost on the live daemon: acknowledgement after scoring, poison messages, overload,
the watchdog only while the loop makes progress, snapshots that survive a kill at any step."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from sensord.arrays import F64
from sensord.cli.broker import LocalBroker, free_port, start_mosquitto
from sensord.config import MqttSettings
from sensord.core.bundle import Bundle
from sensord.core.pipeline import Pipeline
from sensord.core.sample import Scored
from sensord.daemon.delivery import RetainedStates
from sensord.daemon.loop import Daemon
from sensord.daemon.mqtt import MqttAdapter
from sensord.daemon.notify import Notifier
from sensord.daemon.transport import TransportOptions
from sensord.durable.files import WRITE_STEPS
from tests.integration.conftest import mqtt_client, running, scored, settings_for, wait_for
from tests.soak.harness import STEP, Mosquitto, TracedDaemon, wait_until, write_config

T0 = 1_700_000_000.0
POISON = (
    ("sensors/p/value", b"{not json"),
    ("sensors/p/value", b'{"value": "NaN"}'),
    ("sensors/p/value", b"\xff\xfe\x00garbage"),
    ("sensors/p/value", b'{"value": 1e999}'),
    ("sensors/p/value", b'{"value": 1, "ts": "yesterday"}'),
    ("sensors/p/value", b"[]"),
    ("sensors/p/value", b""),
    ("sensors/p/value", b"x" * 70_000),  # over max_payload_bytes
)


def test_every_reading_is_acknowledged_once_scored(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    with running(settings_for(broker, bundle, tmp_path)) as daemon, mqtt_client(broker) as client:
        for k in range(300):
            client.publish_json(f"sensors/a{k % 3}/value", {"value": 20.0, "ts": T0 + k})
        assert wait_for(lambda: scored(daemon) == 300)
        assert wait_for(lambda: daemon.stats()["acked"] == 300)
        assert daemon.stats()["ack_stale"] == 0


def test_ten_thousand_poison_messages_among_good_ones(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    good = 2_000
    with running(settings_for(broker, bundle, tmp_path)) as daemon, mqtt_client(broker) as client:
        thread = next(t for t in threading.enumerate() if t.name == "daemon")
        for k in range(10_000):
            topic, payload = POISON[k % len(POISON)]
            client.publish(topic, payload)
            if k % 5 == 0:
                client.publish_json(
                    f"sensors/g{k % 7}/value", {"value": 20.0 + k % 3, "ts": T0 + k}
                )
        assert wait_for(lambda: sum(daemon.stats()["rejected"].values()) == 10_000, 60)
        assert wait_for(lambda: scored(daemon) == good, 30)
        stats = daemon.stats()
        assert stats["received"] == 10_000 + good
        assert wait_for(lambda: daemon.stats()["acked"] == 10_000 + good)  # poison too: no loop
        assert stats["connects"] == 1  # never dropped or restarted
        assert thread.is_alive()
        assert set(daemon.routes[0].pipeline.table.slot_of) == {f"g{i}" for i in range(7)}


def test_a_burst_beyond_capacity_slows_it_down_but_loses_nothing(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    """40,000 readings at once from four publishers (QoS 1): the broker holds what sensord
    has not read, sensord holds at most one batch ahead, every reading is scored."""
    settings = settings_for(broker, bundle, tmp_path, batching={"max_batch": 128})
    per_publisher, streams = 10_000, 200
    with running(settings) as daemon:
        largest_inbox = 0
        stop = threading.Event()

        def watch() -> None:
            nonlocal largest_inbox
            while not stop.is_set():
                largest_inbox = max(largest_inbox, len(daemon.mqtt.inbox))
                time.sleep(0.001)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        failures: list[BaseException] = []

        def publish(offset: int) -> None:
            try:
                publish_all(offset)
            except BaseException as exc:
                failures.append(exc)

        def publish_all(offset: int) -> None:
            with mqtt_client(broker) as client:
                infos = [
                    client.publish_json(
                        f"sensors/b{offset}-{k % streams}/value",
                        {"value": 20.0, "ts": T0 + k // streams},
                    )
                    for k in range(per_publisher)
                ]
                for info in infos:
                    info.wait_for_publish(60)

        publishers = [threading.Thread(target=publish, args=(i,)) for i in range(4)]
        for p in publishers:
            p.start()
        for p in publishers:
            p.join()
        assert failures == []
        assert wait_for(lambda: scored(daemon) == 4 * per_publisher, 120)
        stop.set()
        watcher.join()
        stats = daemon.stats()
        assert stats["received"] == 4 * per_publisher
        assert stats["duplicate"] == 0 and stats["late"] == 0
        assert largest_inbox <= 128  # parsed at most one batch ahead: memory stays bounded
        assert wait_for(lambda: daemon.stats()["acked"] == 4 * per_publisher)


class WatchdogListener:
    """A NOTIFY_SOCKET as systemd would hold it: counts WATCHDOG=1 pings."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.1)
        self.pings: list[float] = []
        self._stop = threading.Event()
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            if b"WATCHDOG=1" in data.split(b"\n"):
                self.pings.append(time.monotonic())

    def since(self, moment: float) -> int:
        return sum(1 for t in self.pings if t > moment)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def test_watchdog_pings_stop_while_the_loop_hangs_and_resume_after(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = WatchdogListener(tmp_path)
    notifier = Notifier({"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "200000"})
    hang = threading.Event()
    release = threading.Event()
    original = Pipeline.process_batch

    def process_batch(
        self: Pipeline,
        streams: Sequence[str],
        ts: F64,
        values: F64,
        received: F64 | None = None,
    ) -> Scored:
        if hang.is_set():
            release.wait(30)  # a scoring step that hangs (a wedged library call)
        return original(self, streams, ts, values, received)

    monkeypatch.setattr(Pipeline, "process_batch", process_batch)
    daemon = Daemon(settings_for(broker, bundle, tmp_path), notifier)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        assert wait_for(daemon.ready.is_set, 15)
        assert wait_for(lambda: listener.since(time.monotonic() - 0.5) >= 3, 5)  # every 0.1 s
        with mqtt_client(broker) as client:
            hang.set()
            client.publish_json("sensors/h/value", {"value": 1.0, "ts": T0})
            time.sleep(0.5)  # the loop is now stuck in the step
            stuck_at = time.monotonic()
            time.sleep(1.0)
            assert listener.since(stuck_at) == 0  # systemd would restart it after WatchdogSec
            hang.clear()
            release.set()
            resumed = time.monotonic()
            assert wait_for(lambda: listener.since(resumed) >= 2, 5)
    finally:
        release.set()
        daemon.request_stop()
        thread.join(30)
        listener.close()


def test_stalled_network_side_stops_the_watchdog(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    """The MQTT side counts as stuck when nothing was read and no connection attempted for
    longer than stall_s; then the loop alone does not keep the watchdog happy."""
    daemon = Daemon(settings_for(broker, bundle, tmp_path))
    now = time.monotonic()
    link = daemon.source.link
    link.last_progress = now
    assert link.making_progress(now + link.stall_s - 1)
    assert not link.making_progress(now + link.stall_s + 1)


@pytest.mark.parametrize("step", WRITE_STEPS)
def test_a_kill_at_any_step_of_a_snapshot_leaves_a_valid_one(
    step: str, bundle: Bundle, tmp_path: Path
) -> None:
    """The daemon is killed (SIGKILL, by the snapshot.<step> failpoint) while it writes a
    periodic snapshot; the next start restores a valid snapshot, the old or the new one."""
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    daemons: list[TracedDaemon] = []
    try:
        config = write_config(tmp_path, broker.port, bundle, snapshot_interval_s=1.0)
        first = TracedDaemon(config, tmp_path / "trace.txt")
        daemons.append(first)
        first.start()
        assert wait_until(lambda: any(e.get("event") == "ready" for e in first.events()), 20)
        with mqtt_client(_local(broker)) as client:
            for k in range(20):
                client.publish_json("sensors/f/value", {"value": 20.0 + k % 3, "ts": T0 + k * STEP})
            assert wait_until(lambda: len(first.stepped()) == 20, 20)
            assert first.stop() == 0  # a clean stop: a first, valid snapshot
            doomed = TracedDaemon(
                config, tmp_path / "trace.txt", env={"SENSORD_FAILPOINT": f"snapshot.{step}"}
            )
            daemons.append(doomed)
            doomed.start()
            for k in range(20, 40):
                client.publish_json("sensors/f/value", {"value": 20.0 + k % 3, "ts": T0 + k * STEP})
            assert doomed.wait(30) == -9  # killed by the failpoint while snapshotting
        after = TracedDaemon(config, tmp_path / "trace.txt")
        daemons.append(after)
        after.start()
        assert wait_until(lambda: any(e.get("event") == "ready" for e in after.events()), 20)
        # Whatever the snapshot missed, the journal replays or the broker sends again.
        assert wait_until(lambda: {seq for _, seq in after.stepped()} == set(range(40)), 20)
        events = after.events()
        assert after.stop() == 0
        set_aside = [
            e for e in events if e.get("event") == "snapshot set aside; streams start afresh"
        ]
        assert set_aside == []
        restored = [e for e in events if e.get("event") == "state restored"]
        assert restored and restored[-1]["streams"] == 1
        assert not list((tmp_path / "state").glob(".*.tmp"))  # the temp file was cleaned up
    finally:
        for daemon in daemons:
            daemon.close()
        broker.stop()


def _local(broker: Mosquitto) -> LocalBroker:
    return LocalBroker(broker.host, broker.port, "5", "mosquitto", broker.stop)


def test_a_publish_while_disconnected_is_queued_not_an_error() -> None:
    """paho keeps a QoS 1 publish made while disconnected and sends it after reconnecting;
    its is_published() must say "not yet", not raise (retained states ask it)."""
    adapter = MqttAdapter(
        MqttSettings(port=free_port()), TransportOptions("sensord", ["sensors/#"])
    )
    info = adapter.publish("sensord/state/x", b"{}", retain=True)
    assert info.is_published() is False
    states = RetainedStates(adapter.publish, in_flight=1)
    states.put("sensord/state/a", lambda: b"1")
    states.put("sensord/state/b", lambda: b"2")
    states.flush()
    assert len(states) == 1  # waits for the first one's PUBACK, without an exception


def test_readings_the_broker_drops_are_counted(bundle: Bundle, tmp_path: Path) -> None:
    """Mosquitto drops QoS 1 readings beyond max_queued_messages for a client that is away;
    sensord cannot see them, but it shows the broker's own count (metrics, log)."""
    broker = start_mosquitto(extra_config="max_queued_messages 100\nsys_interval 1\n")
    try:
        settings = settings_for(broker, bundle, tmp_path)
        with running(settings):
            pass  # the session and its subscription exist; sensord is now away
        with mqtt_client(broker) as client:
            for k in range(300):
                client.publish_json("sensors/q/value", {"value": 20.0, "ts": T0 + k * STEP})
            time.sleep(0.5)
        with running(settings) as daemon:
            assert wait_for(lambda: scored(daemon) == 100, 15)
            assert wait_for(lambda: daemon.stats()["broker_dropped"] == 200, 15)
    finally:
        broker.stop()
