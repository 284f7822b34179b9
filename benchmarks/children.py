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
from collections.abc import Sequence
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
# The other figures a live run reads off the same scrape: batches, and the wave-size
# histogram's count and sum (readings per batched engine step).
FIGURES = ("sensord_batches_total", "sensord_wave_size_count", "sensord_wave_size_sum")
POLL_S = 0.1  # metrics polls while sensord drains (each scrape costs the daemon a little)
STALL_S = 60.0
LIVE_STALL_S = 20.0  # a live run stops waiting when nothing more is stepped for this long
READY_TIMEOUT_S = 60.0


class BenchmarkError(RuntimeError):
    """A part of the benchmark did not do what it must (its log is named)."""


def process_cpu_s(pid: int) -> float:
    """A process's CPU seconds so far, all threads, user + system (from /proc, so any child
    can be read from outside, at the moments the benchmark chooses)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class DaemonFigures:
    """What one scrape of the daemon's metrics says about its work so far."""

    processed: int  # readings stepped (scored, first, or dropped as old)
    batches: int  # micro-batches it scored
    waves: int  # batched engine steps (observations of the wave-size histogram)
    wave_readings: float  # readings in those waves (the histogram's sum)


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
        return self.figures().processed

    def figures(self) -> DaemonFigures:
        """Readings stepped, batches and waves so far, from one scrape of its metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        processed, found = 0.0, dict.fromkeys(FIGURES, 0.0)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in PROCESSED:
                    processed += sample.value
                elif sample.name in found:
                    found[sample.name] = sample.value
        return DaemonFigures(
            processed=int(processed),
            batches=int(found["sensord_batches_total"]),
            waves=int(found["sensord_wave_size_count"]),
            wave_readings=found["sensord_wave_size_sum"],
        )

    def cpu_s(self) -> float:
        return process_cpu_s(self.pid)

    def wait_processed(self, total: int, stall_s: float = LIVE_STALL_S) -> bool:
        """Wait until ``total`` readings are stepped, on the condition rather than a fixed
        time (a busy box is slower, not wrong); give up only when nothing more is stepped
        for ``stall_s``. True when all were stepped."""
        last, moved = self.processed(), time.monotonic()
        while last < total and time.monotonic() - moved < stall_s:
            time.sleep(0.1)
            now_processed = self.processed()
            if now_processed > last:
                last, moved = now_processed, time.monotonic()
        return last >= total

    def behind_s(self, total: int) -> float:
        """Seconds from now until ``total`` readings are stepped (``wait_processed``):
        how far behind the traffic the daemon was when its publishers finished; inf if
        it stalled short of them."""
        published = time.monotonic()
        kept_up = self.wait_processed(total)
        return time.monotonic() - published if kept_up else math.inf

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
    return finish_publishers(start_publishers(port, streams, messages, rate, anomalies))


def start_publishers(
    port: int,
    streams: int,
    messages: int,
    rate: float | None = None,
    anomalies: int = 0,
    *,
    smooth: bool = False,
) -> list[subprocess.Popen[bytes]]:
    """Start the publishers and return at once (a live run measures while they send);
    ``smooth``: each reading sent when it is due, not in bursts (traffic.py)."""
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
        if smooth:
            args.append("--smooth")
        children.append(subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE))
    return children


def finish_publishers(children: list[subprocess.Popen[bytes]]) -> list[dict[str, Any]]:
    """Wait for the publishers; what each sent (benchmarks/traffic.py's JSON line)."""
    results = []
    for child in children:
        out, _ = child.communicate(timeout=900)
        if child.returncode != 0:
            raise BenchmarkError(f"publisher exited with {child.returncode}")
        results.append(json.loads(out))
    return results


def stop_publishers(children: list[subprocess.Popen[bytes]]) -> None:
    """End publishers still sending (a run that failed half-way must not leave them)."""
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()


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
        """Until no alert has arrived for ``quiet_s`` since this call or the latest alert
        (at most ``longest_s``). The quiet is counted from the call at the earliest: the
        daemon counts a reading stepped before its alert is published, so alerts may still
        be on their way when the last reading is counted."""
        deadline = time.monotonic() + longest_s
        self._last = max(self._last, time.time())
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


@dataclass
class AlertTimes:
    """The spikes a run injected, and the latency of each one that raised an alert, split
    into its legs by the alert's own ``received_at`` and ``published_at``."""

    injected: int
    latencies_ms: list[float]
    legs_ms: dict[str, list[float]]

    def leg_percentiles(self) -> dict[str, dict[str, float]]:
        return {
            leg: {
                "p50": round(float(np.percentile(v, 50)), 2),
                "p99": round(float(np.percentile(v, 99)), 2),
            }
            for leg, v in self.legs_ms.items()
            if v
        }


def alert_times(
    sent: list[dict[str, Any]], raised: list[tuple[str, float, float, float, float]]
) -> AlertTimes:
    """Match the publishers' injected spikes (stream, ts) with the alerts raised on them."""
    injected = [(str(i["stream"]), float(i["ts"])) for s in sent for i in s["injected"]]
    arrivals = {(r[0], round(r[1], 6)): r for r in raised}
    matched = [
        arrivals[(stream, round(ts, 6))]
        for stream, ts in injected
        if (stream, round(ts, 6)) in arrivals
    ]
    return AlertTimes(
        injected=len(injected),
        latencies_ms=[1000.0 * (arrived - ts) for _, ts, arrived, _, _ in matched],
        legs_ms={
            "to_sensord": [1000.0 * (received - ts) for _, ts, _, received, _ in matched],
            "in_sensord": [
                1000.0 * (published - received) for _, _, _, received, published in matched
            ],
            "to_subscriber": [
                1000.0 * (arrived - published) for _, _, arrived, _, published in matched
            ],
        },
    )


class LiveSubscriber:
    """The do-nothing paho subscriber (``subscribers.py limit --phase live``) taking live
    traffic beside the daemon: its CPU read from /proc and its count marked at the moments
    the benchmark reads the daemon's, so both are measured over the same window."""

    def __init__(self, port: int, log: Path) -> None:
        args = [sys.executable, "-m", "benchmarks.subscribers", "limit", "--port", str(port)]
        args += ["--client-id", "bench-yardstick", "--phase", "live"]
        with log.open("ab") as errors:
            self.process = subprocess.Popen(
                args, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors
            )
        self.log = log
        if self.process.stdin is None or self.process.stdout is None:  # (PIPE: never)
            self.kill()
            raise BenchmarkError("the live subscriber has no pipes")
        self._stdin, self._stdout = self.process.stdin, self.process.stdout
        # It says so once its subscription is acknowledged: traffic sent before would miss it.
        if self._stdout.readline().strip() != b"subscribed":
            self.kill()
            raise BenchmarkError(f"the live subscriber did not subscribe; see {log}")

    def mark(self) -> float:
        """Its CPU seconds now; and it notes its count now, read back by ``finish``."""
        cpu = process_cpu_s(self.process.pid)
        self._stdin.write(b"mark\n")
        self._stdin.flush()
        return cpu

    def finish(self) -> list[int]:
        """Stop it; the count at each mark, in order."""
        self._stdin.close()  # end of input: it disconnects and reports
        out = self._stdout.read()
        if self.process.wait(timeout=30) != 0:
            raise BenchmarkError(f"the live subscriber failed; see {self.log}")
        return [int(count) for count in json.loads(out)["marks"]]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def latency_percentiles(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of a run's latencies (NaN without any), rounded to 0.01 ms."""
    if not latencies_ms:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan}
    values = np.asarray(latencies_ms)
    return {
        "p50": round(float(np.percentile(values, 50)), 2),
        "p99": round(float(np.percentile(values, 99)), 2),
        "max": round(float(values.max()), 2),
    }
