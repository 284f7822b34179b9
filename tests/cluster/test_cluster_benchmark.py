"""benchmarks/cluster.py as a user runs it, in small: every member count measured, every
reading stepped, a hand-over timed. A smoke run: it checks that the benchmark measures what
it says, never how fast anything is (speed is the benchmark's own report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sensord.core.bundle import Bundle
from tests.cluster.conftest import need_engine

REPO = Path(__file__).resolve().parents[2]


def test_small_run_reports_every_member_count(tmp_path: Path, bundle: Bundle) -> None:
    need_engine()
    out = tmp_path / "cluster.json"
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/cluster.py",
            "--members",
            "1,2",
            "--streams",
            "50",
            "--per-stream",
            "20",
            "--rounds",
            "1",
            "--bundle",
            str(bundle.path),
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| members | readings/s |" in done.stdout
    result = json.loads(out.read_text())
    rows = {row["members"]: row for row in result["rows"]}
    assert set(rows) == {1, 2}
    for row in result["rounds"]:
        assert row["readings"] == 1000 and row["rate"] > 0
        assert row["member_cpu_s"] > 0 and row["engine_cpu_s"] > 0
    assert rows[1]["handover_s"] is None and rows[2]["handover_s"] is not None
    # the single daemon on the same backlog each round: in-process (without and with its
    # MQTT outlet live) and draining Mosquitto; the members' CPU as ratios to each
    (single,) = result["single_daemon"]
    assert single["inprocess_us"] > 0 and single["outlet_us"] > 0 and single["mosquitto_us"] > 0
    for row in rows.values():
        assert row["vs_single_inprocess"] > 0 and row["vs_single_outlet"] > 0
        assert row["vs_single_mosquitto"] > 0
    assert "| members | members' CPU µs/reading | vs in-process | vs outlet live " in done.stdout
