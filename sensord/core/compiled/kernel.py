"""A reading's whole step, compiled: the bookkeeping of predict, the detector's assess and
learn, and the alert lifecycle (the reference: core/step.py with detect/composite.py).

``run`` takes a batch's readings stream by stream, each stream's in its order (``order``),
so one call does what the reference does in as many waves as the busiest stream has
readings; streams are independent, so the outcome is the same. The engine has already run
(path.py): ``pred_after[i]`` is the prediction the model made after reading ``i``."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from sensord.arrays import F32, F64, Bools
from sensord.core.compiled import settings as S
from sensord.core.compiled.alerts import ADOPTED, RAISED, UPDATED, advance, drive, held, trust
from sensord.core.compiled.assess import assess, shares
from sensord.core.compiled.channels import (
    learn_contextual,
    learn_scale,
    learn_sustained,
    time_slot,
    widen,
)
from sensord.core.compiled.columns import (
    I64,
    Columns,
    ContextColumns,
    CoreColumns,
    Outputs,
    TailSpec,
    Work,
)
from sensord.core.compiled.maths import (
    compiled,
    copy,
    fill,
    fill2,
    fmax,
    inlined,
)
from sensord.core.compiled.tails import learn as learn_tails
from sensord.core.swap import RECENT

SCORED, FIRST, DUPLICATE, LATE = 0, 1, 2, 3  # sample.py
GAP_DECAY = 0.01  # gaps.DECAY
PERIOD_WEIGHT = 0.1  # nodata.PERIOD_WEIGHT
CORR_PRIOR = 20.0  # contextual.CORR_PRIOR


@compiled
def run(
    c: Columns,
    p: F64,
    chans: I64,
    spec: TailSpec,
    order: npt.NDArray[np.intp],
    admitted: npt.NDArray[np.int8],
    reset: Bools,
    slots: npt.NDArray[np.intp],
    ts: F64,
    values: F64,
    scaled: F64,
    received: F64,
    pred_after: F32,
    spread_after: F32,
    ahead_after: F32,
    o: Outputs,
    w: Work,
    tally: I64,
) -> None:
    """Step every reading in ``order``; one ``admitted`` late or as a duplicate (path.admit)
    only says whether its stream is in alert. ``tally``: late, duplicates, scored, first,
    resets, raised, updated, cleared."""
    for i in order:
        s = slots[i]
        if admitted[i] != 0:
            o.status[i] = LATE if admitted[i] == 1 else DUPLICATE
            o.alert[i] = c.alert.alert_active[s]
            tally[admitted[i] - 1] += 1
            continue
        if reset[i]:
            _restart(c, s, chans)
            tally[4] += 1
        position = c.core.steps[s] % c.core.ahead.shape[1]
        has = _predict(c.core, s, p, ts[i], values[i], scaled[i], received[i], w.dev, o.expected[i])
        if w.cross_gain.shape[0] > 0:
            _explain(w.dev, w.cross_weights, w.cross_gain, w.explained)
        if w.horizon_gain.shape[0] > 0:
            _look_back(w.dev, scaled[i], c.core.ahead[s, position], w.horizon_gain)
        o.status[i] = SCORED if has else FIRST
        o.error[i] = _rms(w.dev) if has else math.nan
        tally[2 if has else 3] += 1
        copy(pred_after[i], c.core.prediction[s])
        if spread_after.shape[1] > 0:  # ([n, 0] without the spread head: the table keeps 1)
            copy(spread_after[i], c.core.spread[s])
        if ahead_after.shape[1] > 0:  # ([n, 0] without the horizon head)
            copy(ahead_after[i], c.core.ahead[s, position])
        _judge(c, p, chans, spec, s, i, has, ts[i], scaled[i], o, w)
        transition = o.transition[i]
        if transition != 0:  # raised, updated, cleared (an adopted alert is cleared too)
            tally[5 if transition == RAISED else (6 if transition == UPDATED else 7)] += 1


@compiled
def _predict(
    c: CoreColumns,
    s: int,
    p: F64,
    ts: float,
    values: F64,
    scaled: F64,
    received: float,
    dev: F64,
    expected: F64,
) -> bool:
    """step.predict's bookkeeping for one reading (the engine ran already): its error
    against the prediction made a step before; the stream's step count, recent readings,
    longest step and usual period."""
    n_f = values.shape[0]
    steps = c.steps[s]
    has = bool(steps > 0)
    for f in range(n_f):
        predicted = np.float64(c.prediction[s, f])
        dev[f] = (scaled[f] - predicted) / np.float64(c.spread[s, f])
        raw = math.sinh(predicted) if p[S.ASINH] else predicted
        expected[f] = raw * c.scale[s, f] + c.center[s, f]
    c.steps[s] = steps + 1
    position = steps % RECENT
    for f in range(n_f):
        c.recent_values[s, position, f] = values[f]
    c.recent_ts[s, position] = ts
    _learn_interval(c.log_long_step, s, c.last_ts[s], ts, True)
    c.last_ts[s] = ts
    arrived = ts if math.isnan(received) else received
    if _learn_interval(c.log_period, s, c.last_received[s], arrived, False):
        c.intervals[s] += 1
    c.last_received[s] = arrived
    return has


@compiled
def _explain(dev: F64, weights: F64, gain: F64, explained: F64) -> None:
    """The virtual-sensor head (heads.py): per feature, the larger in size of its error and
    its error less what the others' explain, on its own scale."""
    n_f = dev.shape[0]
    for f in range(n_f):
        rest = 0.0
        for g in range(n_f):
            rest += weights[f, g] * dev[g]
        explained[f] = (dev[f] - rest) * gain[f]
    for f in range(n_f):
        if abs(explained[f]) > abs(dev[f]):
            dev[f] = explained[f]


@compiled
def _look_back(dev: F64, scaled: F64, prior: F32, gain: F64) -> None:
    """The horizon head (heads.py): per feature, the reading against the prediction made K
    steps before it, on the next-step scale, where that is larger in size."""
    for f in range(dev.shape[0]):
        ahead = (scaled[f] - np.float64(prior[f])) * gain[f]
        if math.isfinite(ahead) and abs(ahead) > abs(dev[f]):
            dev[f] = ahead


@compiled
def _rms(dev: F64) -> float:
    """The RMS over features of a reading's errors (step.predict's ``errors``)."""
    total = 0.0
    for f in range(dev.shape[0]):
        total += dev[f] * dev[f]
    return math.sqrt(total / dev.shape[0])


@compiled
def _learn_interval(column: F64, s: int, previous: float, now: float, longest: bool) -> bool:
    """gaps.learn_step (``longest``: a decaying maximum) or nodata.learn_period (a moving
    average) of the log interval since ``previous``; whether there was one."""
    interval = now - previous
    if not (math.isfinite(previous) and interval > 0):
        return False
    log_gap = math.log(interval)
    old = column[s]
    if math.isnan(old):
        column[s] = log_gap
    elif longest:
        column[s] = fmax(log_gap, old - GAP_DECAY)
    else:
        column[s] = old + PERIOD_WEIGHT * (log_gap - old)
    return True


@inlined
def _judge(
    c: Columns,
    p: F64,
    chans: I64,
    spec: TailSpec,
    s: int,
    i: int,
    has: bool,
    ts: float,
    scaled: F64,
    o: Outputs,
    w: Work,
) -> None:
    """step.judge for one reading: score it, advance its stream's alert, then learn it."""
    score, surprise, strongest = math.nan, math.nan, -1
    fill(w.features, math.nan)
    k = time_slot(ts, int(p[S.SLOTS]), p[S.SLOT_WIDTH_S])
    if has:
        score, surprise, strongest = assess(c, p, chans, spec, s, k, ts, scaled, w)
    warm = c.core.steps[s] - 1 >= p[S.WARMUP]
    hold = held(c.alert, s, score, w.features)
    transition = advance(c.alert, s, p, ts, score, surprise, warm, hold)
    drive(c.alert, s, transition, w.features, p)
    fill(o.shares[i], 0.0)
    if has and transition != 0:
        shares(chans, strongest, w.lp, w.extremes, w.least, w.context[3], w.weights, o.shares[i])
    if has:
        trust(c.alert, s, w.features, p[S.CALM_BELOW], w.trust)
        _learn(c, p, chans, spec, s, k, ts, scaled, w)
    if transition == ADOPTED:
        _forget_normal(c, s, chans)
    o.score[i] = score
    o.channel[i] = chans[strongest, S.CODE] if strongest >= 0 else -1
    o.transition[i] = transition
    o.alert[i] = c.alert.alert_active[s]
    o.warming_up[i] = not warm
    o.raised_ts[i] = c.alert.raised_ts[s]
    o.peak[i] = c.alert.peak_score[s]


@inlined
def _learn(
    c: Columns,
    p: F64,
    chans: I64,
    spec: TailSpec,
    s: int,
    k: int,
    ts: float,
    scaled: F64,
    w: Work,
) -> None:
    """ChannelDetector.learn for one reading, by ``w.trust`` (alert.trust): the channels,
    then the tails (a state channel's statistics only where its features learn; each
    statistic anomalous by itself flagged), then the error scale."""
    learning_normal = p[S.LEARNING_NORMAL] > 0
    if learning_normal:
        fill(w.trust, 1.0)
    for j in range(chans.shape[0]):
        kind, start, width = chans[j, S.KIND], chans[j, S.TAIL_START], chans[j, S.WIDTH]
        if kind == S.SUSTAINED:
            learn_sustained(c.sustained, s, w.drift, w.mean, p[S.SUSTAINED_HORIZON])
        elif kind == S.CONTEXTUAL:
            cp = p[S.CONTEXT_ALPHA : S.CONTEXT_SLOTS + 1]
            learn_contextual(c.context, s, k, w.context, w.trust, cp)
        elif kind == S.SHIFT:
            copy(w.shift, c.shift.shift_mean[s])
        elif kind == S.EXTREMES:
            widen(c.range, s, scaled)
        if start < 0:
            continue
        state = kind in (S.CONTEXTUAL, S.SHIFT)
        term = math.log(width) + p[S.BONFERRONI]
        for col in range(width):
            x = w.stat[start + col]
            w.learn[start + col] = math.nan if state and not w.trust[col] > 0.0 else x
            anomalous = w.lp[start + col] + term <= p[S.LOG_ALERT]
            w.flagged[start + col] = anomalous and not learning_normal
    learn_tails(c.tail, s, w.learn, w.flagged, ts, spec, p[S.TAIL_MIN_SAMPLES], w.edges)
    learn_scale(c.scale, s, k, w.dev, w.var, p)


@inlined
def _restart(c: Columns, s: int, chans: I64) -> None:
    """After a gap: the model starts afresh (its state is zeroed by the engine's run) and
    the channels forget their short-term context (ChannelDetector.restart)."""
    c.core.steps[s] = 0
    fill(c.core.prediction[s], np.nan)
    fill(c.core.spread[s], 1.0)
    fill2(c.core.ahead[s], np.nan)
    fill2(c.core.recent_values[s], np.nan)
    fill(c.core.recent_ts[s], np.nan)
    for j in range(chans.shape[0]):
        kind = chans[j, S.KIND]
        if kind == S.SUSTAINED:
            fill(c.sustained.sustained_drift[s], 0.0)
            fill(c.sustained.sustained_mean[s], np.nan)
        elif kind == S.CONTEXTUAL:
            fill(c.context.context_level[s], np.nan)
        elif kind == S.SHIFT:
            fill(c.shift.shift_mean[s], 0.0)


@inlined
def _forget_normal(c: Columns, s: int, chans: I64) -> None:
    """ChannelDetector.forget_normal: an adopted alert's stream learns its normal again."""
    for j in range(chans.shape[0]):
        kind = chans[j, S.KIND]
        if kind == S.CONTEXTUAL:
            _forget_context(c.context, s)
        elif kind == S.SHIFT:
            fill(c.shift.shift_mean[s], 0.0)
        elif kind == S.EXTREMES:
            fill(c.range.seen_min[s], np.inf)
            fill(c.range.seen_max[s], -np.inf)
            c.range.seen_n[s] = 0


@compiled
def _forget_context(c: ContextColumns, s: int) -> None:
    """ContextualChannel.forget_normal."""
    fill2(c.context_mean[s], 0.0)
    fill2(c.context_var[s], 0.0)
    fill2(c.context_n[s], 0.0)
    fill(c.context_prev[s], np.nan)
    fill(c.context_lag[s], 0.0)
    fill(c.context_sq[s], 0.0)
    c.context_ac_n[s] = 0.0
    n_f = c.context_level.shape[1]
    if n_f > 1:
        corr = c.context_corr[s]
        for i in range(n_f):
            for j in range(n_f):
                corr[i, j] = 1.0 if i == j else 0.0
        c.context_corr_n[s] = CORR_PRIOR
