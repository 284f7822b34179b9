"""Live rates: what a reading costs the daemon when readings come at a sensor's pace.

Part of benchmarks/throughput.py (``--only live`` runs this section alone). A backlog drain
makes waves wide, so per-batch costs are shared by hundreds of readings; live traffic does
not: at 1,000 streams x 2 readings/s a micro-batch holds a few readings, and what a batch
costs is paid by those few. For each rate (streams x readings/s per stream), on a broker of
its own:

- the real daemon (``sensord run``, acks, journal and outbox on, as the latency runs start
  it), the alert watcher and the **yardstick**, a do-nothing paho subscriber
  (``subscribers.py limit --phase live``), all subscribed before anything is sent;
- two publishers send at the rate, each reading when it is due (``traffic.py --smooth``:
  one by one, as independent sensors send, not in the bursts of 16 the latency runs use,
  which made micro-batches several times larger), with spikes at known samples, for the
  warm-up, the window and a margin after it (and at least ``least_readings`` per stream,
  so that every spike comes after the stream's first readings);
- **warm-up**: from the daemon's first stepped reading until every stream has sent
  WARM_READINGS (110: its tails have seen the values they need and speak, so the window
  pays for the whole path) and for at least ``warm_s``;
- **window**: ``window_s`` of wall time after the warm-up (full run 30 s, ``--quick`` 2 s).
  Over the window only: the daemon's CPU (``/proc``: user + system, all threads) per
  reading it stepped (its own metrics), its share of one core (CPU over wall time), its
  mean micro-batch (readings over ``sensord_batches_total``) and mean wave (readings per
  batched engine step, the ``sensord_wave_size`` histogram), and the yardstick's CPU per
  reading it received in the same window;
- **latency**, publish to alert, p50/p99 over every spike of the run (not the window only:
  spikes are few).

The yardstick takes the same traffic at the same time as the daemon, so both are measured
on the same box at the same moment: the ratio of the two is the figure to compare between
runs, as everywhere in this benchmark. It costs the box a few per cent of a core beside
the daemon.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.children import (
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
from benchmarks.traffic import WARM_READINGS

FIRST_READING_S = 30.0  # longest wait for the daemon's first stepped reading


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
    warm_s: float  # shortest warm-up, from the first stepped reading
    window_s: float  # the measured window
    margin_s: float  # sending goes on this long after the window
    least_readings: int  # live readings each stream sends at least
    past_tails: bool = True  # warm up until every stream has sent WARM_READINGS
    anomalies: int = 300  # spikes injected (at most one per stream)

    def warm_up_s(self, target: LiveRate) -> float:
        tails = WARM_READINGS / target.per_stream if self.past_tails else 0.0
        return max(self.warm_s, tails)

    def sending_s(self, target: LiveRate) -> float:
        measured = self.warm_up_s(target) + self.window_s + self.margin_s
        return max(measured, self.least_readings / target.per_stream)

    def as_dict(self) -> dict[str, Any]:
        tails = f"every stream's first {WARM_READINGS} readings, and " if self.past_tails else ""
        return {
            "warm_up": f"{tails}at least {self.warm_s:g} s from the first stepped reading",
            "window_s": self.window_s,
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
            "behind_s": round(self.behind_s, 2),
            "load_before": self.load_before,
        }


def _per(amount: float, over: float) -> float:
    return amount / over if over > 0 else math.nan


def measure_live(
    port: int, daemon: DaemonProcess, target: LiveRate, scale: LiveScale, work: Path
) -> LiveRun:
    """One live rate on the broker at ``port``; ``daemon`` is configured, not started."""
    ready_s = daemon.start()
    watcher = AlertWatcher(port)
    yardstick: LiveSubscriber | None = None
    publishers: list[subprocess.Popen[bytes]] = []
    try:
        yardstick = LiveSubscriber(port, work / f"yardstick-{target.label}.log")
        messages = round(target.rate * scale.sending_s(target))
        anomalies = min(scale.anomalies, target.streams)
        publishers = start_publishers(
            port, target.streams, messages, target.rate, anomalies, smooth=True
        )
        _first_reading(daemon)
        time.sleep(scale.warm_up_s(target))
        start = _mark(daemon, yardstick)
        time.sleep(scale.window_s)
        end = _mark(daemon, yardstick)
        sent = finish_publishers(publishers)
        total = sum(int(s["messages"]) for s in sent)
        published = time.monotonic()
        kept_up = daemon.wait_processed(total)
        behind_s = time.monotonic() - published if kept_up else math.inf
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
        latencies_ms=alerts.latencies_ms,
        legs_ms=alerts.leg_percentiles(),
        behind_s=behind_s,
        ready_s=ready_s,
    )


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


def print_live_table(runs: Sequence[LiveRun], scale: LiveScale) -> None:
    print(
        f"\nlive rates: sensord's CPU over a {scale.window_s:g} s window after warm-up, beside "
        "a do-nothing paho subscriber on the same traffic (yardstick); latency over every "
        "spike:"
    )
    print(
        f"{'streams':>8} {'per stream/s':>12} {'msg/s':>7} {'CPU us/reading':>15} "
        f"{'core %':>7} {'batch':>6} {'wave':>6} {'paho us/reading':>16} {'s/paho':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'behind s':>9} {'spikes':>8}"
    )
    for run in runs:
        p = run.percentiles()
        print(
            f"{run.target.streams:>8} {run.target.per_stream:>12g} {run.target.rate:>7,.0f} "
            f"{run.cpu_us_per_reading:>15.1f} {100 * run.core_share:>7.1f} "
            f"{run.mean_batch:>6.1f} {run.mean_wave:>6.1f} "
            f"{run.yardstick_us_per_reading:>16.1f} {run.ratio:>7.1f} {p['p50']:>7} "
            f"{p['p99']:>7} {run.behind_s:>9.2f} {len(run.latencies_ms):>4}/{run.injected:<3}"
        )
