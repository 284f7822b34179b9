"""The parts of the crash tests: a Mosquitto that can be killed and restarted with its data,
a TCP link that can be cut, numbered readings with anomalies at known points and the run a
clean daemon would make of them, `sensord run` traced and killable, an alert collector.

Used by tests/integration/test_crash.py (short runs in CI) and tests/soak/crash.py (the long
runs whose figures go in the closing note).
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sensord.cli.broker import answers, free_port, mosquitto_binary, terminate
from sensord.config import Settings
from sensord.core.bundle import Bundle
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline
from sensord.offline.synthetic import generate

T0 = 1_700_000_000.0
STEP = 300.0  # seconds between a stream's readings (the bundle's training interval)
SPIKE = 8.0
MAX_OUTSTANDING = 30_000  # published, not acknowledged yet


# the broker


class Mosquitto:
    """A Mosquitto with persistence in its own folder, on a fixed port, killable."""

    def __init__(self, folder: Path, port: int | None = None, persistence: bool = True) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("the crash tests need mosquitto (apt-get install mosquitto)")
        self.binary = binary
        self.folder = folder
        self.port = port or free_port()
        self.host = "127.0.0.1"
        folder.mkdir(parents=True, exist_ok=True)
        # The database is saved every second, so a kill -9 loses at most about a second of
        # what Mosquitto acknowledged (the tests allow BROKER_WINDOW_S). Not after every
        # change (autosave_on_changes): that rewrote the whole database tens of thousands of
        # times a run (30,324 saves of 1.1 MB in 224 s), and on a busy box the broker itself
        # fell behind.
        (folder / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence {'true' if persistence else 'false'}\n"
            f"persistence_location {folder}/\nautosave_interval 1\n"
            "max_queued_messages 0\nmax_inflight_messages 0\n"
            # Run as root (the tests do), Mosquitto would switch to its own user, who may
            # not write in a private temp folder: no database, no log. Stay as whoever ran it.
            f"user {getpass.getuser()}\n"
            f"log_dest file {folder / 'mosquitto.log'}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.folder / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not answers(self.host, self.port, 0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start (see {self.folder}/mosquitto.log)")
            time.sleep(0.05)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)


class Link:
    """A TCP proxy from a local port to the broker, that can be cut (both directions, and
    no new connections) and restored: the network between sensord and its broker."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._up = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        self._up.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        self._up.clear()
        if self._listener is not None:
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                with suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._up.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for s in (source, sink):
        with suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


# the readings


@dataclass
class Feed:
    """Numbered readings for ``streams`` streams, spikes at known points."""

    streams: int
    steps: int
    spike_every: int = 150
    warmup: int = 60
    values: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.values = np.stack(
            [generate(self.steps, seed=100 + s).values for s in range(self.streams)]
        )
        for s in range(self.streams):
            for k in self.spikes(s):
                self.values[s, k] += SPIKE

    def spikes(self, stream: int) -> list[int]:
        first = self.warmup + (stream * 37) % self.spike_every
        return list(range(first, self.steps, self.spike_every))

    def name(self, stream: int) -> str:
        return f"s{stream:03d}"

    def payload(self, stream: int, k: int) -> bytes:
        return orjson.dumps({"value": float(self.values[stream, k]), "ts": T0 + k * STEP})

    def reference(
        self, settings: Settings, bundle: Bundle, lost: Collection[tuple[str, int]] = ()
    ) -> tuple[Pipeline, set[str]]:
        """What a daemon that never crashed makes of the feed (without the ``lost``
        readings, which a broker killed inside its save window never delivered): its final
        state and the ids of the alerts it raises."""
        pipeline = Pipeline(Engine(bundle), settings.pipeline_settings(settings.routes[0]))
        names = [self.name(s) for s in range(self.streams)]
        lost = set(lost)
        raised: set[str] = set()
        for k in range(self.steps):
            rows = [s for s in range(self.streams) if (names[s], k) not in lost]
            if not rows:
                continue
            out = pipeline.process_batch(
                [names[s] for s in rows],
                np.full(len(rows), T0 + k * STEP),
                self.values[rows, k : k + 1],
            )
            raised |= {e.alert_id for _, e in out.events if e.event == "raised"}
        return pipeline, raised


class Publisher:
    """Publishes the feed at QoS 1 in a thread, at ``rate`` readings per second; paho keeps
    what the broker has not acknowledged and sends it again after a reconnect."""

    def __init__(self, host: str, port: int, feed: Feed, rate: float, v5: bool = True) -> None:
        self.feed = feed
        self.rate = rate
        self.client = _client(f"pub-{time.monotonic_ns()}", v5)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_publish = self._on_publish
        _connect(self.client, host, port, v5)
        self.acknowledged = 0  # PUBACKs received
        self.sent = 0
        # (message id, (stream, step)) per publish and (message id, time) per PUBACK, in
        # order: the n-th PUBACK of an id answers its n-th publish (paho never reuses an id
        # still out, and fewer than 65,535 are). Which reading the broker acknowledged when.
        self._published_ids: list[tuple[int, tuple[str, int]]] = []
        self._acked_ids: list[tuple[int, float]] = []
        self.step = 0  # the feed's step being published
        self.pause_at = -1  # before this step, wait for ``resume`` (saying ``paused``)
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        interval = self.feed.streams / self.rate
        start = time.monotonic()
        for k in range(self.feed.steps):
            self.step = k
            if k == self.pause_at:
                self.paused.set()
                self.resume.wait()
                start = time.monotonic() - k * interval  # the pace goes on from here
            # paho numbers publishes 1..65535 and refuses one whose number is still out:
            # wait for the broker when it falls that far behind (a busy box, a slow gateway)
            while self.sent - self.acknowledged > MAX_OUTSTANDING:
                time.sleep(0.01)
            for s in range(self.feed.streams):
                info = self.client.publish(
                    f"sensors/{self.feed.name(s)}/value", self.feed.payload(s, k), qos=1
                )
                if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                    raise RuntimeError(f"publish refused by paho: {info.rc}")
                self._published_ids.append((info.mid, (self.feed.name(s), k)))
                self.sent += 1
            time.sleep(max(0.0, start + (k + 1) * interval - time.monotonic()))
        self.done.set()

    def _on_publish(self, client: paho.Client, userdata: object, mid: int, *_: object) -> None:
        self._acked_ids.append((mid, time.monotonic()))
        self.acknowledged += 1

    def acknowledged_at(self) -> dict[tuple[str, int], float]:
        """When the broker acknowledged each reading (monotonic seconds)."""
        readings: dict[int, list[tuple[str, int]]] = {}
        for mid, reading in list(self._published_ids):
            readings.setdefault(mid, []).append(reading)
        answered: dict[int, int] = {}
        out: dict[tuple[str, int], float] = {}
        for mid, at in list(self._acked_ids):
            n = answered.get(mid, 0)
            answered[mid] = n + 1
            if n < len(readings.get(mid, [])):
                out[readings[mid][n]] = at
        return out

    def all_acknowledged(self) -> bool:
        return self.done.is_set() and self.acknowledged >= self.sent

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class AlertCollector:
    """A persistent-session QoS 1 subscriber to ``sensord/alerts/#``."""

    def __init__(self, host: str, port: int, v5: bool = True) -> None:
        self.messages: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = _client(f"alerts-{time.monotonic_ns()}", v5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe("sensord/alerts/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.reconnect_delay_set(0.2, 1)
        _connect(self.client, host, port, v5)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(orjson.loads(msg.payload))

    def raised_ids(self) -> list[str]:
        with self._lock:
            return [str(m["alert_id"]) for m in self.messages if m["event"] == "raised"]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _client(client_id: str, v5: bool) -> paho.Client:
    """A client with a persistent session (MQTT 5, or 3.1.1 for NATS's MQTT gateway)."""
    return paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if v5 else False,
    )


def _connect(client: paho.Client, host: str, port: int, v5: bool) -> None:
    if v5:
        client.connect_async(host, port, clean_start=False, properties=_expiry())
    else:
        client.connect_async(host, port)
    client.loop_start()


def _expiry() -> Properties:
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    return properties


# the daemon


def write_config(folder: Path, port: int, bundle: Bundle, snapshot_interval_s: float = 1.0) -> Path:
    config = folder / "sensord.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nclient_id = "crash-{time.monotonic_ns()}"\n'
        "reconnect_min_s = 0.2\nreconnect_max_s = 1\nkeepalive = 5\n"
        f'[state]\ndir = "{folder / "state"}"\nsnapshot_interval_s = {snapshot_interval_s}\n'
        "[limits]\nlog_interval_s = 0\n"
        f'[[routes]]\ntopic = "sensors/+/value"\nbundle = "{bundle.path}"\n'
    )
    return config


class TracedDaemon:
    """``sensord run`` in a child process that appends every reading it steps to a trace
    file before acknowledging it (tests/soak/traced.py); it can be killed at any moment."""

    def __init__(self, config: Path, trace: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.trace = trace
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = config.parent / "daemon.log"
        self.kills = 0
        self.starts = 0
        self._log_from = 0

    def start(self) -> None:
        self._log_from = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.soak.traced",
                    "--log-format",
                    "json",
                    "run",
                    "--config",
                    str(self.config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env, "SENSORD_TRACE": str(self.trace)},
                cwd=Path(__file__).resolve().parents[2],
            )
        self.starts += 1

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.kills += 1

    def close(self) -> None:
        """Kill it if it still runs (a test that failed half-way)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def events(self, every_start: bool = False) -> list[dict[str, object]]:
        """Log events of the latest start (of every start with ``every_start``)."""
        data = self.log.read_bytes() if self.log.exists() else b""
        lines = (data if every_start else data[self._log_from :]).splitlines()
        out = []
        for line in lines:
            if line.startswith(b"{"):
                with suppress(orjson.JSONDecodeError):
                    out.append(orjson.loads(line))
        return out

    def stepped(self) -> list[tuple[str, int]]:
        """Every (stream, seq) the daemon stepped, as often as it stepped it."""
        if not self.trace.exists():
            return []
        out = []
        for line in self.trace.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out.append((parts[0], round((float(parts[1]) - T0) / STEP)))
        return out


@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sensord-crash-") as folder:
        yield Path(folder)


def wait_until(condition: object, timeout: float, poll: float = 0.05) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return bool(condition())
