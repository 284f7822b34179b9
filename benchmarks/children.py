"""The benchmark's child processes: the daemon, the two yardsticks, the publishers, and a
subscriber that times alerts. benchmarks/throughput.py runs them and reports."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from prometheus_client.parser import text_string_to_metric_families

from sensord.core.timestamps import parse_timestamp

REPO = Path(__file__).resolve().parents[1]
PUBLISHERS = 2
PROCESSED = (
    "sensord_readings_scored_total",
    "sensord_readings_first_total",
    "sensord_readings_duplicate_total",
    "sensord_readings_late_total",
)
POLL_S = 0.1  # metrics polls while sensord drains (each scrape costs the daemon a little)
STALL_S = 60.0
READY_TIMEOUT_S = 60.0


class BenchmarkError(RuntimeError):
    """A part of the benchmark did not do what it must (its log is named)."""


@dataclass
class Drain:
    """One consumer taking a backlog: rate and CPU between the 5 % and 95 % marks."""

    messages: int
    seconds: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else math.nan

    @property
    def cpu_ms_per_1000(self) -> float:
        return 1000.0 * self.cpu_s / self.messages * 1000.0 if self.messages else math.nan

    def as_dict(self) -> dict[str, float]:
        return {
            "messages": self.messages,
            "seconds": round(self.seconds, 4),
            "rate_msg_s": round(self.rate, 1),
            "cpu_s": round(self.cpu_s, 4),
            "cpu_s_per_1000_msgs": round(self.cpu_ms_per_1000 / 1000.0, 5),
        }


# the daemon as a child process


class DaemonProcess:
    """``sensord run`` as a child, with READY taken from a NOTIFY_SOCKET of our own."""

    def __init__(self, config: Path, metrics_port: int, log: Path) -> None:
        self.config, self.metrics_port, self.log = config, metrics_port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Launch and wait for READY; return the seconds it took."""
        notify_path = self.log.with_suffix(".notify")
        notify_path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            notify.settimeout(0.2)
            env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
            started = time.monotonic()
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "sensord", "run", "--config", str(self.config)],
                    env=env,
                    cwd=REPO,
                    stdout=log,
                    stderr=log,
                )
            while time.monotonic() - started < READY_TIMEOUT_S:
                try:
                    message = notify.recv(4096)
                except TimeoutError:
                    if self.process.poll() is not None:
                        raise BenchmarkError(f"sensord exited at start; see {self.log}") from None
                    continue
                if b"READY=1" in message.split(b"\n"):
                    return time.monotonic() - started
        raise BenchmarkError(f"sensord was not ready in {READY_TIMEOUT_S} s; see {self.log}")

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchmarkError("sensord is not running")
        return self.process.pid

    def processed(self) -> int:
        """Readings the daemon has stepped (scored, first, or dropped as old), by its metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in PROCESSED:
                    total += sample.value
        return int(total)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return math.nan

    def drain(self, expect: int) -> Drain:
        """Poll the metrics until ``expect`` readings are stepped; time the 5-95 % span."""
        polls: list[tuple[float, int, float]] = []
        last_change = time.monotonic()
        while True:
            now, count, cpu = time.monotonic(), self.processed(), self.cpu_s()
            if polls and count != polls[-1][1]:
                last_change = now
            polls.append((now, count, cpu))
            if count >= expect:
                break
            if now - last_change > STALL_S:
                raise BenchmarkError(f"sensord stalled at {count}/{expect}; see {self.log}")
            time.sleep(POLL_S)
        return _interpolated_drain(polls, expect)

    def stop(self) -> int:
        if self.process is None:
            return 0
        self.process.terminate()
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code


def _interpolated_drain(polls: list[tuple[float, int, float]], expect: int) -> Drain:
    times = np.array([p[0] for p in polls])
    counts = np.array([p[1] for p in polls], dtype=np.float64)
    cpus = np.array([p[2] for p in polls])
    low, high = max(1, expect // 20), expect - expect // 20
    # Counts only grow; interp needs strictly increasing x, so keep each count's first poll.
    counts, first = np.unique(counts, return_index=True)
    t = np.interp([low, high], counts, times[first])
    cpu = np.interp([low, high], counts, cpus[first])
    return Drain(high - low, float(t[1] - t[0]), float(cpu[1] - cpu[0]))


def subscriber(kind: str, phase: str, port: int, expect: int = 0, **extra: Path) -> Drain:
    args = [sys.executable, "-m", "benchmarks.subscribers", kind, "--port", str(port)]
    args += ["--client-id", f"bench-{kind}", "--phase", phase, "--expect", str(expect)]
    for name, value in extra.items():
        args += [f"--{name}", str(value)]
    done = subprocess.run(args, cwd=REPO, capture_output=True, check=False, timeout=900)
    if done.returncode != 0:
        raise BenchmarkError(f"{kind} {phase} failed: {done.stderr.decode()[-2000:]}")
    result = json.loads(done.stdout)
    if phase == "subscribe":
        return Drain(0, 0.0, 0.0)
    if result["count"] < expect:
        raise BenchmarkError(f"{kind} took {result['count']} of {expect} messages")
    low, high = max(1, expect // 20), expect - expect // 20
    return Drain(high - low, result["t95"] - result["t5"], result["cpu95"] - result["cpu5"])


def publish(
    port: int, streams: int, messages: int, rate: float | None = None, anomalies: int = 0
) -> list[dict[str, Any]]:
    """Publish from up to PUBLISHERS processes, each owning a slice of the streams."""
    parts = min(PUBLISHERS, streams)
    bounds = np.linspace(0, streams, parts + 1).astype(int)
    children = []
    for j in range(parts):
        first, count = int(bounds[j]), int(bounds[j + 1] - bounds[j])
        share = round(messages * count / streams)
        args = [sys.executable, "-m", "benchmarks.traffic", "--port", str(port)]
        args += ["--first", str(first), "--count", str(count), "--messages", str(share)]
        args += ["--seed", str(j)]
        if rate is not None:
            args += ["--rate", str(rate * count / streams)]
        if anomalies:
            args += ["--anomalies", str(round(anomalies * count / streams))]
        children.append(subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE))
    results = []
    for child in children:
        out, _ = child.communicate(timeout=900)
        if child.returncode != 0:
            raise BenchmarkError(f"publisher exited with {child.returncode}")
        results.append(json.loads(out))
    return results


class AlertWatcher:
    """Subscribes to sensord's alerts and notes when each arrives."""

    def __init__(self, port: int) -> None:
        # stream, reading ts, arrival, and the daemon's received_at / published_at
        self.raised: list[tuple[str, float, float, float, float]] = []
        self._last = time.time()  # when the latest alert arrived
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("sensord/alerts/+", qos=1)
        self.client.loop_start()
        if not subscribed.wait(timeout=10):
            raise BenchmarkError("the alert watcher could not subscribe")

    def wait_quiet(self, quiet_s: float, longest_s: float = 30.0) -> None:
        """Until no alert has arrived for ``quiet_s`` (at most ``longest_s``)."""
        deadline = time.monotonic() + longest_s
        while time.monotonic() < deadline and time.time() - self._last < quiet_s:
            time.sleep(0.05)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        arrived = time.time()
        self._last = arrived
        alert = json.loads(message.payload)
        if alert.get("event") == "raised":
            self.raised.append(
                (
                    str(alert["stream"]),
                    float(alert["ts"]),
                    arrived,
                    parse_timestamp(str(alert["received_at"])),
                    parse_timestamp(str(alert["published_at"])),
                )
            )

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
