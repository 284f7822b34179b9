"""The live demo: broker, simulated sensors, the real daemon, alerts as they arrive."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from sensord.cli.broker import LocalBroker, answers, free_port, start_local_broker
from sensord.cli.extras import require_train_extra
from sensord.cli.simulate import Injected, SimulationPlan, simulate
from sensord.core.bundle import load_bundle
from sensord.core.timestamps import format_timestamp
from sensord.errors import InputError, SensordError
from sensord.offline.synthetic import generate, write_csv

PREFIX = "sensord-demo"
SENSOR_TOPIC = "demo-sensors/{stream}/value"
# What the daemon leaves retained under the prefix, cleared when the demo ends.
RETAINED = tuple(f"{PREFIX}/{kind}" for kind in ("state/", "status", "availability/", "bridge/"))
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# An alert catches an injected anomaly if it is raised on the same stream within this many
# of its samples (sample time, which the simulator sends).
CATCH_WITHIN_SAMPLES = 2


@dataclass
class Watcher:
    """Subscribes to sensord's topics and prints alerts as they arrive."""

    alerts: list[dict[str, object]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    retained_topics: set[str] = field(default_factory=set)
    online: threading.Event = field(default_factory=threading.Event)
    offline: threading.Event = field(default_factory=threading.Event)

    def on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if msg.topic.startswith(RETAINED) and msg.payload:
            self.retained_topics.add(msg.topic)
        if msg.topic == f"{PREFIX}/status":
            status = msg.payload.decode(errors="replace")
            self.statuses.append(status)
            if not msg.retain:  # a live change, not what an earlier run left behind
                (self.online if status == "online" else self.offline).set()
            return
        if msg.topic.startswith(f"{PREFIX}/alerts/"):
            alert = json.loads(msg.payload)
            self.alerts.append(alert)
            severity = f", {alert['severity']}" if alert["severity"] else ""
            print(
                f"  ALERT {alert['event']:<7} at {alert['time']}: {alert['message']} "
                f"(score {alert['score']:.2f}{severity})",
                flush=True,
            )


class LiveDemo:
    def __init__(
        self,
        out: Path,
        *,
        host: str | None,
        port: int,
        streams: int,
        rate: float,
        duration_s: float,
        anomalies: int,
        seed: int,
    ) -> None:
        self.out = out
        self.host, self.port = host, port
        self.plan = SimulationPlan(
            streams=streams,
            rate=rate,
            duration_s=duration_s,
            anomalies=anomalies,
            topic=SENSOR_TOPIC,
            seed=seed,
        )
        self.seed = seed
        self.web_port = free_port()  # the daemon's page, for a look while the demo runs

    def run(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        broker, host, port, protocol = self._broker()
        try:
            bundle = self._bundle()
            config = self._write_config(bundle, host, port, protocol)
            return self._run_with(config, host, port, protocol)
        finally:
            if broker is not None:
                broker.stop()

    def _broker(self) -> tuple[LocalBroker | None, str, int, str]:
        if self.host is not None:
            if not answers(self.host, self.port):  # before minutes of training, not after
                raise InputError(f"--host {self.host} --port {self.port}: no MQTT broker answers")
            print(f"1/4 broker: using {self.host}:{self.port}")
            return None, self.host, self.port, "5"
        if answers("127.0.0.1", self.port):
            print(f"1/4 broker: using the one answering at 127.0.0.1:{self.port}")
            return None, "127.0.0.1", self.port, "5"
        broker = start_local_broker()
        print(
            f"1/4 broker: none answered at 127.0.0.1:{self.port}; started {broker.kind} "
            f"on {broker.host}:{broker.port} (MQTT {broker.protocol})"
        )
        return broker, broker.host, broker.port, broker.protocol

    def _bundle(self) -> Path:
        path = self.out / "bundle"
        try:
            load_bundle(path)
        except SensordError:
            pass
        else:
            print(f"2/4 bundle: reusing {path}")
            return path
        require_train_extra("demo")
        print(
            f"2/4 bundle: training a small LSTM on generated history into {path} "
            "(a minute or two on a small machine; reused next time)",
            flush=True,
        )
        from sensord.training.options import TrainOptions
        from sensord.training.progress import train_with_progress

        history = self.out / "history.csv"
        write_csv(history, generate(1500, seed=self.seed))
        report = train_with_progress(history, path, TrainOptions(name="demo"))
        t = report.bundle.manifest.training
        print(
            f"2/4 bundle: trained {path} in {report.seconds:.1f} s on {t.rows} generated "
            f"rows (validation MAE {t.validation_mae:.3f} vs {t.persistence_mae:.3f} for "
            "repeat-last-value)"
        )
        return path

    def _write_config(self, bundle: Path, host: str, port: int, protocol: str) -> Path:
        state = self.out / "state"
        shutil.rmtree(state, ignore_errors=True)  # each demo's simulated streams start afresh
        config = self.out / "config.toml"
        config.write_text(
            f'[mqtt]\nhost = "{host}"\nport = {port}\nprotocol = "{protocol}"\n'
            f'client_id = "sensord-demo"\n\n[alerts]\nprefix = "{PREFIX}"\n\n'
            f'[state]\ndir = "{state.resolve()}"\n\n'
            f"[web]\nport = {self.web_port}\n\n"
            f'[[routes]]\ntopic = "{SENSOR_TOPIC.format(stream="+")}"\n'
            f'bundle = "{bundle.resolve()}"\n'
        )
        return config

    def _run_with(self, config: Path, host: str, port: int, protocol: str) -> int:
        watcher = Watcher()
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            protocol=MQTTProtocolVersion.MQTTv5
            if protocol == "5"
            else MQTTProtocolVersion.MQTTv311,
        )
        client.on_message = watcher.on_message
        client.connect(host, port)
        client.subscribe(f"{PREFIX}/#", qos=1)
        client.loop_start()
        log_path = self.out / "daemon.log"
        with log_path.open("w") as log_file:
            daemon = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sensord",
                    "--log-format",
                    "json",
                    "run",
                    "--config",
                    str(config),
                ],
                stderr=log_file,
                stdout=log_file,
                env={**os.environ},
            )
            try:
                code = self._drive(
                    daemon,
                    watcher=watcher,
                    host=host,
                    port=port,
                    protocol=protocol,
                    log_path=log_path,
                )
                _clear_retained(client, watcher)
                return code
            finally:
                if daemon.poll() is None:
                    daemon.kill()
                    daemon.wait()
                client.disconnect()
                client.loop_stop()

    def _drive(
        self,
        daemon: subprocess.Popen[bytes],
        *,
        watcher: Watcher,
        host: str,
        port: int,
        protocol: str,
        log_path: Path,
    ) -> int:
        if not watcher.online.wait(READY_TIMEOUT_S):
            raise SensordError(f"the daemon did not come online; see {log_path}")
        print(
            f"3/4 daemon: online (pid {daemon.pid}, logs in {log_path}); simulating "
            f"{self.plan.streams} sensors at {self.plan.rate:g} msg/s for "
            f"{self.plan.duration_s:g} s with {self.plan.anomalies} anomalies; its page: "
            f"http://127.0.0.1:{self.web_port}/"
        )

        def injected(event: Injected) -> None:
            print(
                f"  inject {event.kind:<14}  {event.stream:<9} at {format_timestamp(event.ts)} "
                f"value {event.value:.2f}",
                flush=True,
            )

        report = simulate(self.plan, host, port, protocol, on_anomaly=injected)
        time.sleep(2.0)  # the last readings' alerts are on their way
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=STOP_TIMEOUT_S)
        went_offline = watcher.offline.wait(5.0)
        print(
            f"4/4 stopped: daemon exit code {code}, status "
            f"{'offline' if went_offline else 'NOT offline'}; sent {report.sent} readings"
        )
        stats = _final_stats(log_path)
        if stats:
            print(
                f"  daemon counted: {stats.get('scored')} scored, {stats.get('raised')} "
                f"alerts raised, {stats.get('cleared')} cleared, "
                f"rejected {stats.get('rejected')}"
            )
        within_s = CATCH_WITHIN_SAMPLES * self.plan.interval_s
        caught = [_caught(event, watcher.alerts, within_s) for event in report.injected]
        for event, hit in zip(report.injected, caught, strict=True):
            print(
                f"  {event.kind:<14} on {event.stream} sample {event.index}: "
                + ("caught" if hit else "MISSED")
            )
        ok = code == 0 and went_offline and all(caught)
        print("demo ok" if ok else "demo FAILED")
        return 0 if ok else 1


def _clear_retained(client: paho.Client, watcher: Watcher) -> None:
    """Leave the broker as the demo found it: an empty retained message deletes one."""
    for topic in sorted(watcher.retained_topics):
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)


def _caught(event: Injected, alerts: list[dict[str, object]], within_s: float) -> bool:
    for alert in alerts:
        ts = alert.get("ts")
        if (
            alert.get("event") == "raised"
            and alert.get("stream") == event.stream
            and isinstance(ts, float)
            and event.ts - 0.5 <= ts <= event.ts + within_s
        ):
            return True
    return False


def _final_stats(log_path: Path) -> dict[str, object]:
    for line in reversed(log_path.read_text().splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("event") == "stopped":
            return record
    return {}
