"""benchmarks/equivalence.py: its comparison on hand-made outcomes, and the benchmark end to
end on a tiny NAB file and a tiny SKAB pump (no ../shared needed)."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import equivalence
from sensord.core.alert import AlertEvent
from sensord.core.sample import Outcome, Sample, Status
from sensord.core.timestamps import format_timestamp
from sensord.offline.synthetic import Anomaly, generate
from tests.benchmarks.test_skab_benchmark import write_pump


def outcomes(rows: int) -> list[Outcome | None]:
    """A replay's outcomes: the first row skipped, the second a stream's first, then
    scored rows, an alert raised on the last."""
    found: list[Outcome | None] = [None]
    for i in range(1, rows):
        sample = Sample("s", float(i), np.array([float(i), 2.0 * i]))
        if i == 1:
            found.append(Outcome(sample, Status.FIRST, alert=False))
            continue
        expected = np.array([i - 0.5, 2.0 * i - 1.0])
        found.append(Outcome(sample, Status.SCORED, expected, error=0.5, score=i / rows))
    last = found[-1]
    assert last is not None
    event = AlertEvent(
        "raised", "id-1", "s", last.sample.ts, last.sample.ts, (1.0,), (0.5,), 0.5, 0.9, 0.9,
        0.45, "critical", "m", "v1", channel="point", drivers=(("a", 0.75), ("b", 0.25)),
    )  # fmt: skip
    found[-1] = dataclasses.replace(last, alert=True, event=event)
    return found


def changed(results: list[Outcome | None], row: int, **fields: Any) -> list[Outcome | None]:
    copy = list(results)
    outcome = copy[row]
    assert outcome is not None
    copy[row] = dataclasses.replace(outcome, **fields)
    return copy


def test_the_same_outcomes_are_equal_and_any_difference_is_found_at_its_row() -> None:
    reference = outcomes(6)
    same = equivalence.differences(reference, outcomes(6))
    assert same.first is None and same.events_equal and same.rows_differing == 0
    assert same.max_score_diff == 0.0 and same.max_expected_rel == 0.0

    below = equivalence.differences(reference, changed(reference, 3, score=3 / 6 + 1e-12))
    assert below.first is None and 0 < below.max_score_diff < equivalence.TOLERANCE

    score = equivalence.differences(reference, changed(reference, 3, score=0.5 + 1e-6))
    assert score.first is not None and (score.first.row, score.first.column) == (3, "score")
    assert score.first.reference == "0.5" and score.max_score_diff == pytest.approx(1e-6)

    bigger = np.array([3.5, 7.0 * (1 + 1e-6)])
    expected = equivalence.differences(reference, changed(reference, 4, expected=bigger))
    assert expected.first is not None and expected.first.column == "expected"
    assert expected.max_expected_rel == pytest.approx(1e-6, rel=1e-3)

    flags = equivalence.differences(reference, changed(reference, 2, status=Status.FIRST))
    assert flags.rows_differing == 1 and flags.first is not None and flags.first.row == 2


def test_an_event_differs_by_its_kind_id_channel_or_a_drivers_share() -> None:
    reference = outcomes(5)
    event = reference[-1].event if reference[-1] else None
    assert event is not None
    for other in (
        dataclasses.replace(event, event="updated"),
        dataclasses.replace(event, alert_id="id-2"),
        dataclasses.replace(event, channel="extremes"),
        dataclasses.replace(event, drivers=(("a", 0.75 + 1e-6), ("b", 0.25 - 1e-6))),
    ):
        found = equivalence.differences(reference, changed(reference, 4, event=other))
        assert not found.events_equal and found.first is not None
        assert (found.first.row, found.first.column) == (4, "event")
    lost = equivalence.differences(reference, changed(reference, 4, event=None))
    assert not lost.events_equal


def write_nab_file(path: Path) -> None:
    """A NAB file: a daily cycle with a spike at row 500 and a shift at row 600."""
    g = generate(700, seed=3, anomalies=(Anomaly("spike", 500), Anomaly("shift", 600)))
    stamps = [format_timestamp(t).replace("T", " ")[:19] for t in g.timestamps]
    lines = ["timestamp,value"] + [f"{t},{v:.4f}" for t, v in zip(stamps, g.values, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow  # a bundle trained per file
def test_both_paths_give_the_same_alerts_and_scores_on_a_nab_file_and_a_pump(
    tmp_path: Path,
) -> None:
    write_nab_file(tmp_path / "nab" / "data" / "withAnomaly" / "spike.csv")
    write_pump(tmp_path / "skab" / "valve1" / "0.csv", 1, (600, 780))
    write_pump(tmp_path / "skab" / "valve2" / "0.csv", 2, (600, 780))  # not the dev set
    report = tmp_path / "r.json"
    args = ["--nab", str(tmp_path / "nab"), "--skab", str(tmp_path / "skab")]
    args += ["--out", str(tmp_path / "out"), "--json", str(report), "--jobs", "1"]
    assert equivalence.main(args) == 0
    figures = json.loads(report.read_text())
    assert figures["all_equal"] and figures["tolerance"] == 1e-9
    runs = {(f["corpus"], f["file"], f["engine"]): f for f in figures["files"]}
    assert set(runs) == {
        (corpus, name, engine)
        for corpus, name in (("nab", "withAnomaly/spike.csv"), ("skab", "valve1/0.csv"))
        for engine in ("persistence", "onnx")
    }
    for (_, _, engine), run in runs.items():
        assert run["batch"] == (1 if engine == "onnx" else 256)
        assert run["rows"] in (700, 900) and run["equal"]
        # The anomalies are alerted, so the events compared are not an empty list.
        assert run["events"][0] == run["events"][1] > 0
        assert run["differences"]["max_score_diff"] < 1e-9
        assert run["reference_s"] > 0 and run["compiled_s"] > 0
