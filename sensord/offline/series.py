"""Reading a sensor history CSV: a ``timestamp`` column, numeric feature columns and, in the
long format, a ``stream`` column naming which sensor each row belongs to.

Rules, shared by ``train`` and ``replay``:

- the first line is the header; ``timestamp`` is required (ISO 8601, or epoch seconds/ms);
- every other column is a feature unless named ``stream`` or left out by ``features=``;
- a feature cell that is empty, ``nan`` or ``inf`` makes its row *skipped*: counted, reported,
  and in replay kept in the output with no score (the daemon would reject such a reading);
- any other non-number in a feature cell, an unparsable timestamp, or a row with the wrong
  number of cells is fatal, reported as ``FILE line N, column C: reason``;
- a timestamp that is not after the latest earlier one of the same stream (a clock that
  jumped back, a repeated row) is fatal by default (``out_of_order="error"``); with
  ``out_of_order="drop"`` such rows are kept but marked, and treated as the daemon treats a
  late or duplicate reading: left out of training, given no score in replay, and counted.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from sensord.core.timestamps import format_timestamp, parse_timestamp
from sensord.errors import InputError

TIMESTAMP = "timestamp"
STREAM = "stream"
DEFAULT_STREAM = "default"
OutOfOrder = Literal["error", "drop"]
_MISSING_TOKENS = frozenset({"", "nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity"})


@dataclass(frozen=True)
class Series:
    """A CSV file read into columns. Row i of every array is data line i (file line i + 2)."""

    path: Path
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    features: tuple[str, ...]
    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    streams: tuple[str, ...]
    usable: npt.NDArray[np.bool_]
    in_order: npt.NDArray[np.bool_]

    @property
    def skipped(self) -> int:
        """Rows with an empty or non-finite feature cell."""
        return int((~self.usable).sum())

    @property
    def out_of_order(self) -> int:
        """Rows whose timestamp is not after an earlier row's of the same stream."""
        return int((~self.in_order).sum())

    @property
    def stream_names(self) -> tuple[str, ...]:
        """Distinct stream ids in order of first appearance."""
        return tuple(dict.fromkeys(self.streams))

    def stream_rows(self, stream: str) -> npt.NDArray[np.intp]:
        """Indices of the rows of one stream, in time order."""
        return np.flatnonzero(np.asarray(self.streams) == stream)


def line_of(row_index: int) -> int:
    """The file line number of data row ``row_index`` (the header is line 1)."""
    return row_index + 2


def read_series(
    path: Path, features: Sequence[str] | None = None, out_of_order: OutOfOrder = "error"
) -> Series:
    """Read and check a history CSV; raise InputError naming the file, line and column at fault.

    ``features`` selects the feature columns (all must exist); by default every column other
    than ``timestamp`` and ``stream`` is one.
    """
    header, rows = _read_rows(path)
    feature_names = _select_features(path, header, features)
    ts_col = header.index(TIMESTAMP)
    stream_col = header.index(STREAM) if STREAM in header else None
    feature_cols = [header.index(name) for name in feature_names]

    n = len(rows)
    timestamps = np.empty(n, dtype=np.float64)
    values = np.empty((n, len(feature_names)), dtype=np.float64)
    streams: list[str] = []
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise InputError(
                f"{path} line {line_of(i)}: has {len(row)} cells but the header has {len(header)}"
            )
        timestamps[i] = _parse_time_cell(path, i, row[ts_col])
        values[i] = [_parse_value_cell(path, i, header[c], row[c]) for c in feature_cols]
        streams.append(
            _parse_stream_cell(path, i, row[stream_col])
            if stream_col is not None
            else DEFAULT_STREAM
        )
    in_order = _time_order(path, timestamps, streams, fatal=out_of_order == "error")
    usable = np.asarray(np.isfinite(values).all(axis=1), dtype=bool)
    return Series(
        path=path,
        header=tuple(header),
        rows=tuple(tuple(r) for r in rows),
        features=tuple(feature_names),
        timestamps=timestamps,
        values=values,
        streams=tuple(streams),
        usable=usable,
        in_order=in_order,
    )


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a CSV file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [row for row in reader if row]
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if header is None:
        raise InputError(f"{path}: empty file, expected a header line with a 'timestamp' column")
    header = [name.strip() for name in header]
    if TIMESTAMP not in header:
        raise InputError(f"{path} line 1: no 'timestamp' column (columns: {', '.join(header)})")
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise InputError(f"{path} line 1: duplicated column(s) {', '.join(duplicated)}")
    return header, rows


def _select_features(path: Path, header: list[str], features: Sequence[str] | None) -> list[str]:
    if features is None:
        chosen = [name for name in header if name not in (TIMESTAMP, STREAM)]
        if not chosen:
            raise InputError(
                f"{path} line 1: no feature column; besides 'timestamp' (and 'stream') "
                "the file needs at least one numeric column"
            )
        return chosen
    missing = [name for name in features if name not in header]
    if missing:
        raise InputError(
            f"{path} line 1: missing feature column(s) {', '.join(missing)} "
            f"(the file has: {', '.join(header)})"
        )
    return list(features)


def _parse_time_cell(path: Path, index: int, cell: str) -> float:
    try:
        return parse_timestamp(cell)
    except ValueError as exc:
        raise InputError(f"{path} line {line_of(index)}, column 'timestamp': {exc}") from None


def _parse_value_cell(path: Path, index: int, column: str, cell: str) -> float:
    text = cell.strip()
    if text.lower() in _MISSING_TOKENS:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"{path} line {line_of(index)}, column {column!r}: {cell!r} is not a number"
        ) from None


def _parse_stream_cell(path: Path, index: int, cell: str) -> str:
    text = cell.strip()
    if not text:
        raise InputError(f"{path} line {line_of(index)}, column 'stream': empty stream id")
    return text


def _time_order(
    path: Path, timestamps: npt.NDArray[np.float64], streams: list[str], fatal: bool
) -> npt.NDArray[np.bool_]:
    """Which rows are after every earlier row of their stream; raise on the first that is
    not if ``fatal``."""
    latest: dict[str, int] = {}
    in_order = np.ones(len(streams), dtype=bool)
    for i, stream in enumerate(streams):
        previous = latest.get(stream)
        if previous is not None and timestamps[i] <= timestamps[previous]:
            if fatal:
                what = "repeats" if timestamps[i] == timestamps[previous] else "is before"
                of_stream = f" of stream {stream!r}" if stream != DEFAULT_STREAM else ""
                raise InputError(
                    f"{path} line {line_of(i)}, column 'timestamp': "
                    f"{format_timestamp(float(timestamps[i]))} {what} line {line_of(previous)}"
                    f"{of_stream}; rows must be in increasing time order (sort the file, or "
                    "drop such rows as the daemon does: --out-of-order drop)"
                )
            in_order[i] = False
        else:
            latest[stream] = i
    return in_order
