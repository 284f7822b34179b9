"""Waves, and one wave's step through the core in three parts: predict, judge, emit.

**Waves**: a micro-batch may hold several samples of one fast stream. Wave k holds the k-th
sample of every stream that has one, in arrival order (``split_waves``); stepping the waves
in turn gives every stream its samples in order while the engine still runs one batched
step per wave. Streams are given by their slots in the state table, so the split is a few
numpy operations, not a Python loop over the batch.

A wave's samples are already past the checks that drop a late or duplicate sample and reset
a stream after a gap (pipeline.py). Then:

- **predict**: compare each sample with the prediction made a step before (the error), and
  step the model to predict the next one; keep the streams' bookkeeping (their step count,
  recent readings, last timestamp and receive time);
- **judge**: the detector scores the samples, the alert lifecycle (alert.py) decides what the
  scores mean for each stream's alert, and only then does the detector learn them (by how
  far alert.py trusts each one): scoring apart from deciding, as in river's anomaly module;
- **emit**: the wave's outcomes into the batch's columns, and an event per transition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64, Bools, Indices
from sensord.core.alert import (
    AlertPolicy,
    Transition,
    advance,
    alert_event,
    drive,
    held_scores,
    trust,
)
from sensord.core.bundle import Manifest
from sensord.core.detect import Assessment, Detector, Observation
from sensord.core.engine import StepEngine
from sensord.core.gaps import learn_step
from sensord.core.heads import apply_heads, apply_horizon
from sensord.core.nodata import learn_period
from sensord.core.sample import FIRST, SCORED, Scored
from sensord.core.state import Slots, StateTable
from sensord.core.swap import remember
from sensord.core.transform import forward, inverse, time_features


def split_waves(keys: npt.ArrayLike) -> list[Indices]:
    """Indices into ``keys`` grouped into waves; each wave holds a key at most once."""
    keys = np.asarray(keys)
    n = len(keys)
    if n == 0:
        return []
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    if starts.all():  # every stream once: the common case with many streams
        return [np.arange(n)]
    positions = np.arange(n)
    rank = np.empty(n, dtype=np.intp)
    rank[order] = positions - np.maximum.accumulate(np.where(starts, positions, 0))
    by_rank = np.argsort(rank, kind="stable")  # stable: arrival order within a wave
    return np.split(by_rank, np.cumsum(np.bincount(rank))[:-1])


@dataclass(frozen=True)
class Predicted:
    """What the model made of a wave's samples (``predict``)."""

    scaled: F64  # [n, F] the values, scaled as the model sees them
    deviations: F64  # [n, F] scaled value minus the prediction made a step before (heads.py)
    errors: F64  # [n] their RMS; NaN without a prediction (a stream's first sample)
    expected: F64  # [n, F] the prediction, raw
    steps: npt.NDArray[np.int64]  # [n] steps each stream had made before this sample
    has_prediction: Bools  # [n] steps > 0: there was a prediction to compare with


@dataclass(frozen=True)
class Judged:
    """What the detector and the alert lifecycle made of a wave's samples (``judge``)."""

    scores: F64  # [n] NaN without a prediction
    channel: npt.NDArray[np.int8]  # [n] the channel that decided each score (-1: none)
    transitions: npt.NDArray[np.int8]  # [n] Transition codes
    warm: Bools  # [n] past the warm-up
    shares: F64  # [n, F] each feature's share, for the samples that made an event


def predict(
    table: StateTable, engine: StepEngine, slots: Slots, *, ts: F64, values: F64, received: F64
) -> Predicted:
    """Compare each sample with its stream's pending prediction and step the model to the
    next; ``received`` (NaN: use ``ts``) is when each sample arrived."""
    transform = engine.bundle.manifest.transform
    center, scale = table["center"][slots], table["scale"][slots]
    scaled = forward(transform, (values - center) / scale)
    steps = table["steps"][slots]
    has_prediction = steps > 0
    predicted = table["prediction"][slots].astype(np.float64)
    spread = table["spread"][slots].astype(np.float64)
    deviations = apply_heads(scaled - predicted, spread, engine.cross)
    position = None
    if engine.horizon is not None:
        position = steps % engine.horizon.steps
        prior = table["ahead"][slots, position].astype(np.float64)
        deviations = apply_horizon(deviations, scaled, prior, engine.horizon)
    errors = np.sqrt(np.mean(deviations**2, axis=1))
    errors[~has_prediction] = np.nan
    _step_model(table, engine, slots, scaled, ts, position=position)
    table["steps"][slots] = steps + 1
    remember(table, slots, steps, ts, values)  # for a new bundle to start from (swap.py)
    learn_step(table, slots, table["last_ts"][slots], ts)
    table["last_ts"][slots] = ts
    arrived = np.where(np.isnan(received), ts, received)
    learn_period(table, slots, table["last_received"][slots], arrived)
    table["last_received"][slots] = arrived
    expected = inverse(transform, predicted) * scale + center
    return Predicted(scaled, deviations, errors, expected, steps, has_prediction)


def _step_model(
    table: StateTable,
    engine: StepEngine,
    slots: Slots,
    scaled: F64,
    ts: F64,
    *,
    position: npt.NDArray[np.int64] | None,
) -> None:
    """One engine step of these streams: their next predictions and LSTM state (and the
    look ahead, into the ring at ``position``)."""
    x = scaled.astype(np.float32)
    time_names = engine.bundle.manifest.time_features
    inputs = (
        x
        if not time_names
        else np.concatenate([x, time_features(time_names, ts).astype(np.float32)], axis=1)
    )
    h = np.ascontiguousarray(table["h"][slots].transpose(1, 0, 2))
    c = np.ascontiguousarray(table["c"][slots].transpose(1, 0, 2))
    result = engine.step(inputs, h, c)
    table["h"][slots] = result.h.transpose(1, 0, 2)
    table["c"][slots] = result.c.transpose(1, 0, 2)
    table["prediction"][slots] = result.prediction
    if result.spread is not None:  # (without the head the column stays 1)
        table["spread"][slots] = result.spread
    if position is not None and result.ahead is not None:
        table["ahead"][slots, position] = result.ahead


def judge(
    table: StateTable,
    detector: Detector,
    policy: AlertPolicy,
    slots: Slots,
    *,
    ts: F64,
    predicted: Predicted,
) -> Judged:
    """Score the samples, advance their streams' alerts, then let the detector learn them."""
    n, f = len(slots), predicted.scaled.shape[1]
    scores, surprise = np.full(n, np.nan), np.full(n, np.nan)
    # Each feature's own score, then the relation's: what an alert is held by (alert.py).
    features = np.full((n, f + 1), np.nan)
    channel = np.full(n, -1, dtype=np.int8)
    scored = np.flatnonzero(predicted.has_prediction)
    obs = Observation(
        values=predicted.scaled[scored], errors=predicted.deviations[scored], ts=ts[scored]
    )
    assessment = detector.assess(table, slots[scored], obs) if scored.size else None
    if assessment is not None:
        scores[scored], surprise[scored] = assessment.score, assessment.surprise
        channel[scored] = assessment.channel
        # (None: one score for the sample, every feature's)
        one = assessment.features is None
        features[scored] = assessment.score[:, None] if one else assessment.features
    threshold = detector.threshold
    calm_below = threshold - policy.hysteresis
    warm = predicted.steps >= policy.warmup
    transitions = advance(
        table,
        policy,
        slots,
        ts=ts,
        scores=scores,
        surprise=surprise,
        warm=warm,
        threshold=threshold,
        held=held_scores(table, slots, scores, features),
    )
    drive(table, slots, transitions, features, threshold=threshold, calm_below=calm_below)
    shares = _shares(assessment, scored, transitions, f)
    if assessment is not None:
        trusted = trust(table, slots[scored], features[scored], calm_below)
        detector.learn(table, slots[scored], obs, assessment, trusted)
    adopted = transitions == int(Transition.ADOPTED)
    if adopted.any():
        detector.forget_normal(table, slots[adopted])
    return Judged(scores, channel, transitions, warm, shares)


def _shares(
    assessment: Assessment | None, scored: Slots, transitions: npt.NDArray[np.int8], f: int
) -> F64:
    """Each feature's share in the surprise: asked of the detector only for the samples that
    make an event (most make none), zero for the others."""
    shares = np.zeros((len(transitions), f))
    if assessment is None:
        return shares
    eventful = np.flatnonzero(transitions[scored] != 0)  # (positions among the scored)
    if eventful.size:
        shares[scored[eventful]] = assessment.shares(eventful)
    return shares


def emit(
    out: Scored,
    index: Slots,
    slots: Slots,
    *,
    table: StateTable,
    manifest: Manifest,
    threshold: float,
    streams: Sequence[str],
    ts: F64,
    values: F64,
    reset: Bools,
    predicted: Predicted,
    judged: Judged,
) -> None:
    """Write the wave's outcomes into the batch's columns at ``index`` (its samples' places
    in the batch, whose ``streams`` these are), and an event per transition."""
    out.status[index] = np.where(predicted.has_prediction, SCORED, FIRST)
    out.expected[index] = predicted.expected
    out.error[index] = predicted.errors
    out.score[index] = judged.scores
    out.alert[index] = table["alert_active"][slots]
    out.warming_up[index] = ~judged.warm
    out.reset[index] = reset
    for i in np.flatnonzero(judged.transitions).tolist():
        event = alert_event(
            table,
            manifest,
            threshold,
            streams[index[i]],
            int(slots[i]),
            ts=float(ts[i]),
            values=values[i],
            expected=predicted.expected[i],
            error=float(predicted.errors[i]),
            score=float(judged.scores[i]),
            transition=Transition(judged.transitions[i]),
            channel=int(judged.channel[i]),
            shares=judged.shares[i],
        )
        out.events.append((int(index[i]), event))
