"""The readings recorder: rotating CSV files the trainer reads, retention, and crash leftovers."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from sensord.offline.series import read_series
from sensord.ops import recording as record
from sensord.ops.history import load_alert_spans, load_readings, write_training_csv
from sensord.ops.recording import ALERTS_FILE, READINGS_PREFIX, Recorder, RecordPolicy

T0 = 1_700_000_000.0
FEATURES = ("value", "temp")


class Clock:
    """A settable clock for the recorder."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def batch(
    rng: np.random.Generator, n: int, start: float, streams: int = 3
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """n readings round-robin over `streams` streams, 0.1 ms apart, awkward float values."""
    names = [f"dev-{i % streams}:t.x_{i % streams}" for i in range(n)]
    ts = start + np.arange(n) * 1e-4 + rng.random(n) * 5e-5  # every bit of the float used
    values = rng.normal(size=(n, len(FEATURES))) * 1e3 + 1 / 3
    return names, ts, values


def files_of(route_dir: Path) -> list[Path]:
    return sorted(route_dir.glob(f"{READINGS_PREFIX}*.csv"), key=lambda p: p.name[-10:])


def utc_stamp(epoch: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(epoch))


def data_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


def write_batches(
    rec: Recorder, rng: np.random.Generator, sizes: list[int], between: Callable[[], None]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Record one call per size (call k's `temp` column is k, to find its rows later)."""
    all_streams: list[str] = []
    all_ts, all_values = [], []
    start = T0
    for k, n in enumerate(sizes):
        streams, ts, values = batch(rng, n, start)
        values[:, 1] = k
        rec.readings("r1", FEATURES, streams, ts, values)
        all_streams += streams
        all_ts.append(ts)
        all_values.append(values)
        start = float(ts[-1]) + 1e-4
        between()
    return all_streams, np.concatenate(all_ts), np.concatenate(all_values)


def sort_like_loader(
    streams: list[str], ts: np.ndarray, values: np.ndarray
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    order = sorted(range(len(streams)), key=lambda i: (streams[i], ts[i]))
    return tuple(streams[i] for i in order), ts[order], values[order]


def test_rows_round_trip_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rec = Recorder(tmp_path, RecordPolicy())
    streams, ts, values = batch(rng, 500, T0)
    values[0, 0] = 5e-324  # the smallest subnormal: only repr keeps it
    for lo in range(0, 500, 64):
        rec.readings("r1", FEATURES, streams[lo : lo + 64], ts[lo : lo + 64], values[lo : lo + 64])
    rec.close()
    assert rec.counters.recorded_rows == 500 and rec.counters.record_errors == 0

    got = load_readings(tmp_path / "r1", FEATURES)
    want = sort_like_loader(streams, ts, values)
    assert got.features == FEATURES and got.files == 1
    assert got.torn == got.duplicates == 0
    assert got.streams == want[0]
    assert np.array_equal(got.timestamps, want[1])  # bit for bit, 0.1 ms apart
    assert np.array_equal(got.values, want[2])
    assert len(np.unique(got.timestamps)) == 500


def test_the_trainers_reader_reads_the_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rec = Recorder(tmp_path, RecordPolicy())
    streams, ts, values = batch(rng, 300, T0, streams=4)
    rec.readings("r1", FEATURES, streams, ts, values)
    rec.close()

    (raw,) = files_of(tmp_path / "r1")
    series = read_series(raw, features=list(FEATURES))
    assert series.streams == tuple(streams)
    assert np.array_equal(series.timestamps, ts)
    assert np.array_equal(series.values, values)

    # The loader's output through write_training_csv, leaving rows out by a mask.
    recording = load_readings(tmp_path / "r1", FEATURES)
    keep = recording.timestamps < T0 + 0.015
    out = tmp_path / "train.csv"
    write_training_csv(out, recording, keep)
    series = read_series(out)
    assert series.features == FEATURES
    assert series.streams == tuple(np.asarray(recording.streams)[keep])
    assert np.array_equal(series.timestamps, recording.timestamps[keep])
    assert np.array_equal(series.values, recording.values[keep])
    assert 0 < len(series.streams) < 300


def assert_whole_calls(route_dir: Path, calls: int) -> list[set[int]]:
    """Every call's rows are in exactly one file; return which calls each file holds."""
    per_file = []
    for path in files_of(route_dir):
        per_file.append({int(float(line.rsplit(",", 1)[1])) for line in data_lines(path)})
    seen = [k for ks in per_file for k in ks]
    assert sorted(seen) == list(range(calls)), "a call was split over files or lost"
    return per_file


def test_rotation_by_size_loses_no_row_and_never_splits_a_call(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    policy = RecordPolicy(max_file_bytes=4000)
    rec = Recorder(tmp_path, policy)
    sizes = [int(n) for n in rng.integers(1, 40, size=60)] + [200]  # the last alone > 4000 B
    streams, ts, values = write_batches(rec, rng, sizes, lambda: None)
    rec.close()

    route = tmp_path / "r1"
    paths = files_of(route)
    assert len(paths) > 5
    assert_whole_calls(route, len(sizes))
    for path in paths[:-1]:
        assert path.stat().st_size <= 4000
    assert data_lines(paths[-1]) and len(data_lines(paths[-1])) == 200
    got = load_readings(route, FEATURES)
    want = sort_like_loader(streams, ts, values)
    assert got.files == len(paths) and rec.counters.recorded_rows == len(streams)
    assert got.streams == want[0] and np.array_equal(got.values, want[2])


def test_rotation_by_age(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    clock = Clock()
    rec = Recorder(tmp_path, RecordPolicy(max_file_age_s=100.0), clock=clock)
    ticks = iter(range(1000))

    def tick() -> None:  # 30 s per call; every 7th call the daemon's maintain runs
        clock.now += 30.0
        if next(ticks) % 7 == 6:
            rec.maintain(clock.now)

    _, _, values = write_batches(rec, rng, [10] * 30, tick)
    rec.close()

    route = tmp_path / "r1"
    per_file = assert_whole_calls(route, 30)
    # a file takes the calls at 0, 30, 60 and 90 s after its start; the 5th starts a new one
    assert [len(calls) for calls in per_file] == [4] * 7 + [2]
    got = load_readings(route, FEATURES)
    assert len(got.streams) == 300 and np.array_equal(np.sort(got.values[:, 1]), values[:, 1])


def test_an_idle_routes_old_file_is_closed_so_retention_can_take_it(tmp_path: Path) -> None:
    clock = Clock()
    rec = Recorder(tmp_path, RecordPolicy(max_file_age_s=2000.0, keep_s=1000.0), clock=clock)
    streams, ts, values = batch(np.random.default_rng(0), 5, T0)
    rec.readings("r1", FEATURES, streams, ts, values)
    clock.now = T0 + 1500.0
    rec.maintain(clock.now)  # still open, so kept, though its newest reading is past keep_s
    assert len(files_of(tmp_path / "r1")) == 1 and rec.counters.record_files_removed == 0
    clock.now = T0 + 2100.0
    rec.maintain(clock.now)  # old enough to close, and idle: closed, then removed
    assert files_of(tmp_path / "r1") == [] and rec.counters.record_files_removed == 1


def test_file_names_carry_utc_start_and_sequence(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, RecordPolicy(), clock=Clock(T0))
    streams, ts, values = batch(np.random.default_rng(0), 3, T0)
    rec.readings("r1", FEATURES, streams, ts, values)
    rec.close()
    rec = Recorder(tmp_path, RecordPolicy(), clock=Clock(T0 + 1.5))
    rec.readings("r1", FEATURES, streams, ts + 1, values)
    rec.close()
    names = [p.name for p in files_of(tmp_path / "r1")]
    assert names == ["readings-20231114T221320Z-000000.csv", "readings-20231114T221321Z-000001.csv"]


def test_a_feature_change_rotates(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rec = Recorder(tmp_path, RecordPolicy())
    streams, ts, values = batch(rng, 20, T0)
    rec.readings("r1", FEATURES, streams, ts, values)
    rec.readings("r1", ("value",), streams, ts + 1, values[:, :1])
    rec.readings("r1", ("value",), streams, ts + 2, values[:, :1])
    rec.close()

    first, second = files_of(tmp_path / "r1")
    assert first.read_text().splitlines()[0] == "timestamp,stream,value,temp"
    assert second.read_text().splitlines()[0] == "timestamp,stream,value"
    assert len(data_lines(first)) == 20 and len(data_lines(second)) == 40
    old = load_readings(tmp_path / "r1", FEATURES)
    new = load_readings(tmp_path / "r1", ["value"])
    assert (len(old.streams), old.files, old.skipped_files) == (20, 1, 1)
    assert (len(new.streams), new.files, new.skipped_files) == (40, 1, 1)


def fill_files(rec: Recorder, clock: Clock, count: int, rows: int = 50) -> list[Path]:
    """Write `count` one-call files (the policy rotates on every call), `clock` 1 day apart."""
    rng = np.random.default_rng(6)
    for _ in range(count):
        streams, ts, values = batch(rng, rows, clock.now)
        rec.readings("r1", FEATURES, streams, ts, values)
        clock.now += 86400.0
    return files_of(rec.root / "r1")


def test_retention_by_bytes_deletes_oldest_first_never_the_open_file(tmp_path: Path) -> None:
    clock = Clock()
    policy = RecordPolicy(
        max_file_bytes=1, max_file_age_s=math.inf, keep_bytes=18_000, keep_s=math.inf
    )
    rec = Recorder(tmp_path, policy, clock=clock)
    paths = fill_files(rec, clock, 10)  # ~3300 bytes each, the last one open
    assert len(paths) == 10
    sizes = [p.stat().st_size for p in paths]
    rec.maintain(clock.now)

    left = files_of(tmp_path / "r1")
    assert left == paths[-len(left) :]  # the newest ones survive
    assert sum(p.stat().st_size for p in left) <= 18_000  # the open one counts too
    assert sum(sizes[-len(left) - 1 :]) > 18_000  # and no more was deleted than needed
    assert rec.counters.record_files_removed == 10 - len(left) == 5

    # The open file stays even when it alone is over the limit.
    clock = Clock()
    policy = RecordPolicy(max_file_bytes=1, max_file_age_s=math.inf, keep_bytes=10, keep_s=0.0)
    rec2 = Recorder(tmp_path / "b", policy, clock=clock)
    paths = fill_files(rec2, clock, 3)
    rec2.maintain(T0 + 1e9)
    assert files_of(tmp_path / "b" / "r1") == paths[-1:]
    streams, ts, values = batch(np.random.default_rng(0), 2, T0 + 1e6)
    rec2.readings("r1", FEATURES, streams, ts, values)  # still writable
    assert len(data_lines(paths[-1])) == 50 and rec2.counters.record_errors == 0


def test_retention_by_age_also_of_earlier_runs(tmp_path: Path) -> None:
    clock = Clock()
    policy = RecordPolicy(max_file_bytes=1, keep_s=3.5 * 86400.0)
    rec = Recorder(tmp_path, policy, clock=clock)
    paths = fill_files(rec, clock, 6)  # newest readings at T0 + k days (+ ~5 ms)
    rec.maintain(T0 + 5 * 86400.0)  # cutoff T0 + 1.5 days: files 0 and 1 go
    assert files_of(tmp_path / "r1") == paths[2:]
    assert rec.counters.record_files_removed == 2
    rec.close()

    # A later run knows the files' newest readings without reading them, and only then
    # deletes the last one of them (which was open before).
    rec = Recorder(tmp_path, policy, clock=clock)
    rec.maintain(T0 + 7 * 86400.0)  # cutoff T0 + 3.5 days
    assert files_of(tmp_path / "r1") == paths[4:]
    rec.maintain(T0 + 100 * 86400.0)
    assert files_of(tmp_path / "r1") == []
    assert rec.counters.record_files_removed == 4 and rec.counters.record_errors == 0


def test_a_torn_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    rec = Recorder(tmp_path, RecordPolicy())
    streams, ts, values = batch(rng, 40, T0)
    rec.readings("r1", FEATURES, streams, ts, values)
    rec.close()
    (path,) = files_of(tmp_path / "r1")
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b",") - 3])  # a crash mid-row, mid-number

    got = load_readings(tmp_path / "r1", FEATURES)
    assert (len(got.streams), got.torn) == (39, 1)
    assert np.array_equal(np.sort(got.timestamps), ts[:39])

    # The next run writes a new file, so nothing is glued onto the torn line.
    rec = Recorder(tmp_path, RecordPolicy())
    rec.readings("r1", FEATURES, streams, ts + 1, values)
    rec.close()
    got = load_readings(tmp_path / "r1", FEATURES)
    assert (len(got.streams), got.torn, got.files) == (79, 1, 2)

    # A garbled line inside a file and a file cut inside its header count too.
    with path.open("ab") as handle:
        handle.write(b"\nnot,a,row,at all\n")
    (tmp_path / "r1" / f"{READINGS_PREFIX}20240101T000000Z-000009.csv").write_text("timest")
    got = load_readings(tmp_path / "r1", FEATURES)
    assert (len(got.streams), got.torn, got.skipped_files) == (79, 2, 1)


def test_rows_recorded_twice_after_a_crash_are_kept_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    streams, ts, values = batch(rng, 100, T0)
    rec = Recorder(tmp_path, RecordPolicy())
    rec.readings("r1", FEATURES, streams, ts, values)
    # a crash: no close; the broker redelivers the last 60 readings to the next run
    rec = Recorder(tmp_path, RecordPolicy())
    rec.readings("r1", FEATURES, streams[40:], ts[40:], values[40:])
    rec.readings("r1", FEATURES, streams[40:], ts[40:] + 1, values[40:])  # and new ones
    rec.close()

    got = load_readings(tmp_path / "r1", FEATURES)
    assert (got.files, got.duplicates, len(got.streams)) == (2, 60, 160)
    pairs = list(zip(got.streams, got.timestamps.tolist(), strict=True))
    assert len(set(pairs)) == len(pairs) == 160
    assert pairs == sorted(pairs)
    out = tmp_path / "train.csv"
    write_training_csv(out, got)
    assert read_series(out).out_of_order == 0  # the trainer's reader accepts it as is


def test_empty_route_is_zero_rows(tmp_path: Path) -> None:
    got = load_readings(tmp_path / "nothing", FEATURES)
    assert got.values.shape == (0, 2) and got.timestamps.shape == (0,) and got.files == 0
    assert load_alert_spans(tmp_path / "nothing") == []


def test_alert_spans_pair_up_and_tolerate_repeats_and_torn_lines(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, RecordPolicy())

    def alert(alert_id: str, event: str, ts: float, raised: float) -> None:
        rec.alert(
            "r1",
            alert_id=alert_id,
            stream=f"s-{alert_id}",
            event=event,
            ts=ts,
            raised_ts=raised,
            score=0.97,
        )

    alert("a", "raised", T0 + 10.0001, T0 + 10.0001)
    alert("b", "raised", T0 + 5, T0 + 5)
    alert("a", "cleared", T0 + 20, T0 + 10.0001)
    alert("c", "raised", T0 + 30, T0 + 30)
    alert("a", "raised", T0 + 10.0001, T0 + 10.0001)  # logged again after a crash
    alert("a", "cleared", T0 + 20, T0 + 10.0001)
    rec.close()
    path = tmp_path / "r1" / ALERTS_FILE
    assert path.read_text().splitlines()[0] == "alert_id,stream,event,ts,raised_ts,score"
    with path.open("a") as handle:
        handle.write("d,s-d,raised,1700000040.0,17000")  # torn by a crash

    rec = Recorder(tmp_path, RecordPolicy())  # the next run's first line must stand alone
    alert("b", "cleared", T0 + 50, T0 + 5)
    alert("e", "cleared", T0 + 70, T0 + 60)  # its raised line was lost
    rec.close()

    spans = load_alert_spans(tmp_path / "r1")
    got = [(s.alert_id, s.stream, s.start - T0, s.end - T0) for s in spans]
    assert got == [
        ("b", "s-b", 5.0, 50.0),
        ("a", "s-a", pytest.approx(10.0001, abs=1e-6), 20.0),
        ("c", "s-c", 30.0, math.inf),
        ("e", "s-e", 60.0, 70.0),
    ]
    assert spans[1].start == T0 + 10.0001  # exactly
    with pytest.raises(ValueError, match="event"):
        alert("x", "feedback", T0, T0)


def test_write_errors_are_counted_not_raised(tmp_path: Path) -> None:
    clock = Clock()
    (tmp_path / "blocked").write_text("a regular file where the route directory should be")
    rec = Recorder(tmp_path, RecordPolicy(), clock=clock)
    streams, ts, values = batch(np.random.default_rng(9), 10, T0)
    with capture_logs() as logs:
        rec.readings("blocked", FEATURES, streams, ts, values)
        rec.readings("blocked", FEATURES, streams, ts + 1, values)
        rec.alert(
            "blocked", alert_id="a", stream="s", event="raised", ts=T0, raised_ts=T0, score=1.0
        )
        rec.maintain(clock.now)
        clock.now += 61.0
        rec.readings("blocked", FEATURES, streams, ts + 2, values)
    assert (rec.counters.record_errors, rec.counters.recorded_rows) == (4, 0)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 2  # once per minute, not once per failure
    assert "blocked" in warnings[0]["file"] and warnings[0]["reason"]

    # Other routes are unaffected.
    rec.readings("ok", FEATURES, streams, ts, values)
    assert rec.counters.recorded_rows == 10


def test_a_failed_write_leaves_no_partial_row_and_moves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recorder(tmp_path, RecordPolicy())
    streams, ts, values = batch(np.random.default_rng(10), 10, T0)
    rec.readings("r1", FEATURES, streams, ts, values)
    real = record._write_all

    def half_then_enospc(fd: int, data: bytes) -> None:
        real(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(record, "_write_all", half_then_enospc)
    rec.readings("r1", FEATURES, streams, ts + 1, values)
    monkeypatch.undo()
    rec.readings("r1", FEATURES, streams, ts + 2, values)
    rec.close()

    assert (rec.counters.record_errors, rec.counters.recorded_rows) == (1, 20)
    got = load_readings(tmp_path / "r1", FEATURES)
    assert (got.files, got.torn, len(got.streams)) == (2, 0, 20)


def test_route_names_are_checked(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, RecordPolicy())
    streams, ts, values = batch(np.random.default_rng(0), 1, T0)
    for bad in ("", "a/b", "..", "x y"):
        with pytest.raises(ValueError, match="route name"):
            rec.readings(bad, FEATURES, streams, ts, values)
    rec.readings("Line-1_a.b", FEATURES, streams, ts, values)
    assert os.listdir(tmp_path) == ["Line-1_a.b"]


def test_when_the_next_file_cannot_be_made_rows_go_to_the_open_one(tmp_path: Path) -> None:
    clock = Clock()
    rec = Recorder(tmp_path, RecordPolicy(max_file_bytes=1), clock=clock)
    streams, ts, values = batch(np.random.default_rng(11), 10, T0)
    rec.readings("r1", FEATURES, streams, ts, values)
    (first,) = files_of(tmp_path / "r1")
    # The name the size rotation will pick is taken (by a directory: O_EXCL refuses it).
    (tmp_path / "r1" / first.name.replace("000000", "000001")).mkdir()
    rec.readings("r1", FEATURES, streams, ts + 1, values)
    assert (rec.counters.record_errors, rec.counters.recorded_rows, len(data_lines(first))) == (
        1,
        20,
        20,
    )

    # A feature change cannot fall back on the old file: those rows are counted as lost.
    (tmp_path / "r1" / first.name.replace("000000", "000002")).mkdir()
    rec.readings("r1", ("value",), streams, ts + 2, values[:, :1])
    assert (rec.counters.record_errors, rec.counters.recorded_rows) == (2, 20)
    rec.readings("r1", FEATURES, streams, ts + 3, values)  # and it goes on with a new file
    rec.close()
    assert (rec.counters.record_errors, rec.counters.recorded_rows) == (2, 30)
    assert len(load_readings(tmp_path / "r1", FEATURES).streams) == 30


def test_an_active_routes_old_file_is_rotated_by_its_next_batch_new_file_first(
    tmp_path: Path,
) -> None:
    clock = Clock()
    rec = Recorder(tmp_path, RecordPolicy(max_file_age_s=100.0), clock=clock)
    streams, ts, values = batch(np.random.default_rng(12), 10, T0)
    rec.readings("r1", FEATURES, streams, ts, values)
    (first,) = files_of(tmp_path / "r1")
    clock.now = T0 + 90.0
    rec.readings("r1", FEATURES, streams, ts + 90, values)
    clock.now = T0 + 110.0
    rec.maintain(clock.now)  # old enough, but written 20 s ago: left to the next batch
    # the name it would rotate to is taken
    (tmp_path / "r1" / f"{READINGS_PREFIX}{utc_stamp(clock.now)}Z-000001.csv").mkdir()
    rec.readings("r1", FEATURES, streams, ts + 110, values)
    assert (rec.counters.record_errors, rec.counters.recorded_rows, len(data_lines(first))) == (
        1,
        30,
        30,
    )
