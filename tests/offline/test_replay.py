"""sensord replay: what the daemon would have flagged, exactly as its core computes it."""

import csv
from pathlib import Path

import numpy as np
import pytest

from sensord.core.bundle import Bundle
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline
from sensord.core.sample import Sample
from sensord.errors import InputError
from sensord.offline.replay import ReplayResult, open_pipeline, replay, write_result
from sensord.offline.series import read_series
from sensord.offline.synthetic import standard_anomalies
from tests.conftest import LIVE_ROWS

# An alert counts as catching an anomaly if raised within this many rows of its start.
CATCH_ROWS = 3


def raised_rows(result: ReplayResult) -> list[int]:
    return [
        i
        for i, o in enumerate(result.outcomes)
        if o is not None and o.event is not None and o.event.event == "raised"
    ]


def test_alerts_at_injected_spike_dip_and_level_shift(bundle: Bundle, anomalous_csv: Path) -> None:
    result = replay(anomalous_csv, open_pipeline(bundle.path))
    raised = raised_rows(result)
    for anomaly in standard_anomalies(LIVE_ROWS):
        assert any(anomaly.row <= r <= anomaly.row + CATCH_ROWS for r in raised), anomaly
    injected = [a.row for a in standard_anomalies(LIVE_ROWS)]
    assert all(any(0 <= r - row <= CATCH_ROWS for row in injected) for r in raised), raised


def test_no_alert_on_a_clean_series(bundle: Bundle, clean_csv: Path) -> None:
    result = replay(clean_csv, open_pipeline(bundle.path))
    assert result.events == ()
    scored = [o for o in result.outcomes if o is not None and not np.isnan(o.score)]
    assert len(scored) == LIVE_ROWS - 1
    # After its warm-up (the LSTM starts from a zero state) a clean stream stays well below
    # the threshold; during it, alerts are held back whatever the score.
    assert max(o.score for o in scored if not o.warming_up) < 0.5


def test_replay_equals_the_core_stepped_by_hand(bundle: Bundle, anomalous_csv: Path) -> None:
    result = replay(anomalous_csv, open_pipeline(bundle.path), batch=97)
    series = read_series(anomalous_csv, bundle.features)
    by_hand = Pipeline(Engine(bundle))
    for i in range(len(series.rows)):
        sample = Sample("default", float(series.timestamps[i]), series.values[i])
        (outcome,) = by_hand.process([sample])
        replayed = result.outcomes[i]
        assert replayed is not None
        assert replayed.status == outcome.status
        assert replayed.alert == outcome.alert
        np.testing.assert_array_equal(replayed.score, outcome.score)
        assert replayed.event == outcome.event


def test_result_csv_keeps_input_columns_and_adds_the_core_columns(
    tmp_path: Path, bundle: Bundle, anomalous_csv: Path
) -> None:
    result = replay(anomalous_csv, open_pipeline(bundle.path))
    out = tmp_path / "result.csv"
    write_result(out, result)
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "timestamp",
        "value",
        "expected_value",
        "error",
        "score",
        "alert",
        "event",
    ]
    assert len(rows) == LIVE_ROWS
    assert rows[0]["score"] == "" and rows[0]["expected_value"] == ""
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows[1:])
    raised = [i for i, r in enumerate(rows) if r["event"] == "raised"]
    assert raised == raised_rows(result)
    assert all(rows[i]["alert"] == "1" for i in raised)
    original = anomalous_csv.read_text().splitlines()[1].split(",")
    assert [rows[0]["timestamp"], rows[0]["value"]] == original


def test_skipped_rows_keep_their_place_without_a_score(
    tmp_path: Path, bundle: Bundle, clean_csv: Path
) -> None:
    lines = clean_csv.read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ",nan"
    lines[6] = lines[6].split(",")[0] + ","
    holes = tmp_path / "holes.csv"
    holes.write_text("\n".join(lines) + "\n")
    result = replay(holes, open_pipeline(bundle.path))
    assert result.series.skipped == 2
    assert result.outcomes[4] is None and result.outcomes[5] is None  # file lines 6 and 7
    write_result(tmp_path / "r.csv", result)
    with (tmp_path / "r.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == LIVE_ROWS and rows[4]["score"] == "" and rows[4]["value"] == "nan"


def test_columns_must_match_the_bundle(tmp_path: Path, bundle: Bundle) -> None:
    other = tmp_path / "other.csv"
    other.write_text("timestamp,temperature\n1,2\n2,3\n")
    with pytest.raises(InputError, match=r"other\.csv line 1: missing feature column\(s\) value"):
        replay(other, open_pipeline(bundle.path))


def test_plot_is_written(tmp_path: Path, bundle: Bundle, anomalous_csv: Path) -> None:
    from sensord.offline.plot import write_plot

    result = replay(anomalous_csv, open_pipeline(bundle.path))
    write_plot(tmp_path / "plot.png", result)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_out_of_order_rows_get_no_score_when_dropped(
    tmp_path: Path, bundle: Bundle, clean_csv: Path
) -> None:
    lines = clean_csv.read_text().splitlines()
    lines.insert(50, lines[20])  # a reading from the past, as from a clock that jumped back
    jumped = tmp_path / "jumped.csv"
    jumped.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="increasing time order"):
        replay(jumped, open_pipeline(bundle.path))
    pipeline = open_pipeline(bundle.path)
    result = replay(jumped, pipeline, out_of_order="drop")
    late = result.outcomes[49]  # text line 50 is data row 49
    assert late is not None and np.isnan(late.score) and pipeline.counters.late == 1
