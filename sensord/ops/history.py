"""Reading recordings back, for retraining: the readings of a route, and its alert spans.

recording.py writes them; this module reads them as ``sensord retrain`` needs them: every file
of the route with the bundle's features, rows in (stream, time) order, each (stream,
timestamp) once (a crash can make the broker deliver a reading again, and it is recorded
twice), torn lines skipped and counted.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64
from sensord.ops.recording import ALERTS_FILE, ALERTS_HEADER, EVENTS, csv_text, readings_files


@dataclass(frozen=True)
class Recording:
    features: tuple[str, ...]
    streams: tuple[str, ...]  # one per row
    timestamps: F64  # epoch s
    values: F64  # (n, F)
    files: int  # files read
    torn: int  # torn or unparsable lines skipped
    duplicates: int  # (stream, ts) seen again, kept once
    skipped_files: int = 0  # other features, or no complete header


def load_readings(route_dir: Path, features: Sequence[str]) -> Recording:
    """Every readings file of a route with header ``timestamp,stream,<features>``, rows sorted
    by (stream, ts), each (stream, ts) once (the first recorded)."""
    names = tuple(features)
    header = csv_text([("timestamp", "stream", *names)]).encode()
    streams: list[str] = []
    numbers: list[list[float]] = []
    files = torn = skipped = 0
    for path, _seq in readings_files(route_dir):
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        if not data.startswith(header):  # other features, unreadable, or a torn header
            skipped += 1
            continue
        files += 1
        torn += _parse(data[len(header) :], len(names), streams, numbers)
    array = np.asarray(numbers, dtype=np.float64).reshape(len(numbers), 1 + len(names))
    order, duplicates = _sorted_unique(streams, array[:, 0])
    ordered = tuple(streams[i] for i in order)
    ts, values = np.ascontiguousarray(array[order, 0]), np.ascontiguousarray(array[order, 1:])
    return Recording(names, ordered, ts, values, files, torn, duplicates, skipped)


def _parse(body: bytes, width: int, streams: list[str], numbers: list[list[float]]) -> int:
    """Append the rows of a file's body; return how many lines were torn or unparsable."""
    lines = body.split(b"\n")
    torn = 1 if lines[-1] else 0  # no newline after the last line: cut off mid-write
    bad = 0
    for line in lines[:-1]:
        try:
            cells = line.decode().split(",")  # stream ids hold no commas or quotes
            row = [float(cells[0]), *map(float, cells[2:])]
        except (UnicodeDecodeError, ValueError):
            cells, row = [], [math.nan]
        if len(cells) == width + 2 and cells[1] and math.isfinite(row[0]):
            streams.append(cells[1])
            numbers.append(row)
        else:
            bad += 1
    return torn + bad


def _sorted_unique(streams: list[str], ts: F64) -> tuple[npt.NDArray[np.intp], int]:
    """Row order by (stream, ts), dropping all but the first row of each (stream, ts)."""
    _, codes = np.unique(np.asarray(streams, dtype=object), return_inverse=True)
    order = np.lexsort((ts, codes))  # stable: the earliest recorded of equal keys comes first
    same = (codes[order][1:] == codes[order][:-1]) & (ts[order][1:] == ts[order][:-1])
    keep = np.concatenate(([True], ~same)) if len(order) else np.zeros(0, dtype=bool)
    return order[keep], int(same.sum())


def write_training_csv(
    path: Path, recording: Recording, keep: npt.NDArray[np.bool_] | None = None
) -> None:
    """Write the long CSV ``sensord train`` reads, rows where ``keep`` is True (all by
    default). Raises OSError if the file cannot be written."""
    n = len(recording.streams)
    mask = np.ones(n, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(f"keep has shape {mask.shape}, the recording {n} rows")
    chosen = np.flatnonzero(mask).tolist()
    ts, values = recording.timestamps.tolist(), recording.values.tolist()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("timestamp", "stream", *recording.features))
        writer.writerows([ts[i], recording.streams[i], *values[i]] for i in chosen)


@dataclass(frozen=True)
class AlertSpan:
    alert_id: str
    stream: str
    start: float  # raised ts
    end: float  # cleared ts, or math.inf while still open


def load_alert_spans(route_dir: Path) -> list[AlertSpan]:
    """The route's alerts as spans, ordered by start. Each alert id once: a repeated line
    (logged again after a crash) changes nothing, and the start comes from ``raised_ts``,
    which every line carries, so a lost ``raised`` line still gives the span."""
    try:
        text = (route_dir / ALERTS_FILE).read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return []
    lines = text.split("\n")[:-1]  # the part after the last newline is torn or empty
    starts: dict[str, tuple[str, float]] = {}
    ends: dict[str, float] = {}
    for line in lines:
        row = line.split(",")  # ids, streams and events hold no commas or quotes
        if len(row) != len(ALERTS_HEADER) or row[2] not in EVENTS:
            continue  # the header, a torn line joined to the next, or garbage
        alert_id, stream, event = row[:3]
        try:
            ts, start = float(row[3]), float(row[4])
        except ValueError:
            continue
        starts.setdefault(alert_id, (stream, start))
        if event == "cleared":
            ends[alert_id] = max(ends.get(alert_id, -math.inf), ts)
    spans = [
        AlertSpan(alert_id, stream, start, ends.get(alert_id, math.inf))
        for alert_id, (stream, start) in starts.items()
    ]
    return sorted(spans, key=lambda span: (span.start, span.stream, span.alert_id))
