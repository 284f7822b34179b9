"""``sensord replay``: run a CSV through the daemon's core, row by row, and write the result.

Rows go to the core in time order in micro-batches, as the daemon would receive them; the
core splits each batch into waves, so each stream advances one step at a time and the score
of a row depends only on rows up to it. Rows with an empty or non-finite cell are not given
to the core (the daemon rejects such readings); they keep their place in the result with no
score, and are counted. The engine predicts each reading: the bundle's network, or (to see
what the network adds) "repeat the last value" with everything else the same (``ENGINES``).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sensord.core.alert import AlertEvent
from sensord.core.bundle import Bundle, load_bundle
from sensord.core.engine import Engine, PersistenceEngine, StepEngine
from sensord.core.pipeline import Pipeline, PipelineSettings
from sensord.core.sample import Outcome, Sample
from sensord.errors import InputError
from sensord.offline.series import OutOfOrder, Series, read_series

DEFAULT_BATCH = 256
# What predicts each stream's next reading: the bundle's network, or "repeat the last value"
# (the yardstick the network is measured against: same scaling, time features, calibration
# and detector, so a difference in the alerts is the network's). The first is the default.
ENGINES = ("lstm", "persistence")
ENGINES_HELP = (
    "what predicts each reading: the bundle's network, or (persistence) \"repeat the last "
    "value\" with the bundle's scaling and calibration, to see what the network adds"
)


@dataclass(frozen=True)
class ReplayResult:
    series: Series
    outcomes: tuple[Outcome | None, ...]  # per row; None for a skipped row
    events: tuple[AlertEvent, ...]
    threshold: float
    seconds: float
    engine: str = ENGINES[0]  # which of ENGINES predicted

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
    return result_of(series, outcomes, pipeline, seconds)


def result_of(
    series: Series, outcomes: tuple[Outcome | None, ...], pipeline: Pipeline, seconds: float
) -> ReplayResult:
    """The result of ``series`` replayed through ``pipeline``: its ``outcomes``, one per row."""
    events = tuple(o.event for o in outcomes if o is not None and o.event is not None)
    threshold = pipeline.detector.threshold
    return ReplayResult(series, outcomes, events, threshold, seconds, engine_name(pipeline.engine))


def run_series(
    series: Series, pipeline: Pipeline, batch: int = DEFAULT_BATCH, rows: range | None = None
) -> tuple[Outcome | None, ...]:
    """Every usable row of ``series`` (of ``rows`` only, if given) through ``pipeline``, in
    time order, in micro-batches; one outcome per row of ``rows`` (None for a row that was
    not usable)."""
    if batch < 1:
        raise InputError(f"batch size {batch} must be >= 1")
    rows = range(len(series.rows)) if rows is None else rows
    usable = [i for i in rows if series.usable[i]]
    outcomes: list[Outcome | None] = [None] * len(rows)
    for start in range(0, len(usable), batch):
        chosen = usable[start : start + batch]
        times = series.timestamps[chosen].tolist()
        samples = [
            Sample(series.streams[i], t, series.values[i])
            for i, t in zip(chosen, times, strict=True)
        ]
        for row, outcome in zip(chosen, pipeline.process(samples), strict=True):
            outcomes[rows.index(row)] = outcome
    return tuple(outcomes)


def engine_for(bundle: Bundle, name: str) -> StepEngine:
    """The engine ``name`` (one of ENGINES) over ``bundle``: ``sensord replay --engine`` and
    the benchmarks' ``model=`` choose with this one switch."""
    if name == "lstm":
        return Engine(bundle)
    if name == "persistence":
        return PersistenceEngine(bundle)
    raise InputError(f"engine {name!r} is not one of {', '.join(ENGINES)}")


def engine_name(engine: StepEngine) -> str:
    """Which of ENGINES ``engine`` is (any engine that runs a network is the first)."""
    return "persistence" if isinstance(engine, PersistenceEngine) else ENGINES[0]


def open_pipeline(
    bundle_path: Path, settings: PipelineSettings | None = None, engine: str = ENGINES[0]
) -> Pipeline:
    """Load a bundle (hash and shapes verified) and build the core for it, predicting with
    ``engine`` (one of ENGINES)."""
    return Pipeline(engine_for(load_bundle(bundle_path), engine), settings)


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
