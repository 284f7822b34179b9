"""``sensord retrain``: fit a candidate on a route's recording, judge it against the model in
service on the newest data, and promote it only if it is not worse.

The recording is cut once by time: everything before the cut may train, the newest
``holdout_fraction`` judges. Training leaves out the rows around every alert span unless an
operator called that alert a false positive (then the model should learn that it was
normal). Both models are judged by the daemon's own core (``Pipeline.process_batch``, the
route's detector settings), each warmed up on the rows just before the cut, on three
figures: the error of the expected values in raw units away from alert spans, the alert
rate, and a NAB score against the alerts operators confirmed. Every outcome, including
"skipped", is appended to the route's decision log.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from sensord.arrays import Bools
from sensord.config import Settings, route_name
from sensord.core.bundle import Bundle, Manifest, load_bundle
from sensord.logs import get_logger
from sensord.ops.feedback import read_verdicts
from sensord.ops.history import (
    AlertSpan,
    Recording,
    load_alert_spans,
    load_readings,
    write_training_csv,
)
from sensord.ops.models import (
    CANDIDATES,
    TRAINING_CSV,
    DataFigures,
    Decision,
    Outcome,
    install,
    log_decision,
    managed_route_dir,
    route_lock,
    switch,
)
from sensord.training.data import MIN_ROWS_PER_STREAM
from sensord.training.judge import Split, Windows, failed_rules, judge
from sensord.training.options import FitOptions, TrainOptions
from sensord.training.train import train_bundle

log = get_logger(__name__)
KEEP_CANDIDATES = 5  # refused candidates kept per route for inspection, newest first


@dataclass(frozen=True)
class RetrainOptions:
    epochs: int | None = None  # default: settings.retrain.epochs
    seed: int = 0  # fixed: the same recording gives the same candidate
    warmup_rows: int = 200  # per stream, fed before the cut and not judged
    batch: int = 256


def retrain_route(
    settings: Settings, index: int, options: RetrainOptions | None = None
) -> Decision:
    """Retrain route ``index`` from its recording; promote, refuse or skip, and log it."""
    options = options or RetrainOptions()
    route = settings.routes[index]
    # A named route is checked before its bundle is read: a route not yet promoted is told
    # how to fix that, not that its current link does not exist.
    name = route.name or route_name(index, route, load_bundle(route.bundle).manifest.name)
    route_dir = managed_route_dir(settings.models_dir, name, route.bundle)
    with route_lock(route_dir):
        started, now = time.perf_counter(), time.time()
        live = load_bundle(route.bundle.resolve())  # this version, even if current moves
        decision = _decide(
            settings, index, name=name, route_dir=route_dir, live=live, options=options
        )
        decision = replace(decision, time=now, seconds=time.perf_counter() - started)
        log_decision(route_dir, decision.record())
    _log(decision)
    return decision


def _decide(
    settings: Settings,
    index: int,
    *,
    name: str,
    route_dir: Path,
    live: Bundle,
    options: RetrainOptions,
) -> Decision:
    records = settings.records_dir / name
    recording = load_readings(records, live.features)
    if not recording.streams:
        return _skipped(name, f"no recording in {records}", _recorded(recording))
    split = _split(settings, recording, load_alert_spans(records), options.warmup_rows)
    if isinstance(split, str):
        return _skipped(name, split, _recorded(recording))
    epochs = options.epochs or settings.retrain.epochs
    fit = _train_options(live.manifest, epochs, options.seed, settings.retrain.threads)
    candidate_dir = _train_candidate(route_dir, recording, split, fit)
    candidate = load_bundle(candidate_dir)
    if candidate.manifest.graph.sha256 == live.manifest.graph.sha256:
        shutil.rmtree(candidate_dir)
        return _skipped(name, "the candidate is the model in service", split.data)
    pipeline_settings = settings.pipeline_settings(settings.routes[index])
    live_figures, candidate_figures = (
        judge(bundle, pipeline_settings, recording, split, options.batch)
        for bundle in (live, candidate)
    )
    if min(live_figures.mae_rows, candidate_figures.mae_rows) == 0:
        shutil.rmtree(candidate_dir, ignore_errors=True)
        reason = "the holdout has no scored readings away from alert spans to judge on"
        return _skipped(name, reason, split.data)
    reasons = failed_rules(live_figures, candidate_figures, settings.retrain.tolerance)
    if reasons:
        _prune_candidates(route_dir / CANDIDATES)
        outcome: Outcome = "refused"
    else:
        install(route_dir, candidate_dir)
        switch(route_dir, candidate.manifest.version)
        shutil.rmtree(candidate_dir)  # its bundle and training.csv now live in versions/
        outcome = "promoted"
    kept = candidate_dir if outcome == "refused" else None
    return Decision(
        name, outcome, tuple(reasons), live_figures, candidate_figures, split.data, kept, 0, 0
    )


def _skipped(name: str, reason: str, data: DataFigures) -> Decision:
    return Decision(name, "skipped", (reason,), None, None, data, None, 0, 0)


def _recorded(recording: Recording) -> DataFigures:
    return DataFigures(
        recorded_rows=len(recording.streams),
        files=recording.files,
        torn=recording.torn,
        duplicates=recording.duplicates,
        skipped_files=recording.skipped_files,
        streams=len(set(recording.streams)),
    )


def _stream_ranges(recording: Recording) -> dict[str, tuple[int, int]]:
    """Each stream's rows ``[lo, hi)``: the recording is sorted by (stream, ts)."""
    ranges: dict[str, tuple[int, int]] = {}
    for i, stream in enumerate(recording.streams):
        lo, _ = ranges.get(stream, (i, i))
        ranges[stream] = (lo, i + 1)
    return ranges


def _split(
    settings: Settings, recording: Recording, spans: list[AlertSpan], warmup_rows: int
) -> Split | str:
    """The masks for training, warm-up and holdout, or why there is too little to retrain."""
    retrain, ts = settings.retrain, recording.timestamps
    ranges = _stream_ranges(recording)
    keep = np.zeros(len(ts), dtype=bool)
    keep[np.argsort(ts, kind="stable")[-retrain.max_rows :]] = True  # the newest rows
    counts = {s: int(keep[lo:hi].sum()) for s, (lo, hi) in ranges.items()}
    for stream, (lo, hi) in ranges.items():
        if counts[stream] < retrain.min_rows:
            keep[lo:hi] = False  # too little of it to learn from or judge on
    if not keep.any():
        most = max(counts.items(), key=lambda item: item[1], default=("(none)", 0))
        return (
            f"too little data: no stream has {retrain.min_rows} recorded rows "
            f"(most: {most[1]}, stream {most[0]})"
        )
    kept_ts = np.sort(ts[keep])
    cut = float(kept_ts[int(len(kept_ts) * (1.0 - retrain.holdout_fraction))])
    before, holdout = keep & (ts < cut), keep & (ts >= cut)
    excluded, windows, counted = _exclusions(
        settings, recording, ranges, spans, before=before, holdout=holdout
    )
    train = before & ~excluded
    warm = np.zeros(len(ts), dtype=bool)
    for lo, hi in ranges.values():
        rows = lo + np.flatnonzero(before[lo:hi])
        warm[rows[max(len(rows) - warmup_rows, 0) :]] = True
        if int(train[lo:hi].sum()) < MIN_ROWS_PER_STREAM:
            train[lo:hi] = False  # train would refuse the stream; it is still judged
    if not train.any():
        return (
            f"too little data: after leaving out {int((before & excluded).sum())} rows around "
            f"alerts, no stream has {MIN_ROWS_PER_STREAM} rows to train on"
        )
    data = DataFigures(
        **{
            **asdict(_recorded(recording)),
            "holdout_start": cut,
            "holdout_end": float(kept_ts[-1]),
            "holdout_rows": int(holdout.sum()),
            "training_rows": int(train.sum()),
            "excluded_rows": int((before & excluded).sum()),
            **counted,
        }
    )
    return Split(train, warm, holdout, excluded, windows, data)


def _exclusions(
    settings: Settings,
    recording: Recording,
    ranges: dict[str, tuple[int, int]],
    spans: list[AlertSpan],
    *,
    before: Bools,
    holdout: Bools,
) -> tuple[Bools, Windows, dict[str, int]]:
    """Rows around alerts not called false positives; NAB windows of confirmed alerts."""
    verdicts = read_verdicts(settings.feedback_file)
    margin, ts = settings.retrain.exclude_margin_s, recording.timestamps
    excluded = np.zeros(len(ts), dtype=bool)
    windows: Windows = {}
    counted = {"excluded_alerts": 0, "false_positives_relearnt": 0, "labelled_windows": 0}
    for span in spans:
        lo, hi = ranges.get(span.stream, (0, 0))
        a = lo + int(np.searchsorted(ts[lo:hi], span.start - margin, side="left"))
        b = lo + int(np.searchsorted(ts[lo:hi], span.end + margin, side="right"))
        verdict = verdicts.get(span.alert_id)
        if verdict == "false_positive":
            counted["false_positives_relearnt"] += int(before[a:b].any())
            continue
        counted["excluded_alerts"] += int(before[a:b].any())
        excluded[a:b] = True
        if verdict == "confirmed" and holdout[a:b].any():
            # The alert's span widened as training leaves it out: a candidate that sees
            # the anomaly a little earlier than the live model did is not punished.
            windows.setdefault(span.stream, []).append((float(ts[a]), float(ts[b - 1])))
            counted["labelled_windows"] += 1
    return excluded, windows, counted


def _train_candidate(
    route_dir: Path, recording: Recording, split: Split, options: TrainOptions
) -> Path:
    """Train into a fresh directory, then name it by the candidate's version."""
    candidates = route_dir / CANDIDATES
    for stale in candidates.glob(".work-*"):  # left by a crash: the route lock is ours
        shutil.rmtree(stale, ignore_errors=True)
    work = candidates / f".work-{uuid.uuid4().hex}"
    work.mkdir(parents=True)
    try:
        write_training_csv(work / TRAINING_CSV, recording, split.train)
        report = train_bundle(work / TRAINING_CSV, work, options)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    target = candidates / report.bundle.manifest.version
    if target.exists():  # the same candidate trained before: this one replaces it
        shutil.rmtree(target)
    work.rename(target)
    return target


def _train_options(live: Manifest, epochs: int, seed: int, threads: int) -> TrainOptions:
    """The live model's architecture and training options; the epochs, seed and torch
    threads given.

    ``[retrain] threads``, one by default: retraining runs beside the daemon and must not
    take its core (and with one thread the candidate does not depend on how many cores the
    machine has).
    """
    given = live.training.hyperparameters
    values: dict[str, Any] = {}
    for field in fields(FitOptions):
        default = getattr(FitOptions(), field.name)
        value = given.get(field.name, default)
        values[field.name] = type(default)(value)  # the manifest keeps them as JSON numbers
    values.update(epochs=epochs, cell=live.cell, layers=live.layers, hidden=live.hidden, seed=seed)
    return TrainOptions(
        name=live.name,
        features=live.features,
        out_of_order="drop",
        time_of_day="on" if live.time_features else "off",
        transform=live.transform,
        validation_fraction=float(given.get("validation_fraction", 0.2)),
        fit=FitOptions(**values),
        threads=threads,
        cross=live.heads.cross is not None,  # (the spread and horizon are fit options)
    )


def _prune_candidates(folder: Path) -> None:
    """Keep the newest KEEP_CANDIDATES refused candidates: they are for inspection only."""
    kept = sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in kept[KEEP_CANDIDATES:]:
        shutil.rmtree(old, ignore_errors=True)


def _log(decision: Decision) -> None:
    record = decision.record()
    for side in ("live", "candidate"):
        figures = record.pop(side) or {}
        record.update({f"{side}_{key}": value for key, value in figures.items()})
    log.info("retrain decision", **record)
