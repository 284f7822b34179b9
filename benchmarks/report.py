"""The throughput benchmark's report: headline figures, targets, the printed table."""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.throughput import LatencyRun, StreamRun

HEADLINE_STREAMS = 1000
MEMORY_STREAMS = 10_000
TARGETS = {
    "ratio_sensord_over_limit": (">=", 0.8),
    "ratio_sensord_over_naive": (">=", 8.0),
    "latency_p99_ms": ("<=", 25.0),
    "rss_mb_10000_streams": ("<=", 150.0),
    "ready_s": ("<=", 2.0),
}


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
