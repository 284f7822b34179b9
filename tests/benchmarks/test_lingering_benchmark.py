"""benchmarks/lingering.py: the linger's effect on a virtual clock.

Its source must deliver readings when they are due on that clock, and a run must score
every reading; how fast anything is, is never checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.lingering import Rate, VirtualSource, traffic
from sensord.core.bundle import Bundle

REPO = Path(__file__).resolve().parents[2]


def test_the_virtual_source_reads_what_is_due_and_an_idle_poll_waits_for_the_next() -> None:
    arrivals, messages = traffic(Rate(3, 2.0), seconds=5.0, seed=1)
    assert np.all(np.diff(arrivals) >= 0) and len(arrivals) == len(messages)
    source = VirtualSource(arrivals, messages)
    source.poll(0.0)  # nothing due at 0
    assert source.waiting() == 0 and source.now == 0.0
    source.poll(10.0)  # idle: waits for the first arrival, not the whole timeout
    assert source.now == arrivals[0] and source.waiting() >= 1
    source.sleep(1.0)
    source.poll(0.0)
    assert source.waiting() == int(np.searchsorted(arrivals, source.now, side="right"))
    taken = source.take(1_000)
    assert [m.mid for m in taken] == list(range(1, len(taken) + 1))  # in arrival order
    assert not source.done


def test_each_streams_readings_are_in_time_order() -> None:
    _, messages = traffic(Rate(4, 5.0), seconds=3.0, seed=2)
    last: dict[str, float] = {}
    for message in messages:
        ts = json.loads(message.payload)["ts"]
        assert ts > last.get(message.topic, 0.0)
        last[message.topic] = ts


@pytest.mark.slow
def test_small_run_scores_every_reading_with_each_linger(
    small_bundle: Bundle, tmp_path: Path
) -> None:
    out = tmp_path / "lingering.json"
    options = ["--rates=20x20", "--lingers=0,5", "--seconds=2", "--rounds=1", f"--json={out}"]
    done = subprocess.run(
        [sys.executable, "benchmarks/lingering.py", f"--bundle={small_bundle.path}", *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["rate"], r["linger_ms"]) for r in rows] == [("20x20", 0.0), ("20x20", 5.0)]
    assert rows[0]["cpu_us_per_reading_ratio"] == 1.0
    assert all(r["scored"] == r["readings"] > 0 for r in rows)
    assert all(r["mean_batch"] >= 1 and r["p99_ms"] >= r["p50_ms"] >= 0 for r in rows)
