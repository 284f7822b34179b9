"""Throughput and latency: sensord against the paho limit and a naive daemon, in one run.

``python benchmarks/throughput.py [--quick] [--json OUT.json]``

It starts its own Mosquitto on a free port, trains a 2x64 bundle on generated data, and for
1, 100, 1,000 and 10,000 streams measures on the same traffic (JSON ``{"value", "ts"}``
readings at QoS 1, published by separate processes):

- **limit**: a paho subscriber that only counts messages (benchmarks/subscribers.py);
- **sensord**: the real daemon (``sensord run``), readings it stepped per second as its own
  metrics endpoint counts them, and its CPU seconds per 1,000 readings;
- **naive**: a paho subscriber stepping the torch LSTM once per message in ``on_message``.

Each rate is a **backlog drain**: the consumer's persistent session is created, the
publishers queue N readings in the broker, then the consumer comes back and takes them as
fast as it can, timed from 5 % to 95 % of N. Nothing else competes for the two cores while
a consumer drains, so the figures compare consumers and not how fast this box can also
publish. Then **latency**: sensord at 1,000 streams fed live at half its measured rate with
spikes at known samples; publish time (the payload's ``ts``) to the alert's arrival at a
subscriber, p50/p99/max. **Memory** is the daemon's RSS after the 10,000-stream drain;
**ready** is launch to systemd READY (``NOTIFY_SOCKET``), the daemon's own word.

The table goes to stdout; ``--json`` writes the raw figures with the headline ratios at the
top level. Ratios from one run are what count: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.traffic import FILTER
from sensord.broker import LocalBroker, free_port, start_mosquitto
from sensord.timestamps import parse_timestamp

REPO = Path(__file__).resolve().parents[1]
STREAM_COUNTS = (1, 100, 1000, 10_000)
HEADLINE_STREAMS = 1000
MEMORY_STREAMS = 10_000
PUBLISHERS = 2
# The broker as deploy/mosquitto/sensord.conf sizes it: every queued reading kept, and 512
# in flight to a client.
BROKER_CONFIG = "max_queued_messages 0\nmax_inflight_messages 512\n"
PROCESSED = (
    "sensord_readings_scored_total",
    "sensord_readings_first_total",
    "sensord_readings_duplicate_total",
    "sensord_readings_late_total",
)
POLL_S = 0.1
STALL_S = 60.0
READY_TIMEOUT_S = 60.0
TARGETS = {
    "ratio_sensord_over_limit": (">=", 0.8),
    "ratio_sensord_over_naive": (">=", 8.0),
    "latency_p99_ms": ("<=", 25.0),
    "rss_mb_10000_streams": ("<=", 150.0),
    "ready_s": ("<=", 2.0),
}


@dataclass(frozen=True)
class Scale:
    messages: int  # readings per drain
    latency_s: float  # length of the live latency run
    anomalies: int  # spikes injected in it
    epochs: int  # training epochs of the benchmark's bundle


FULL = Scale(messages=100_000, latency_s=20.0, anomalies=300, epochs=40)
QUICK = Scale(messages=6_000, latency_s=5.0, anomalies=30, epochs=3)


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


@dataclass
class StreamRun:
    streams: int
    limit: Drain
    sensord: Drain
    naive: Drain
    ready_s: float
    rss_mb: float
    preload_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "limit": self.limit.as_dict(),
            "sensord": self.sensord.as_dict(),
            "naive": self.naive.as_dict(),
            "ratio_sensord_over_limit": round(self.sensord.rate / self.limit.rate, 3),
            "ratio_sensord_over_naive": round(self.sensord.rate / self.naive.rate, 2),
            "sensord_ready_s": round(self.ready_s, 3),
            "sensord_rss_mb": round(self.rss_mb, 1),
            "preload_s": round(self.preload_s, 2),
        }


@dataclass
class LatencyRun:
    streams: int
    rate_msg_s: float
    sent: int
    processed: int
    injected: int
    caught: int
    other_alerts: int
    latencies_ms: list[float] = field(default_factory=list)
    ready_s: float = math.nan
    # Where the time went, from the alert's received_at/published_at (millisecond clocks).
    legs_ms: dict[str, dict[str, float]] = field(default_factory=dict)

    def percentiles(self) -> dict[str, float]:
        if not self.latencies_ms:
            return {"p50": math.nan, "p99": math.nan, "max": math.nan}
        values = np.asarray(self.latencies_ms)
        return {
            "p50": round(float(np.percentile(values, 50)), 2),
            "p99": round(float(np.percentile(values, 99)), 2),
            "max": round(float(values.max()), 2),
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


# the reference consumers and the publishers


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


# set-up


@dataclass(frozen=True)
class Model:
    bundle: Path
    weights: Path
    train_s: float


def train_model(work: Path, epochs: int) -> Model:
    """A 2x64 bundle on generated data, and the same network's torch weights for naive."""
    import torch

    from sensord.synthetic import generate, write_csv
    from sensord.training.fit import FitOptions
    from sensord.training.train import TrainOptions, train_bundle

    history = work / "history.csv"
    write_csv(history, generate(1500, seed=0))
    options = TrainOptions(name="bench", fit=FitOptions(epochs=epochs, hidden=64, layers=2))
    report = train_bundle(history, work / "bundle", options)
    weights = work / "weights.pt"
    torch.save(report.model.state_dict(), weights)
    return Model(work / "bundle", weights, report.seconds)


def write_config(work: Path, name: str, port: int, bundle: Path, metrics_port: int) -> Path:
    state = work / f"state-{name}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    config = work / f"sensord-{name}.toml"
    config.write_text(
        f"""[mqtt]
host = "127.0.0.1"
port = {port}
client_id = "bench-sensord"

[[routes]]
name = "bench"
topic = "{FILTER}"
bundle = "{bundle}"

[state]
dir = "{state}"

[metrics]
port = {metrics_port}

[logging]
format = "json"
"""
    )
    return config


@contextmanager
def broker() -> Iterator[LocalBroker]:
    started = start_mosquitto(extra_config=BROKER_CONFIG)
    try:
        yield started
    finally:
        started.stop()


# the runs


def run_streams(work: Path, model: Model, streams: int, messages: int) -> StreamRun:
    """Drain the same backlog with limit, sensord and naive."""
    with broker() as mqtt:
        metrics_port = free_port()
        config = write_config(work, str(streams), mqtt.port, model.bundle, metrics_port)
        daemon = DaemonProcess(config, metrics_port, work / f"sensord-{streams}.log")
        for kind in ("limit", "naive"):
            subscriber(kind, "subscribe", mqtt.port)
        daemon.start()  # creates its session and subscription
        daemon.stop()
        started = time.monotonic()
        publish(mqtt.port, streams, messages)
        preload_s = time.monotonic() - started

        limit = subscriber("limit", "drain", mqtt.port, messages)
        ready_s = daemon.start()
        try:
            sensord = daemon.drain(messages)
            rss = daemon.rss_mb()
        finally:
            daemon.stop()
        naive = subscriber(
            "naive", "drain", mqtt.port, messages, bundle=model.bundle, weights=model.weights
        )
    return StreamRun(streams, limit, sensord, naive, ready_s, rss, preload_s)


class AlertWatcher:
    """Subscribes to sensord's alerts and notes when each arrives."""

    def __init__(self, port: int) -> None:
        # stream, reading ts, arrival, and the daemon's received_at / published_at
        self.raised: list[tuple[str, float, float, float, float]] = []
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

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        arrived = time.time()
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


def run_latency(work: Path, model: Model, streams: int, rate: float, scale: Scale) -> LatencyRun:
    """Live traffic at ``rate`` with spikes at known samples; publish-to-alert latency."""
    with broker() as mqtt:
        metrics_port = free_port()
        config = write_config(work, "latency", mqtt.port, model.bundle, metrics_port)
        daemon = DaemonProcess(config, metrics_port, work / "sensord-latency.log")
        ready_s = daemon.start()
        watcher = AlertWatcher(mqtt.port)
        try:
            messages = int(rate * scale.latency_s)
            sent = publish(mqtt.port, streams, messages, rate=rate, anomalies=scale.anomalies)
            total = sum(int(s["messages"]) for s in sent)
            deadline = time.monotonic() + 30
            while daemon.processed() < total and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)  # the last alerts on their way
            processed = daemon.processed()
        finally:
            watcher.stop()
            daemon.stop()
    injected = [(str(i["stream"]), float(i["ts"])) for s in sent for i in s["injected"]]
    arrivals = {(r[0], round(r[1], 6)): r for r in watcher.raised}
    matched = [
        arrivals[(stream, round(ts, 6))]
        for stream, ts in injected
        if (stream, round(ts, 6)) in arrivals
    ]
    latencies = [1000.0 * (arrived - ts) for _, ts, arrived, _, _ in matched]
    legs = {
        "to_sensord": [1000.0 * (received - ts) for _, ts, _, received, _ in matched],
        "in_sensord": [1000.0 * (published - received) for _, _, _, received, published in matched],
        "to_subscriber": [
            1000.0 * (arrived - published) for _, _, arrived, _, published in matched
        ],
    }
    return LatencyRun(
        streams=streams,
        rate_msg_s=rate,
        sent=total,
        processed=processed,
        injected=len(injected),
        caught=len(latencies),
        other_alerts=len(watcher.raised) - len(latencies),
        latencies_ms=latencies,
        ready_s=ready_s,
        legs_ms={
            leg: {
                "p50": round(float(np.percentile(v, 50)), 2),
                "p99": round(float(np.percentile(v, 99)), 2),
            }
            for leg, v in legs.items()
            if v
        },
    )


# report


def summary(runs: Sequence[StreamRun], latency: LatencyRun | None) -> dict[str, Any]:
    by_streams = {r.streams: r for r in runs}
    headline = by_streams.get(HEADLINE_STREAMS)
    memory = by_streams.get(MEMORY_STREAMS)
    ready = [r.ready_s for r in runs] + ([latency.ready_s] if latency else [])
    result: dict[str, Any] = {
        "ratio_sensord_over_limit": round(headline.sensord.rate / headline.limit.rate, 3)
        if headline
        else None,
        "ratio_sensord_over_naive": round(headline.sensord.rate / headline.naive.rate, 2)
        if headline
        else None,
        "latency_ms": latency.percentiles() if latency else None,
        "rss_mb_10000_streams": round(memory.rss_mb, 1) if memory else None,
        "ready_s": round(max(ready), 3) if ready else None,
    }
    result["targets"] = _targets(result)
    return result


def _targets(result: dict[str, Any]) -> dict[str, Any]:
    values = {
        "ratio_sensord_over_limit": result["ratio_sensord_over_limit"],
        "ratio_sensord_over_naive": result["ratio_sensord_over_naive"],
        "latency_p99_ms": (result["latency_ms"] or {}).get("p99"),
        "rss_mb_10000_streams": result["rss_mb_10000_streams"],
        "ready_s": result["ready_s"],
    }
    met = {}
    for key, (op, target) in TARGETS.items():
        value = values[key]
        ok = (
            None
            if value is None or math.isnan(value)
            else (value >= target if op == ">=" else value <= target)
        )
        met[key] = {"value": value, "target": f"{op} {target}", "met": ok}
    return met


def print_table(runs: Sequence[StreamRun], latency: LatencyRun | None, top: dict[str, Any]) -> None:
    header = (
        f"{'streams':>8} {'limit msg/s':>12} {'sensord msg/s':>14} {'naive msg/s':>12} "
        f"{'s/limit':>8} {'s/naive':>8} {'CPU s/1k msgs: limit':>21} {'sensord':>8} "
        f"{'naive':>8} {'RSS MB':>7} {'ready s':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        print(
            f"{r.streams:>8} {r.limit.rate:>12,.0f} {r.sensord.rate:>14,.0f} "
            f"{r.naive.rate:>12,.0f} {r.sensord.rate / r.limit.rate:>8.2f} "
            f"{r.sensord.rate / r.naive.rate:>8.1f} "
            f"{r.limit.cpu_ms_per_1000 / 1000:>21.3f} {r.sensord.cpu_ms_per_1000 / 1000:>8.3f} "
            f"{r.naive.cpu_ms_per_1000 / 1000:>8.3f} {r.rss_mb:>7.0f} {r.ready_s:>8.2f}"
        )
    if latency is not None:
        p = latency.percentiles()
        print(
            f"\nlatency at {latency.streams} streams, {latency.rate_msg_s:,.0f} msg/s "
            f"(half of sensord's measured rate): p50 {p['p50']} ms, p99 {p['p99']} ms, "
            f"max {p['max']} ms; {latency.caught}/{latency.injected} spikes alerted, "
            f"{latency.other_alerts} other alerts; {latency.processed}/{latency.sent} stepped"
        )
        legs = ", ".join(
            f"{leg} p50 {v['p50']} / p99 {v['p99']} ms" for leg, v in latency.legs_ms.items()
        )
        print(f"  where it went: {legs}")
    print("\ntargets:")
    for key, t in top["targets"].items():
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        print(f"  {key:<26} {t['value']!s:>10}  (target {t['target']}): {verdict}")


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under two minutes")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument(
        "--streams",
        type=lambda text: [int(v) for v in text.split(",")],
        default=list(STREAM_COUNTS),
        help="stream counts, comma-separated (default 1,100,1000,10000)",
    )
    parser.add_argument("--messages", type=int, help="readings per drain (default by scale)")
    parser.add_argument("--keep", type=Path, help="keep the work directory (logs) here")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    messages = args.messages or scale.messages
    work = args.keep or Path(tempfile.mkdtemp(prefix="sensord-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        model = train_model(work, scale.epochs)
        print(
            f"bundle: 2x64 LSTM trained in {model.train_s:.1f} s; {messages:,} readings per drain"
        )
        runs = []
        for streams in args.streams:
            run = run_streams(work, model, streams, max(messages, 2 * streams))
            runs.append(run)
            print(
                f"  {streams:>6} streams: limit {run.limit.rate:,.0f}/s, sensord "
                f"{run.sensord.rate:,.0f}/s, naive {run.naive.rate:,.0f}/s",
                flush=True,
            )
        target = next((r for r in runs if r.streams == HEADLINE_STREAMS), runs[-1])
        latency = run_latency(work, model, target.streams, target.sensord.rate / 2, scale)
        top = summary(runs, latency)
        print()
        print_table(runs, latency, top)
        report = {
            **top,
            "quick": args.quick,
            "seconds": round(time.monotonic() - started, 1),
            "machine": machine(),
            "method": "backlog drain per consumer (5-95 % of N), then live latency at half rate",
            "bundle": {"layers": 2, "hidden": 64, "train_s": round(model.train_s, 2)},
            "runs": [r.as_dict() for r in runs],
            "latency": {**asdict(latency), "percentiles": latency.percentiles()},
        }
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
            print(f"\nwrote {args.json}")
    except BenchmarkError as exc:
        print(f"throughput: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
