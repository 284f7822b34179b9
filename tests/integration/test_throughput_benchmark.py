"""benchmarks/throughput.py --quick as a user runs it: it works and reports every figure.

A smoke run: it checks the benchmark still measures what it says, never how fast anything
is (speed is the benchmark's own report, not a test's assertion).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensord.cli.broker import mosquitto_binary

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    if mosquitto_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("CI requires Mosquitto: install it (apt-get install mosquitto)")
        pytest.skip("the throughput benchmark measures against Mosquitto, not installed here")
    out = tmp_path / "throughput.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/throughput.py", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "targets:" in done.stdout
    report = json.loads(out.read_text())
    for key in ("ratio_sensord_over_limit", "ratio_sensord_over_naive", "rss_mb_10000_streams"):
        assert isinstance(report[key], float) and report[key] > 0, key
    assert 0 < report["ready_s"] < 60
    latency = report["latency_ms"]
    assert all(math.isfinite(latency[p]) and latency[p] > 0 for p in ("p50", "p99", "max"))
    assert [run["streams"] for run in report["runs"]] == [1, 10, 100, 1000, 10_000]
    for run in report["runs"]:
        for consumer in ("limit", "sensord", "naive"):
            assert run[consumer]["rate_msg_s"] > 0 and run[consumer]["cpu_s"] > 0
    assert report["latency"]["caught"] > 0  # spikes were injected and alerted on
    assert report["latency"]["processed"] == report["latency"]["sent"]  # nothing lost
    # each leg of the latency, and whether the box was too busy to trust the figures
    legs = report["latency_runs"][0]["legs_ms"]
    assert set(legs) == {"to_sensord", "in_sensord", "to_subscriber"}, legs
    assert all(math.isfinite(leg["p99"]) for leg in legs.values())
    assert isinstance(report["load"]["busy"], bool) and "cores" in report["load"]["why"]
    # CPU per reading at a live rate, beside the do-nothing subscriber's on the same traffic
    # (one run a linger: off, then as shipped, each against the one before)
    runs = report["live_rates"]["runs"]
    assert [run["linger_ms"] for run in runs] == report["live_rates"]["lingers_ms"] == [0.0, 5.0]
    assert len(report["live_rates"]["lingers_against_first"]) == 1
    live = runs[-1]
    assert report["live_rates"]["window_s"] > 0
    sensord, yardstick = live["sensord"], live["yardstick"]
    for key in ("cpu_us_per_reading", "core_share", "mean_batch", "mean_wave"):
        assert math.isfinite(sensord[key]) and sensord[key] > 0, key
    assert sensord["readings"] > 0 and yardstick["readings"] > 0
    assert math.isfinite(yardstick["cpu_us_per_reading"]) and yardstick["cpu_us_per_reading"] > 0
    assert live["ratio_cpu_sensord_over_yardstick"] > 0
    assert all(
        math.isfinite(live["latency_ms"][p]) and live["latency_ms"][p] > 0 for p in ("p50", "p99")
    )
    assert live["caught"] > 0 and live["processed"] == live["sent"]
    assert report["live_cpu_us_per_reading"][f"{live['streams']}x{live['per_stream_rate']:g}"] > 0
