"""benchmarks/sequence.py as a user runs it: the step and sequence graphs timed side by side.

A smoke run with a tiny net: it checks the benchmark measures what it says (every width and
length, the two graphs giving the same numbers), never how fast anything is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.sequence import main

pytestmark = pytest.mark.slow  # a model trained: seconds


def test_small_run_reports_every_width_and_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sequence.json"
    options = ["--batches", "1,3", "--steps", "1,5", "--rounds", "2", "--seconds", "0.001"]
    tiny = ["--epochs", "1", "--hidden", "8", "--layers", "1", "--json", str(out)]
    assert main([*options, *tiny]) == 0
    cases = json.loads(out.read_text())
    assert [(c["batch"], c["steps"]) for c in cases] == [(1, 1), (1, 5), (3, 1), (3, 5)]
    for case in cases:
        assert case["step_us"] > 0 and case["sequence_us"] > 0 and case["one_call_us"] > 0
        assert case["ratio"] > 0
        assert case["difference"] < 1e-5  # the same network, float32 rounding apart
    assert "lstm 1x8, 3 inputs" in capsys.readouterr().out
