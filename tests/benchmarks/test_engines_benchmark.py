"""benchmarks/engines.py as a user runs it: every case measured, every reading received.

A smoke run: it checks the benchmark measures what it says (each case really moves all its
readings through its broker and consumer), never how fast anything is. It needs a real
Mosquitto and a real nats-server: without either it skips, except in CI (CI=true), where a
missing one fails the run, as tests/cluster/conftest.py and tests/integration/conftest.py do.
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
from sensord.cli.engine import nats_binary

pytestmark = pytest.mark.slow  # models trained, runs end to end: seconds each

REPO = Path(__file__).resolve().parents[2]
CASES = {"mosquitto", "nats-mqtt", "nats-jetstream"}
READINGS = 2000


def require_brokers() -> None:
    missing = [
        what
        for what, found in (
            ("mosquitto (apt-get install mosquitto)", mosquitto_binary()),
            ("nats-server (apt-get install nats-server)", nats_binary()),
        )
        if found is None
    ]
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI requires {', '.join(missing)}")
    pytest.skip(f"needs {', '.join(missing)}")


def test_small_run_reports_every_case(tmp_path: Path) -> None:
    require_brokers()
    out = tmp_path / "engines.json"
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/engines.py",
            "--readings",
            str(READINGS),
            "--streams",
            "10",
            "--rounds",
            "1",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = {row["case"]: row for row in result["rows"]}
    assert set(rows) == CASES
    assert rows["mosquitto"]["throughput_vs_mosquitto"] == 1.0
    for case, row in rows.items():
        assert row["received"] == [READINGS], case
        assert row["missing"] == [0] and row["unacked"] == [0], case
        for figure in ("readings_per_s", "engine_cpu_s_per_1000", "consumer_cpu_s_per_1000"):
            assert math.isfinite(row[figure]) and row[figure] > 0, (case, figure)
    runs = {run["case"]: run for run in result["runs"]}
    assert set(runs) == CASES
    assert all(run["publisher_cpu_s"] > 0 for run in runs.values())
    assert "engine CPU" in done.stdout
