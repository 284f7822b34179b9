"""benchmarks/throughput.py's live-rate section (benchmarks/live.py): each rate with the
linger off and as shipped, from a warm state.

The smoke run checks that the benchmark measures what it says (both lingers run, every
spike raises its alert), never how fast anything is.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.live import WARM_STATE_READINGS, LiveRate, LiveRun, compared, warm_values
from benchmarks.throughput import SHIPPED_LINGER_MS, parse_args, scale_of
from benchmarks.traffic import BASE_ROWS
from sensord.config.sections import BatchingSettings
from sensord.offline.synthetic import generate

REPO = Path(__file__).resolve().parents[2]


def run(label: str, linger_ms: float, cpu_s: float, batches: int, p99: float) -> LiveRun:
    streams, per = label.split("x")
    return LiveRun(
        target=LiveRate(int(streams), float(per)),
        linger_ms=linger_ms,
        window_s=10.0,
        readings=10_000,
        cpu_s=cpu_s,
        batches=batches,
        waves=batches,
        wave_readings=10_000,
        yardstick_readings=10_000,
        yardstick_cpu_s=0.5,
        sent=20_000,
        processed=20_000,
        injected=2,
        other_alerts=0,
        latencies_ms=[p99 / 2, p99],
        legs_ms={},
        behind_s=0.0,
        ready_s=1.0,
    )


def test_each_linger_is_compared_with_its_rounds_baseline() -> None:
    runs = [
        run("1000x2", 0.0, 4.0, 4000, 10.0),
        run("1000x2", 5.0, 2.0, 1000, 16.0),
        run("1000x2", 0.0, 8.0, 4000, 10.0),  # a second round, on a busier box
        run("1000x2", 5.0, 2.0, 1000, 16.0),
        run("10x100", 0.0, 3.0, 3000, 8.0),
        run("10x100", 5.0, 3.0, 2000, 12.0),
    ]
    rows = compared(runs)
    assert [(r["rate"], r["linger_ms"], r["against_linger_ms"]) for r in rows] == [
        ("1000x2", 5.0, 0.0),
        ("1000x2", 5.0, 0.0),
        ("10x100", 5.0, 0.0),
    ]
    assert rows[0]["cpu_per_reading_ratio"] == 0.5 and rows[0]["mean_batch_ratio"] == 4.0
    assert rows[0]["p99_added_ms"] == pytest.approx(6.0, abs=0.1)
    assert rows[1]["cpu_per_reading_ratio"] == 0.25  # against its own round's baseline
    assert rows[2]["cpu_per_reading_ratio"] == 1.0 and rows[2]["mean_batch_ratio"] == 1.5


def test_rates_and_lingers_come_from_the_command_line() -> None:
    scale = scale_of(parse_args(["--only", "live"])).live
    assert scale.lingers_ms == (0.0, SHIPPED_LINGER_MS)
    assert BatchingSettings().max_delay_ms == SHIPPED_LINGER_MS
    assert [r.label for r in scale.rates] == ["1000x1", "1000x2", "1000x5", "10x100"]
    assert scale.repeat == 1
    argv = ["--rates", "1000x2,10x100", "--lingers", "0,2,8", "--repeat", "2"]
    chosen = scale_of(parse_args(argv)).live
    assert [r.label for r in chosen.rates] == ["1000x2", "10x100"]
    assert (chosen.lingers_ms, chosen.repeat) == ((0.0, 2.0, 8.0), 2)
    with pytest.raises(SystemExit):
        parse_args(["--rates", "1000 streams"])


def test_the_warm_state_ends_where_the_live_traffic_starts() -> None:
    """Its last value is each stream's first live one (traffic.py: publisher j's series from
    the stream's offset), so the live run does not jump back to the series' start."""
    values = warm_values(10)
    assert values.shape == (10, WARM_STATE_READINGS)
    for stream, seed in ((0, 0), (4, 0), (5, 1), (9, 1)):  # two publishers, 5 streams each
        base = generate(BASE_ROWS, seed=seed).values
        assert values[stream, -1] == base[(stream * 37) % BASE_ROWS]
        assert values[stream, 0] == base[(stream * 37 + WARM_STATE_READINGS - 1) % BASE_ROWS]


@pytest.mark.slow
def test_quick_live_run_reports_both_lingers(tmp_path: Path) -> None:
    out = tmp_path / "live.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/throughput.py", "--quick", "--only=live", f"--json={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    live = json.loads(out.read_text())["live_rates"]
    runs = live["runs"]
    assert [r["linger_ms"] for r in runs] == [0.0, SHIPPED_LINGER_MS]
    for r in runs:
        assert r["sensord"]["readings"] > 0 and r["sensord"]["batches"] > 0
        assert math.isfinite(r["sensord"]["cpu_us_per_reading"])
        assert r["caught"] == r["injected"] > 0  # from a warm state, every spike alerts
    [row] = live["lingers_against_first"]
    assert row["linger_ms"] == SHIPPED_LINGER_MS and math.isfinite(row["cpu_per_reading_ratio"])
    assert "each linger against the run without it just before" in done.stdout
