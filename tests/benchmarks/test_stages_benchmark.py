"""benchmarks/stages.py as a user runs it: every stage of the core timed at every wave width,
and the stages adding up to the wave they were timed in.

A smoke run: it checks the benchmark measures what it says (each seam really wrapped and
called, nothing counted twice or lost), never how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sensord.core.bundle import Bundle

pytestmark = pytest.mark.slow  # a model trained, a benchmark run end to end: seconds

REPO = Path(__file__).resolve().parents[2]
WIDTHS = {1, 10, 100, 1000}
# The core's seams as issue 27 names them: the detector's parts with the default channels.
PARTS = ("scale", "point", "sustained", "contextual", "shift", "extremes", "tails", "combine")
STAGES = {
    "pipeline.lookup",
    "pipeline.waves",
    "pipeline.step",
    "pipeline.bookkeeping",
    "checks.late_duplicate",
    "checks.gap",
    "error.deviation",
    "error.observation",
    "model.gather",
    "model.run",
    *(f"assess.{p}" for p in PARTS),
    *(f"learn.{p}" for p in PARTS),
    "learn.refit",
    "alert.advance",
    "alert.drivers",
    "alert.trust",
    "emit.outcomes",
}
OCCASIONAL = {"learn.refit"}
GROUPS = {"pipeline", "checks", "error", "model", "assess", "learn", "alert", "emit"}


@pytest.fixture(scope="module")
def result(small_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("stages") / "stages.json"
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/stages.py",
            "--bundle",
            str(small_bundle.path),
            "--widths",
            ",".join(str(w) for w in sorted(WIDTHS)),
            "--warmup",
            "15",
            "--waves",
            "4",
            "--repeats",
            "2",
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
    assert "do-nothing floor" in done.stdout
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


def widths(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["width"]: row for row in result["widths"]}


def test_every_stage_is_timed_at_every_width(result: dict[str, Any]) -> None:
    by_width = widths(result)
    assert set(by_width) == WIDTHS
    for width, row in by_width.items():
        assert set(row["stages"]) == STAGES, width
        assert set(row["groups"]) == GROUPS, width
        for key, stage in row["stages"].items():
            # Called on every wave (a tail refits now and then): a seam the core stopped
            # calling through would read 0.
            assert stage["calls_per_wave"] >= (0 if key in OCCASIONAL else 1), (width, key)
            assert stage["us_per_reading"] >= 0 and 0 <= stage["share"] <= 1, (width, key)


def test_the_stages_add_up_to_the_wave(result: dict[str, Any]) -> None:
    for width, row in widths(result).items():
        total = row["total"]
        stages = sum(s["us_per_reading"] for s in row["stages"].values())
        # The stages are the wrapped process_batch split up: nothing lost, nothing twice.
        assert stages == pytest.approx(total["stage_sum_us"], rel=0.05), width
        assert 0.8 <= total["stage_sum_us"] / total["wrapped_us"] <= 1.0 + 1e-6, width
        # The wrappers' own cost, and a shared box's noise, stay within a sane factor.
        assert 0.5 <= total["stage_sum_us"] / total["unwrapped_us"] <= 2.0, width
        shares = sum(g["share"] for g in row["groups"].values())
        assert shares == pytest.approx(1.0, abs=0.05), width
        assert 0 < total["floor_us"] < total["unwrapped_us"], width
