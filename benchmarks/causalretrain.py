"""Causal continual learning in the detection benchmarks: a variant's ``retrain=N``.

The daemon learns continually by ``sensord retrain`` on what it recorded, then a hot swap
(``Pipeline.replace_engine``, as daemon/routes.py reloads a route: core/swap.py). Here a
file is replayed in segments of N rows, and before the rows from ``k N`` are scored a
candidate is trained with sensord's trainer (``train``: the run's seed and ``--train``
options, one torch thread) on a CSV of rows before ``k N`` only, which NAB's and SKAB's
rules allow (learning from what came before). A candidate that is swapped in, the same
pipeline goes on with: each stream's scaling refitted, its model state re-primed on its
recent readings, its detector statistics and alert lifecycle kept. A retrain keeps the time
features of the bundle it replaces (``time_of_day``), as ``sensord retrain`` keeps the live
model's: the detector's state is laid out for them, so a bundle with others could not take
it over (one that has others all the same is not swapped in: skipped).

The gate (the default; ``gate=off`` swaps every candidate in, unjudged) is the daemon's
(training/retrain.py with training/judge.py, ``[retrain]`` at its defaults): the rows seen so
far are cut once by time, the newest ``holdout_fraction`` held back; streams with fewer than
``min_rows`` are left out; the candidate trains on the older part, then it and the bundle in
service are each run through a fresh core with the variant's settings, warmed up on the rows
just before the cut, and judged on the held-back rows (error away from alerts, alert rate;
no operator here, so no alert is confirmed and there is no NAB figure). Only a candidate
that is not worse within ``tolerance`` is swapped in. Each decision is recorded: promoted,
refused (the rules it broke), or skipped (why). Everything it reads is before ``k N``.

Both ways, as ``sensord retrain`` does, the rows around every alert the replay raised
before that point are left out of training (``exclude_margin_s`` either side of the span;
no operator calls one a false positive); a stream left with fewer rows than training needs
is left out, and with none left there is no retrain (skipped; the replay goes on with the
bundle it has, as a refused candidate leaves the daemon's).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64, Bools
from sensord.config.sections import RetrainSettings
from sensord.core.bundle import Bundle
from sensord.core.pipeline import Pipeline
from sensord.core.sample import Outcome
from sensord.errors import SensordError
from sensord.offline.replay import (
    DEFAULT_BATCH,
    ReplayResult,
    engine_for,
    engine_name,
    result_of,
    run_series,
)
from sensord.offline.series import OutOfOrder, Series, read_series
from sensord.ops.history import Recording
from sensord.ops.models import DataFigures, Figures
from sensord.training.data import MIN_ROWS_PER_STREAM
from sensord.training.judge import Split, failed_rules, judge
from sensord.training.options import TimeOfDay

RETRAIN = RetrainSettings()  # the daemon's [retrain] defaults: margin, holdout, tolerance
# As sensord retrain's RetrainOptions (training/retrain.py imports torch, so not from there):
WARMUP_ROWS = 200  # per stream, fed to each judged core before the cut and not judged
JUDGE_BATCH = 256  # rows per batch through a judged core
TRAINING_CSV = "training.csv"  # kept next to each retrained bundle: what it learnt from
Train = Callable[[Path, Path], Bundle]  # (training CSV, bundle folder) -> the bundle
Decision = Literal["promoted", "refused", "skipped"]


@dataclass(frozen=True)
class Retrain:
    """One retrain: from which row its decision held, what the candidate learnt from, how it
    was judged (with the gate) and what it cost."""

    at: int  # the first row scored after the decision
    rows: int  # the rows the candidate trained on, all before ``at``
    excluded: int  # rows it could have trained on, left out for being near an alert
    last_ts: float  # the newest timestamp it trained on (NaN: no candidate)
    seconds: float  # training, judging and the swap
    version: str = ""  # the candidate's version ("" when none was trained)
    skipped: str = ""  # why there was no decision on a candidate
    reasons: tuple[str, ...] = ()  # the rules a refused candidate broke
    holdout: int = 0  # rows held back to judge on (0: not judged, gate=off)
    judge_seconds: float = 0.0  # of ``seconds``, running both cores on the holdout
    live: Figures | None = None  # the bundle in service, on the holdout
    candidate: Figures | None = None  # the candidate, on the holdout

    @property
    def decision(self) -> Decision:
        """Promoted (swapped in), refused, or skipped."""
        if self.skipped:
            return "skipped"
        return "refused" if self.reasons else "promoted"

    def record(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "decision": self.decision}


@dataclass(frozen=True)
class HeldOut:
    """The rows seen before a retrain point, cut by time as ``sensord retrain`` cuts a
    recording: ``seen`` are the series' rows the recording holds, the split's masks over
    them."""

    seen: npt.NDArray[np.intp]
    recording: Recording
    split: Split

    def series_rows(self, mask: Bools, stop: int) -> Bools:
        """``mask`` (over the recording) as a mask of the series' first ``stop`` rows."""
        rows = np.zeros(stop, dtype=bool)
        rows[self.seen[mask]] = True
        return rows


def continual_replay(
    path: Path,
    pipeline: Pipeline,
    *,
    every: int,
    train: Train,
    work: Path,
    gate: bool = True,
    settings: RetrainSettings = RETRAIN,
    out_of_order: OutOfOrder = "drop",
    batch: int = DEFAULT_BATCH,
) -> tuple[ReplayResult, tuple[Retrain, ...]]:
    """Replay ``path`` through ``pipeline`` as ``replay`` does, retraining before every
    ``every``-th row on the rows before it (each candidate's CSV and bundle in
    ``work/row<k>``), judged before it is swapped in unless ``gate`` is off; the result's
    seconds are the replay's alone."""
    if every < 1:
        raise ValueError(f"retrain every {every} rows: must be >= 1")
    series = read_series(path, pipeline.bundle.features, out_of_order)
    step = gated_retrain if gate else retrain
    outcomes: list[Outcome | None] = []
    retrains: list[Retrain] = []
    seconds = 0.0
    for start in range(0, len(series.rows), every):
        if start:
            folder = work / f"row{start}"
            made = step(series, outcomes, pipeline, train=train, folder=folder, settings=settings)
            retrains.append(made)
        began = time.perf_counter()
        segment = range(start, min(start + every, len(series.rows)))
        outcomes += run_series(series, pipeline, batch, segment)
        seconds += time.perf_counter() - began
    return result_of(series, tuple(outcomes), pipeline, seconds), tuple(retrains)


def retrain(
    series: Series,
    outcomes: Sequence[Outcome | None],
    pipeline: Pipeline,
    *,
    train: Train,
    folder: Path,
    settings: RetrainSettings,
) -> Retrain:
    """Without the gate: train on the rows scored so far (``outcomes``: the first rows of
    ``series``) and swap the candidate into ``pipeline``, its engine of the same kind."""
    began, at = time.perf_counter(), len(outcomes)
    keep, excluded = training_rows(series, outcomes, settings.exclude_margin_s)
    if not keep.any():
        why = f"no stream has {MIN_ROWS_PER_STREAM} rows away from alerts"
        return Retrain(at, 0, excluded, math.nan, 0.0, skipped=why)
    made = candidate_of(series, keep, pipeline, train=train, folder=folder)
    if isinstance(made, str):
        return Retrain(at, 0, excluded, math.nan, time.perf_counter() - began, skipped=made)
    swap(pipeline, made)
    last = float(series.timestamps[: len(keep)][keep].max())
    seconds = time.perf_counter() - began
    return Retrain(at, int(keep.sum()), excluded, last, seconds, made.manifest.version)


def gated_retrain(
    series: Series,
    outcomes: Sequence[Outcome | None],
    pipeline: Pipeline,
    *,
    train: Train,
    folder: Path,
    settings: RetrainSettings,
) -> Retrain:
    """With the gate: train a candidate on the older rows scored so far, judge it and the
    bundle in service on the newest, and swap it into ``pipeline`` only if it is not worse
    (``sensord retrain``'s rules within ``settings.tolerance``)."""
    began, at = time.perf_counter(), len(outcomes)
    cut = held_out(series, outcomes, settings)
    if isinstance(cut, str):
        return Retrain(at, 0, 0, math.nan, 0.0, skipped=cut)
    data = cut.split.data
    keep = cut.series_rows(cut.split.train, at)
    last = float(series.timestamps[: len(keep)][keep].max())
    made = Retrain(at, data.training_rows, data.excluded_rows, last, 0.0, holdout=data.holdout_rows)
    candidate = candidate_of(series, keep, pipeline, train=train, folder=folder)
    if isinstance(candidate, str):  # no candidate: nothing trained on those rows
        made = dataclasses.replace(made, rows=0, last_ts=math.nan, skipped=candidate)
    elif candidate.manifest.graph.sha256 == pipeline.bundle.manifest.graph.sha256:
        why = "the candidate is the model in service"
        made = dataclasses.replace(made, version=candidate.manifest.version, skipped=why)
    else:
        made = judged(made, pipeline, candidate, cut, settings.tolerance)
    return dataclasses.replace(made, seconds=time.perf_counter() - began)


def judged(
    made: Retrain, pipeline: Pipeline, candidate: Bundle, cut: HeldOut, tolerance: float
) -> Retrain:
    """``made`` with the candidate judged against the bundle in service on the holdout (each
    through a fresh core with the variant's settings), swapped in if it passed."""
    began = time.perf_counter()
    live, new = (
        judge(bundle, pipeline.settings, cut.recording, cut.split, JUDGE_BATCH)
        for bundle in (pipeline.bundle, candidate)
    )
    made = dataclasses.replace(
        made,
        version=candidate.manifest.version,
        judge_seconds=time.perf_counter() - began,
        live=live,
        candidate=new,
    )
    if min(live.mae_rows, new.mae_rows) == 0:
        why = "the holdout has no scored readings away from alert spans to judge on"
        return dataclasses.replace(made, skipped=why)
    reasons = tuple(failed_rules(live, new, tolerance))
    if not reasons:
        swap(pipeline, candidate)
    return dataclasses.replace(made, reasons=reasons)


def held_out(
    series: Series, outcomes: Sequence[Outcome | None], settings: RetrainSettings
) -> HeldOut | str:
    """The rows scored so far (usable, in order) cut as ``sensord retrain`` cuts a route's
    recording: warm-up, holdout and training masks; or why there is too little to retrain."""
    at = len(outcomes)
    seen = np.flatnonzero(series.usable[:at] & series.in_order[:at])
    streams = np.asarray(series.streams, dtype=object)[seen]
    ts = series.timestamps[seen]
    keep = newest_rows(ts, streams, settings)
    if isinstance(keep, str):
        return keep
    kept_ts = np.sort(ts[keep])
    cut = float(kept_ts[int(len(kept_ts) * (1.0 - settings.holdout_fraction))])
    before, holdout = keep & (ts < cut), keep & (ts >= cut)
    near = near_alerts(series, outcomes, settings.exclude_margin_s)[seen]
    train, warm = before & ~near, np.zeros(len(seen), dtype=bool)
    for stream in dict.fromkeys(streams.tolist()):
        mine = streams == stream
        rows = np.flatnonzero(before & mine)  # file order is time order within a stream
        warm[rows[max(len(rows) - WARMUP_ROWS, 0) :]] = True
        if int((train & mine).sum()) < MIN_ROWS_PER_STREAM:
            train[mine] = False  # train would refuse the stream; it is still judged
    if not train.any():
        return (
            f"too little data: after leaving out {int((before & near).sum())} rows around "
            f"alerts, no stream has {MIN_ROWS_PER_STREAM} rows to train on"
        )
    recording = Recording(
        series.features, tuple(streams.tolist()), ts, series.values[seen], 1, 0, 0
    )
    data = DataFigures(
        recorded_rows=len(seen),
        streams=len(set(streams.tolist())),
        holdout_start=cut,
        holdout_end=float(kept_ts[-1]),
        holdout_rows=int(holdout.sum()),
        training_rows=int(train.sum()),
        excluded_rows=int((before & near).sum()),
    )
    # No operator: no alert is confirmed, so there are no windows to score NAB against.
    return HeldOut(seen, recording, Split(train, warm, holdout, near, {}, data))


def newest_rows(
    ts: F64, streams: npt.NDArray[np.object_], settings: RetrainSettings
) -> Bools | str:
    """The newest ``max_rows`` rows less every stream with fewer than ``min_rows`` of them
    (too little of it to learn from or judge on), or why nothing is left."""
    keep = np.zeros(len(ts), dtype=bool)
    keep[np.argsort(ts, kind="stable")[-settings.max_rows :]] = True
    counts = {s: int((keep & (streams == s)).sum()) for s in dict.fromkeys(streams.tolist())}
    for stream, count in counts.items():
        if count < settings.min_rows:
            keep[streams == stream] = False
    if keep.any():
        return keep
    most = max(counts.items(), key=lambda item: item[1], default=("(none)", 0))
    return (
        f"too little data: no stream has {settings.min_rows} rows "
        f"(most: {most[1]}, stream {most[0]})"
    )


def candidate_of(
    series: Series, keep: Bools, pipeline: Pipeline, *, train: Train, folder: Path
) -> Bundle | str:
    """A candidate trained on the rows of ``series`` where ``keep`` is True (its CSV and
    bundle in ``folder``), or why there is none that ``pipeline`` could take."""
    folder.mkdir(parents=True, exist_ok=True)
    write_rows(folder / TRAINING_CSV, series, keep)
    try:
        bundle = train(folder / TRAINING_CSV, folder)
    except SensordError as exc:  # the trainer refused these rows: the bundle in use stays
        return str(exc)
    if bundle.manifest.time_features != pipeline.bundle.manifest.time_features:
        return f"time features {bundle.manifest.time_features}: not the running bundle's"
    return bundle


def swap(pipeline: Pipeline, bundle: Bundle) -> None:
    """``bundle`` into the running ``pipeline``, its engine of the same kind (the hot swap)."""
    pipeline.replace_engine(engine_for(bundle, engine_name(pipeline.engine)))


def time_of_day(bundle: Bundle) -> TimeOfDay:
    """What keeps a retrained bundle's time features those of ``bundle``."""
    return "on" if bundle.manifest.time_features else "off"


def near_alerts(series: Series, outcomes: Sequence[Outcome | None], margin_s: float) -> Bools:
    """Which of the first ``len(outcomes)`` rows (usable, in time order) are within
    ``margin_s`` of an alert's span in their stream."""
    stop = len(outcomes)
    candidates = series.usable[:stop] & series.in_order[:stop]
    alert = np.asarray([o is not None and o.alert for o in outcomes], dtype=bool)
    streams, ts = np.asarray(series.streams[:stop]), series.timestamps[:stop]
    near = np.zeros(stop, dtype=bool)
    for stream in series.stream_names:
        rows = np.flatnonzero((streams == stream) & candidates)
        for first, end in alert_spans(ts[rows], alert[rows]):
            near[rows] |= (ts[rows] >= first - margin_s) & (ts[rows] <= end + margin_s)
    return near


def training_rows(
    series: Series, outcomes: Sequence[Outcome | None], margin_s: float
) -> tuple[Bools, int]:
    """Which of the first ``len(outcomes)`` rows train: usable, in time order, and not within
    ``margin_s`` of an alert's span in their stream; and how many were left out for that."""
    stop = len(outcomes)
    near = near_alerts(series, outcomes, margin_s)
    candidates = series.usable[:stop] & series.in_order[:stop] & ~near
    streams = np.asarray(series.streams[:stop])
    keep = np.zeros(stop, dtype=bool)
    for stream in series.stream_names:
        kept = np.flatnonzero((streams == stream) & candidates)
        if len(kept) >= MIN_ROWS_PER_STREAM:  # fewer: training would refuse the stream
            keep[kept] = True
    return keep, int(near.sum())


def alert_spans(ts: F64, up: Bools) -> list[tuple[float, float]]:
    """Each run of rows with an alert up, as (its first row's time, the time of the row that
    cleared it; infinity while it is still up), as the daemon's recording spans alerts."""
    edges = np.diff(np.concatenate([[0], up.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [
        (float(ts[a]), float(ts[b]) if b < len(ts) else math.inf)
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True)
    ]


def write_rows(path: Path, series: Series, keep: Bools) -> None:
    """The rows of ``series`` where ``keep`` is True (``keep`` covers its first rows), as
    they are in its file."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(series.header)
        writer.writerows(series.rows[i] for i in np.flatnonzero(keep).tolist())
