"""benchmarks/operating.py as a user runs it: every configuration measured and reported.

A smoke run: it checks the benchmark measures what it says (each configuration really has
its feature on), never how fast anything is.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.operating import CONFIGS, settings_for
from sensord.core.bundle import Bundle

pytestmark = pytest.mark.slow  # models trained, runs end to end: seconds each

REPO = Path(__file__).resolve().parents[2]


def test_each_configuration_has_its_feature_on(small_bundle: Bundle, tmp_path: Path) -> None:
    shadow = settings_for(small_bundle.path, tmp_path, CONFIGS["+shadow"])
    assert shadow.routes[0].shadow == small_bundle.path
    assert settings_for(small_bundle.path, tmp_path, CONFIGS["+record"]).record.enabled
    plain = settings_for(small_bundle.path, tmp_path, CONFIGS["plain"])
    before = settings_for(small_bundle.path, tmp_path, CONFIGS["likelihood"])
    assert plain.routes[0].detector.kind == "channels"
    # The baseline goes into the built cores (cpu_per_reading), never into the settings.
    assert before.routes[0].detector.kind == "channels"
    assert CONFIGS["likelihood"]["baseline"] == "likelihood"
    assert not plain.nodata.enabled and not plain.record.enabled and plain.routes[0].shadow is None
    assert plain.web.port is None
    assert settings_for(small_bundle.path, tmp_path, CONFIGS["+web open"]).web.port == 0


def test_small_run_reports_every_configuration(small_bundle: Bundle, tmp_path: Path) -> None:
    out = tmp_path / "operating.json"
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/operating.py",
            "--bundle",
            str(small_bundle.path),
            "--streams",
            "20",
            "--readings",
            "8000",
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
    rows = {row["configuration"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == set(CONFIGS)
    assert rows["plain"]["ratio_to_plain"] == 1.0
    assert all(math.isfinite(r["median_us"]) and r["median_us"] > 0 for r in rows.values())
    assert "vs plain" in done.stdout
    answers = json.loads(out.read_text())["page_answers_ms"]
    assert set(answers) == {"streams_list_ms", "chart_ms"}
    assert all(v > 0 for v in answers.values())
