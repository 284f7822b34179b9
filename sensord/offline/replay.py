"""``sensord replay``: run a CSV through the daemon's core, row by row, and write the result.

Rows go to the core in time order in micro-batches, as the daemon would receive them; the
core splits each batch into waves, so each stream advances one step at a time and the score
of a row depends only on rows up to it. Rows with an empty or non-finite cell are not given
to the core (the daemon rejects such readings); they keep their place in the result with no
score, and are counted.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sensord.core.alert import AlertEvent
from sensord.core.bundle import load_bundle
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline, PipelineSettings
from sensord.core.sample import Outcome, Sample
from sensord.errors import InputError
from sensord.offline.series import OutOfOrder, Series, read_series

DEFAULT_BATCH = 256


@dataclass(frozen=True)
class ReplayResult:
    series: Series
    outcomes: tuple[Outcome | None, ...]  # per row; None for a skipped row
    events: tuple[AlertEvent, ...]
    threshold: float
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return len(self.outcomes) / self.seconds if self.seconds > 0 else math.inf


def replay(
    data_path: Path,
    pipeline: Pipeline,
    batch: int = DEFAULT_BATCH,
    out_of_order: OutOfOrder = "error",
) -> ReplayResult:
    """Run every usable row of ``data_path`` through ``pipeline`` in time order."""
    series = read_series(data_path, pipeline.bundle.features, out_of_order)
    started = time.perf_counter()
    outcomes = run_series(series, pipeline, batch)
    seconds = time.perf_counter() - started
    events = tuple(o.event for o in outcomes if o is not None and o.event is not None)
    return ReplayResult(series, outcomes, events, pipeline.detector.threshold, seconds)


def run_series(
    series: Series, pipeline: Pipeline, batch: int = DEFAULT_BATCH
) -> tuple[Outcome | None, ...]:
    """Every usable row of ``series`` through ``pipeline``, in time order, in micro-batches;
    one outcome per row (None for a row that was not usable)."""
    if batch < 1:
        raise InputError(f"batch size {batch} must be >= 1")
    usable = [i for i in range(len(series.rows)) if series.usable[i]]
    outcomes: list[Outcome | None] = [None] * len(series.rows)
    for start in range(0, len(usable), batch):
        rows = usable[start : start + batch]
        times = series.timestamps[rows].tolist()
        samples = [
            Sample(series.streams[i], t, series.values[i]) for i, t in zip(rows, times, strict=True)
        ]
        for row, outcome in zip(rows, pipeline.process(samples), strict=True):
            outcomes[row] = outcome
    return tuple(outcomes)


def open_pipeline(bundle_path: Path, settings: PipelineSettings | None = None) -> Pipeline:
    """Load a bundle (hash and shapes verified) and build the core for it."""
    return Pipeline(Engine(load_bundle(bundle_path)), settings)


def result_columns(series: Series) -> list[str]:
    added = [f"expected_{name}" for name in series.features]
    return [*series.header, *added, "error", "score", "alert", "event"]


def result_rows(result: ReplayResult) -> Iterator[list[str]]:
    """The input cells of each row, then expected values, error, score, alert and event."""
    alert = False
    nothing = [""] * len(result.series.features)
    for cells, outcome in zip(result.series.rows, result.outcomes, strict=True):
        if outcome is None:
            yield [*cells, *nothing, "", "", "1" if alert else "0", ""]
            continue
        alert = outcome.alert
        expected = nothing if outcome.expected is None else [_num(v) for v in outcome.expected]
        event = outcome.event.event if outcome.event is not None else ""
        yield [
            *cells,
            *expected,
            _num(outcome.error),
            _num(outcome.score),
            "1" if alert else "0",
            event,
        ]


def write_result(path: Path, result: ReplayResult) -> None:
    """Write RESULT.csv: the input columns plus the core's columns, one line per input row."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(result_columns(result.series))
            writer.writerows(result_rows(result))
    except OSError as exc:
        raise InputError(f"{path}: cannot write the result ({exc.strerror})") from None


def _num(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6g}"
