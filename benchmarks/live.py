"""Live rates: what a reading costs the daemon when readings come at a sensor's pace.

Part of benchmarks/throughput.py (``--only live`` runs this section alone). A backlog drain
makes waves wide, so per-batch costs are shared by hundreds of readings; live traffic does
not: at 1,000 streams x 2 readings/s a micro-batch holds a few readings, and what a batch
costs is paid by those few. ``[batching] max_delay_ms`` lets the daemon linger for more
(sensord/daemon/stages.py ``Linger``), at a cost in latency; each rate runs once per linger
(``LiveScale.lingers_ms``: off, then the shipped default), one after the other, and the
table puts each beside the first (ratios, as everywhere in this benchmark). For each rate
(streams x readings/s per stream) and linger, on a broker of its own:

- the real daemon (``sensord run``, acks, journal and outbox on, as the latency runs start
  it) starting from a **warm state**: every stream past its tails' warm-up (throughput.py
  drains WARM_READINGS and a few per stream through the daemon once per stream count and
  each run starts from a copy of what it saved), so that the spikes of a short run raise
  alerts and the window pays for the whole path; beside it the alert watcher and the
  **yardstick**, a do-nothing paho subscriber (``subscribers.py limit --phase live``), all
  subscribed before anything is sent;
- two publishers send at the rate, each reading when it is due (``traffic.py --smooth``:
  one by one, as independent sensors send, not in the bursts of 16 the latency runs use,
  which made micro-batches several times larger), with spikes at known samples, for the
  warm-up, the window and a margin after it;
- **warm-up**: ``warm_s`` from the daemon's first stepped reading (the first reading of
  each stream after the warm state's gap waits out its reorder window meanwhile);
- **window**: ``window_s`` of wall time after the warm-up (full run 20 s, ``--quick`` 2 s).
  Over the window only: the daemon's CPU (``/proc``: user + system, all threads) per
  reading it stepped (its own metrics), its share of one core (CPU over wall time), its
  mean micro-batch (readings over ``sensord_batches_total``) and mean wave (readings per
  batched engine step, the ``sensord_wave_size`` histogram), and the yardstick's CPU per
  reading it received in the same window;
- **latency**, publish to alert, p50/p99 over every spike of the run (not the window only:
  spikes are few).

The yardstick takes the same traffic at the same time as the daemon, so both are measured
on the same box at the same moment: the ratio of the two is the figure to compare between
runs. It costs the box a few per cent of a core beside the daemon.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from benchmarks.children import (
    PUBLISHERS,
    AlertWatcher,
    BenchmarkError,
    DaemonFigures,
    DaemonProcess,
    LiveSubscriber,
    alert_times,
    finish_publishers,
    latency_percentiles,
    start_publishers,
    stop_publishers,
)
from benchmarks.traffic import BASE_ROWS, TOPIC, WARM_READINGS, stream_name
from sensord.offline.synthetic import generate

FIRST_READING_S = 30.0  # longest wait for the daemon's first stepped reading
# A warm state: every stream has stepped this many readings, past its tails' warm-up.
WARM_STATE_READINGS = WARM_READINGS + 10
WARM_SENT_S = 120.0  # longest wait for the broker to take the warm-up readings
# The warm-up readings' step in their own time, ending an hour ago. Any shorter, and the
# live run's first reading of each stream came after a gap (daemon/reorder.py: more than
# 1.5 times the stream's longest recent step): all were held, their acknowledgements held
# back everything after them, and the broker stopped sending until the holds ended.
WARM_STEP_S = 3600.0


@dataclass(frozen=True)
class LiveRate:
    streams: int
    per_stream: float  # readings per second per stream

    @property
    def rate(self) -> float:
        return self.streams * self.per_stream

    @property
    def label(self) -> str:
        return f"{self.streams}x{self.per_stream:g}"


@dataclass(frozen=True)
class LiveScale:
    rates: tuple[LiveRate, ...]
    warm_s: float  # warm-up, from the first stepped reading
    window_s: float  # the measured window
    margin_s: float  # sending goes on this long after the window (and the publishers' start)
    lingers_ms: tuple[float, ...]  # max_delay_ms of each run of a rate; the first: the baseline
    anomalies: int = 300  # spikes injected (at most one per stream)
    repeat: int = 1  # rounds of the lingers at each rate (a busy box drifts between runs)

    @property
    def sending_s(self) -> float:
        return self.warm_s + self.window_s + self.margin_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "warm_up": f"from a warm state, {self.warm_s:g} s from the first stepped reading",
            "window_s": self.window_s,
            "lingers_ms": list(self.lingers_ms),
            "repeat": self.repeat,
        }


@dataclass(frozen=True)
class Mark:
    """The daemon's and the yardstick's figures at one edge of the window."""

    wall: float
    cpu_s: float
    figures: DaemonFigures
    yardstick_cpu_s: float


@dataclass
class LiveRun:
    target: LiveRate
    linger_ms: float  # the daemon's max_delay_ms
    window_s: float  # wall time between the marks
    readings: int  # stepped by the daemon in the window
    cpu_s: float  # the daemon's, in the window
    batches: int
    waves: int
    wave_readings: float
    yardstick_readings: int  # received by the yardstick in the window
    yardstick_cpu_s: float
    sent: int  # the whole run's
    processed: int
    injected: int
    other_alerts: int  # raised on no spike (the warm state's continuation should raise none)
    latencies_ms: list[float]
    legs_ms: dict[str, dict[str, float]]
    behind_s: float  # last reading sent to last one stepped: ~0 when it keeps up
    ready_s: float
    load_before: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_us_per_reading(self) -> float:
        return _per(1e6 * self.cpu_s, self.readings)

    @property
    def core_share(self) -> float:
        return _per(self.cpu_s, self.window_s)

    @property
    def mean_batch(self) -> float:
        return _per(self.readings, self.batches)

    @property
    def mean_wave(self) -> float:
        return _per(self.wave_readings, self.waves)

    @property
    def yardstick_us_per_reading(self) -> float:
        return _per(1e6 * self.yardstick_cpu_s, self.yardstick_readings)

    @property
    def ratio(self) -> float:
        """The daemon's CPU per reading over the yardstick's."""
        return _per(self.cpu_us_per_reading, self.yardstick_us_per_reading)

    def percentiles(self) -> dict[str, float]:
        return latency_percentiles(self.latencies_ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "streams": self.target.streams,
            "per_stream_rate": self.target.per_stream,
            "rate_msg_s": self.target.rate,
            "linger_ms": self.linger_ms,
            "window_s": round(self.window_s, 2),
            "window_rate_msg_s": round(_per(self.readings, self.window_s), 1),
            "sensord": {
                "readings": self.readings,
                "cpu_s": round(self.cpu_s, 3),
                "cpu_us_per_reading": round(self.cpu_us_per_reading, 1),
                "core_share": round(self.core_share, 3),
                "batches": self.batches,
                "mean_batch": round(self.mean_batch, 2),
                "mean_wave": round(self.mean_wave, 2),
                "ready_s": round(self.ready_s, 3),
            },
            "yardstick": {
                "readings": self.yardstick_readings,
                "cpu_s": round(self.yardstick_cpu_s, 3),
                "cpu_us_per_reading": round(self.yardstick_us_per_reading, 1),
            },
            "ratio_cpu_sensord_over_yardstick": round(self.ratio, 2),
            "latency_ms": self.percentiles(),
            "legs_ms": self.legs_ms,
            "sent": self.sent,
            "processed": self.processed,
            "injected": self.injected,
            "caught": len(self.latencies_ms),
            "other_alerts": self.other_alerts,
            "behind_s": round(self.behind_s, 2),
            "load_before": self.load_before,
        }


def _per(amount: float, over: float) -> float:
    return amount / over if over > 0 else math.nan


def measure_live(
    port: int,
    daemon: DaemonProcess,
    target: LiveRate,
    scale: LiveScale,
    work: Path,
    *,
    linger_ms: float,
) -> LiveRun:
    """One live rate on the broker at ``port``; ``daemon`` is configured (with ``linger_ms``
    and a warm state), not started."""
    ready_s = daemon.start()
    watcher = AlertWatcher(port)
    yardstick: LiveSubscriber | None = None
    publishers: list[subprocess.Popen[bytes]] = []
    try:
        yardstick = LiveSubscriber(port, work / f"yardstick-{target.label}-{linger_ms:g}.log")
        messages = round(target.rate * scale.sending_s)
        anomalies = min(scale.anomalies, target.streams)
        publishers = start_publishers(
            port, target.streams, messages, target.rate, anomalies, smooth=True
        )
        _first_reading(daemon)
        time.sleep(scale.warm_s)
        start = _mark(daemon, yardstick)
        time.sleep(scale.window_s)
        end = _mark(daemon, yardstick)
        sent = finish_publishers(publishers)
        total = sum(int(s["messages"]) for s in sent)
        behind_s = daemon.behind_s(total)
        watcher.wait_quiet(1.0)  # the last alerts on their way
        processed = daemon.processed()
        counts = yardstick.finish()
    finally:
        stop_publishers(publishers)
        if yardstick is not None:
            yardstick.kill()
        watcher.stop()
        daemon.stop()
    alerts = alert_times(sent, watcher.raised)
    return LiveRun(
        target=target,
        linger_ms=linger_ms,
        window_s=end.wall - start.wall,
        readings=end.figures.processed - start.figures.processed,
        cpu_s=end.cpu_s - start.cpu_s,
        batches=end.figures.batches - start.figures.batches,
        waves=end.figures.waves - start.figures.waves,
        wave_readings=end.figures.wave_readings - start.figures.wave_readings,
        yardstick_readings=counts[1] - counts[0],
        yardstick_cpu_s=end.yardstick_cpu_s - start.yardstick_cpu_s,
        sent=total,
        processed=processed,
        injected=alerts.injected,
        other_alerts=len(watcher.raised) - len(alerts.latencies_ms),
        latencies_ms=alerts.latencies_ms,
        legs_ms=alerts.leg_percentiles(),
        behind_s=behind_s,
        ready_s=ready_s,
    )


def warm_values(streams: int) -> np.ndarray:
    """[stream, reading]: the first WARM_STATE_READINGS values each stream's live traffic
    sends, backwards, so that a warm state's last value is the live run's first.

    Warmed with the live values in their order, the live run jumped back to the series'
    start: a third of the streams raised an alert on it and missed their spike inside it.
    The values are traffic.py's: publisher j's generated series (seed j) from the stream's
    offset (stream x 37), the streams split between PUBLISHERS as children.py splits them.
    """
    parts = min(PUBLISHERS, streams)
    bounds = np.linspace(0, streams, parts + 1).astype(int)
    backwards = np.arange(WARM_STATE_READINGS)[::-1]
    values = np.empty((streams, WARM_STATE_READINGS))
    for j in range(parts):
        base = generate(BASE_ROWS, seed=j).values
        for stream in range(bounds[j], bounds[j + 1]):
            values[stream] = base[(stream * 37 + backwards) % BASE_ROWS]
    return values


def publish_warm(port: int, streams: int) -> int:
    """Publish ``warm_values`` at QoS 1, round-robin over the streams, as fast as paho
    goes, WARM_STEP_S apart in their own time; returns how many."""
    values = warm_values(streams)
    start = time.time() - WARM_STEP_S * values.shape[1]
    topics = [TOPIC.format(stream=stream_name(i)) for i in range(streams)]
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for k in range(values.shape[1]):
            ts = start + k * WARM_STEP_S
            for i, topic in enumerate(topics):
                payload = orjson.dumps({"value": round(float(values[i, k]), 5), "ts": ts})
                info = client.publish(topic, payload, qos=1)
            # A round at a time: paho numbers unacknowledged messages with 16-bit ids.
            info.wait_for_publish(WARM_SENT_S)
            if not info.is_published():
                raise BenchmarkError("the broker did not take the warm-up readings")
    finally:
        client.disconnect()
        client.loop_stop()
    return values.size


def _first_reading(daemon: DaemonProcess) -> None:
    """Until the daemon has stepped a reading: the warm-up counts from the traffic's start,
    not from the publishers' launch (their imports take a second or so)."""
    deadline = time.monotonic() + FIRST_READING_S
    while daemon.processed() == 0:
        if time.monotonic() > deadline:
            raise BenchmarkError(f"sensord stepped nothing in {FIRST_READING_S} s")
        time.sleep(0.05)


def _mark(daemon: DaemonProcess, yardstick: LiveSubscriber) -> Mark:
    # CPU before the scrape, at both edges: the window holds the cost of exactly one scrape.
    wall, cpu = time.monotonic(), daemon.cpu_s()
    return Mark(wall, cpu, daemon.figures(), yardstick.mark())


def compared(runs: Sequence[LiveRun]) -> list[dict[str, Any]]:
    """Each run beside the latest run of its rate with the baseline linger (the rate's
    first run's; with ``--repeat``, each round against its own): the ratios of CPU per
    reading, share of a core and mean batch, and the latency added (ms, p50 and p99)."""
    baseline_ms: dict[str, float] = {}
    latest: dict[str, LiveRun] = {}
    rows = []
    for run in runs:
        label = run.target.label
        if baseline_ms.setdefault(label, run.linger_ms) == run.linger_ms:
            latest[label] = run
            continue
        base = latest[label]
        p, b = run.percentiles(), base.percentiles()
        rows.append(
            {
                "rate": run.target.label,
                "linger_ms": run.linger_ms,
                "against_linger_ms": base.linger_ms,
                "cpu_per_reading_ratio": round(
                    _per(run.cpu_us_per_reading, base.cpu_us_per_reading), 3
                ),
                "core_share_ratio": round(_per(run.core_share, base.core_share), 3),
                "mean_batch_ratio": round(_per(run.mean_batch, base.mean_batch), 2),
                "p50_added_ms": round(p["p50"] - b["p50"], 2),
                "p99_added_ms": round(p["p99"] - b["p99"], 2),
            }
        )
    return rows


def print_live_table(runs: Sequence[LiveRun], scale: LiveScale) -> None:
    print(
        f"\nlive rates: sensord's CPU over a {scale.window_s:g} s window after warm-up, beside "
        "a do-nothing paho subscriber on the same traffic (yardstick); latency over every "
        "spike; linger: [batching] max_delay_ms:"
    )
    print(
        f"{'streams':>8} {'per stream/s':>12} {'msg/s':>7} {'linger ms':>9} "
        f"{'CPU us/reading':>15} {'core %':>7} {'batch':>6} {'wave':>6} "
        f"{'paho us/reading':>16} {'s/paho':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'behind s':>9} {'spikes':>8}"
    )
    for run in runs:
        p = run.percentiles()
        print(
            f"{run.target.streams:>8} {run.target.per_stream:>12g} {run.target.rate:>7,.0f} "
            f"{run.linger_ms:>9g} {run.cpu_us_per_reading:>15.1f} {100 * run.core_share:>7.1f} "
            f"{run.mean_batch:>6.1f} {run.mean_wave:>6.1f} "
            f"{run.yardstick_us_per_reading:>16.1f} {run.ratio:>7.1f} {p['p50']:>7} "
            f"{p['p99']:>7} {run.behind_s:>9.2f} {len(run.latencies_ms):>4}/{run.injected:<3}"
        )
    rows = compared(runs)
    if not rows:
        return
    print("\neach linger against the run without it just before (CPU, core share, batch: ratios):")
    print(
        f"{'rate':>8} {'linger ms':>9} {'vs ms':>6} {'CPU/reading':>11} {'core':>6} "
        f"{'batch':>6} {'p50 +ms':>8} {'p99 +ms':>8}"
    )
    for row in rows:
        print(
            f"{row['rate']:>8} {row['linger_ms']:>9g} {row['against_linger_ms']:>6g} "
            f"{row['cpu_per_reading_ratio']:>11.2f} {row['core_share_ratio']:>6.2f} "
            f"{row['mean_batch_ratio']:>6.2f} {row['p50_added_ms']:>8.2f} "
            f"{row['p99_added_ms']:>8.2f}"
        )
