"""benchmarks/stages.py as a user runs it: every stage of the core timed at every wave width
on both paths (the numpy reference and the compiled path), each path's stages adding up to
the wave they were timed in, and the two set side by side.

A smoke run: it checks the benchmark measures what it says (each seam really wrapped and
called, nothing counted twice or lost, each path the one it names), never how fast anything
is.
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
PATHS = ("reference", "compiled")
# The core's seams as issue 27 names them: the detector's parts with the default channels.
PARTS = ("scale", "point", "sustained", "contextual", "shift", "extremes", "tails", "combine")
STAGES = {
    "reference": {
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
    },
    # CompiledPath.process's: admit+scaling, engine, kernel, events, the rest.
    "compiled": {
        "admit.admit",
        "admit.scaling",
        "engine.prepare",
        "engine.time",
        "engine.call",
        "engine.session",
        "kernel.run",
        "events.events",
        "rest.lookup",
        "rest.batch",
        "rest.process",
        "rest.outputs",
    },
}
GROUPS = {
    "reference": {"pipeline", "checks", "error", "model", "assess", "learn", "alert", "emit"},
    "compiled": {"admit", "engine", "kernel", "events", "rest"},
}
# Not on every wave: a tail refits now and then; an event only where an alert moves.
OCCASIONAL = {"learn.refit", "events.events"}
# Once a wave, whatever its width: one kernel call steps all its readings, and a wave of
# live traffic (every stream once, no reset) is one engine run of T = 1.
ONCE_A_WAVE = {"kernel.run", "engine.call", "engine.session", "admit.admit", "rest.process"}


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
            # Blocks by time, not by waves: a few waves of one reading on the compiled path
            # last well under a millisecond, below what a shared box's noise leaves of them.
            "--block-s",
            "0.05",
            # Two: a median of two is their mean, so the stages' medians add up to the
            # median of their sums exactly, however noisy the box.
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
    assert "wave of one reading, CPU us" in done.stdout
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


def widths(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["width"]: row for row in result["widths"]}


@pytest.mark.parametrize("path", PATHS)
def test_every_stage_is_timed_at_every_width(result: dict[str, Any], path: str) -> None:
    by_width = widths(result)
    assert set(by_width) == WIDTHS
    for width, row in by_width.items():
        timed = row[path]
        assert timed["path"] == path
        assert set(timed["stages"]) == STAGES[path], width
        assert set(timed["groups"]) == GROUPS[path], width
        for key, stage in timed["stages"].items():
            # A seam the path stopped calling through would read 0 calls.
            assert stage["calls_per_wave"] >= (0 if key in OCCASIONAL else 1), (width, key)
            if key in ONCE_A_WAVE:
                assert stage["calls_per_wave"] == 1, (width, key)
            assert stage["us_per_reading"] >= 0 and 0 <= stage["share"] <= 1, (width, key)


@pytest.mark.parametrize("path", PATHS)
def test_the_stages_add_up_to_the_wave(result: dict[str, Any], path: str) -> None:
    for width, row in widths(result).items():
        timed = row[path]
        total = timed["total"]
        stages = sum(s["us_per_reading"] for s in timed["stages"].values())
        # The stages are the wrapped process_batch split up: nothing lost, nothing twice.
        assert stages == pytest.approx(total["stage_sum_us"], rel=0.05), width
        assert 0.8 <= total["stage_sum_us"] / total["wrapped_us"] <= 1.0 + 1e-6, width
        # The wrappers' own cost, and a shared box's noise, stay within a sane factor (in
        # CPU: a busy box's waits land in wall time block by block).
        assert 0.5 <= total["wrapped_over_unwrapped_cpu"] <= 2.0, width
        shares = sum(g["share"] for g in timed["groups"].values())
        assert shares == pytest.approx(1.0, abs=0.05), width
        assert 0 < total["floor_us"] < total["unwrapped_us"], width


def test_each_compiled_group_stands_against_reference_stages_of_its_own(
    result: dict[str, Any],
) -> None:
    for width, row in widths(result).items():
        side = row["side_by_side"]
        assert set(side["groups"]) == GROUPS["compiled"], width
        replaced = [key for group in side["groups"].values() for key in group["replaces"]]
        # Every reference stage stands against exactly one compiled group.
        assert sorted(replaced) == sorted(STAGES["reference"]), width
        # The whole waves are the paths' own unwrapped totals, measured in the same repeats.
        assert side["reference_cpu_us"] == row["reference"]["total"]["unwrapped_cpu_us"]
        assert side["compiled_cpu_us"] == row["compiled"]["total"]["unwrapped_cpu_us"]
        assert side["cpu_ratio"] > 0 and side["wall_ratio"] > 0, width


def test_the_wave_of_one_is_the_width_of_one(result: dict[str, Any]) -> None:
    one, side = result["wave_of_one"], widths(result)[1]["side_by_side"]
    assert one["reference_cpu_us"] == side["reference_cpu_us"]
    assert one["compiled_cpu_us"] == side["compiled_cpu_us"]
    assert one["ratio"] == side["cpu_ratio"]
    assert one["target_us"] == 40.0
    assert one["met"] is (one["compiled_cpu_us"] <= 40.0)
