"""Reading history CSVs: every kind of bad input is one clear error naming file, line, column."""

from pathlib import Path

import numpy as np
import pytest

from sensord.errors import InputError
from sensord.offline.series import read_series


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_nab_layout(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,value\n2014-04-01 00:00:00,1.5\n2014-04-01 00:05:00,2\n")
    series = read_series(path)
    assert series.features == ("value",)
    assert series.values.tolist() == [[1.5], [2.0]]
    assert series.timestamps[1] - series.timestamps[0] == 300
    assert series.stream_names == ("default",)


def test_reads_long_format_with_streams(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,stream,t,h\n1,a,1,2\n1,b,3,4\n2,a,5,6\n2,b,7,8\n")
    series = read_series(path)
    assert series.features == ("t", "h")
    assert series.stream_names == ("a", "b")
    assert series.stream_rows("b").tolist() == [1, 3]


def test_empty_and_non_finite_cells_are_skipped_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,value\n1,1\n2,\n3,nan\n4,inf\n5,-Infinity\n6,2\n")
    series = read_series(path)
    assert series.skipped == 4
    assert series.usable.tolist() == [True, False, False, False, False, True]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"data\.csv: empty file"),
        ("time,value\n1,2\n", r"data\.csv line 1: no 'timestamp' column"),
        ("timestamp\n1\n", r"data\.csv line 1: no feature column"),
        ("timestamp,stream\n1,a\n", r"data\.csv line 1: no feature column"),
        ("timestamp,value\n1,2\n2,abc\n", r"data\.csv line 3, column 'value': 'abc' is not a"),
        ("timestamp,value\n1,2\nlater,3\n", r"line 3, column 'timestamp': timestamp 'later'"),
        ("timestamp,value\n2,2\n1,3\n", r"data\.csv line 3, column 'timestamp': .* is before line"),
        ("timestamp,value\n1,2\n1,3\n", r"data\.csv line 3, column 'timestamp': .* repeats line 2"),
        ("timestamp,value\n1,2\n2,3,4\n", r"data\.csv line 3: has 3 cells but the header has 2"),
        ("timestamp,value,value\n1,2,3\n", r"data\.csv line 1: duplicated column"),
        ("timestamp,stream,value\n1,a,2\n2,,3\n", r"data\.csv line 3, column 'stream': empty"),
    ],
)
def test_bad_input_names_the_place(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        read_series(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_order_is_checked_per_stream(tmp_path: Path) -> None:
    ok = write(tmp_path, "timestamp,stream,value\n2,a,1\n1,b,1\n3,a,1\n2,b,1\n")
    assert read_series(ok).stream_names == ("a", "b")
    bad = write(tmp_path, "timestamp,stream,value\n2,a,1\n3,a,1\n1,a,1\n", "bad.csv")
    with pytest.raises(InputError, match=r"line 4.*is before line 3 of stream 'a'"):
        read_series(bad)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv: no such file"):
        read_series(tmp_path / "nope.csv")


def test_selected_features_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,temp\n1,2\n")
    with pytest.raises(InputError, match=r"missing feature column.*value .*has: timestamp, temp"):
        read_series(path, ["value"])


def test_selected_features_ignore_other_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,label,value\n1,x,2\n2,y,3\n")
    series = read_series(path, ["value"])
    assert np.array_equal(series.values, [[2.0], [3.0]])


def test_out_of_order_rows_can_be_dropped_like_the_daemon_does(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,value\n1,1\n2,2\n3,3\n2.5,9\n3,9\n4,4\n")
    with pytest.raises(InputError, match=r"line 5.*--out-of-order drop"):
        read_series(path)
    series = read_series(path, out_of_order="drop")
    assert series.in_order.tolist() == [True, True, True, False, False, True]
    assert series.out_of_order == 2
