"""The calibrated tails, one reading's statistics at a time (the reference: detect/tail.py
and detect/histogram.py). ``c.tail[s]`` is a stream's ``[W, 15]`` numbers and
``c.tail_counts[s]`` its ``[W, EDGES]`` histogram; ``spec`` the tail's per-column constants
(kernel.TailSpec)."""

from __future__ import annotations

import math

import numpy as np

from sensord.arrays import F64, Bools
from sensord.core.compiled.columns import TailColumns, TailSpec
from sensord.core.compiled.maths import clip, compiled, copy, fmax, fmin, ramp
from sensord.core.detect.histogram import (
    ANCHOR,
    BLEND_DEVIANCE,
    BLEND_RATIO,
    CONTRADICTION,
    EDGES,
    LOG_LOWEST,
    LOG_STEP,
    MEMORY,
    SEGMENT,
    SLOPE_RANGE,
)
from sensord.core.detect.tail import (
    ABOVE,
    CL,
    DAY,
    DAY_S,
    EX,
    FITTED_AT,
    HABIT,
    HABIT_AFTER,
    HABIT_DAYS,
    HEAVY,
    LAST,
    LEARNT,
    LEARNT_FADE,
    LEVEL,
    LOG_LEVEL,
    LOG_STAR,
    LOG_SURVIVAL,
    MATURE,
    MIN_THETA,
    RATE_MEMORY,
    REFIT_EVERY,
    SLOPE,
    STEP,
    TOTAL,
    YOUNG_REFIT,
    N,
    U,
)

BIG = 1.7976931348623157e308
LOG_ANCHOR = math.log(ANCHOR)
SLOPE_LOW, SLOPE_HIGH = SLOPE_RANGE
RATIO_LOW, RATIO_HIGH = BLEND_RATIO
DEVIANCE_LOW, DEVIANCE_HIGH = BLEND_DEVIANCE


@compiled
def nan_to_num(x: float) -> float:
    if math.isnan(x):
        return 0.0
    return clip(x, -BIG, BIG)


@compiled
def log_p(c: TailColumns, s: int, stat: F64, spec: TailSpec, min_samples: float, out: F64) -> None:
    """Tail.log_p: each statistic's log chance that a cluster this extreme starts (0 while
    the tail is not ready or the statistic is NaN)."""
    numbers = c.tail[s]
    for j in range(stat.shape[0]):
        x = stat[j]
        row = numbers[j]
        if not (row[N] >= min_samples and not math.isnan(x)):
            out[j] = 0.0
            continue
        u = fmax(row[U], spec.lowest[j])
        light = LOG_LEVEL * (fmax(x, 0.0) / u) ** spec.shape[j]
        light += math.log(clip(row[CL] / row[EX], MIN_THETA, 1.0))
        heavy = row[HEAVY]
        value = light
        if heavy > 0.0:
            seen, beyond, inside = _read(c.tail_counts[s, j], row, math.log(x))
            beyond = fmax(beyond, light)
            value = (1.0 - heavy) * light + heavy * beyond
            if inside:
                value = fmax(value, seen)
        out[j] = fmin(value, 0.0)


@compiled
def _read(counts: F64, row: F64, log_stat: float) -> tuple[float, float, bool]:
    """histogram.read for one statistic: the histogram's log survival (``seen``), its fit's
    past s* (``beyond``), and whether the histogram can say (``inside``)."""
    total = row[TOTAL]
    position = (log_stat - LOG_LOWEST) / LOG_STEP
    edge = int(clip(nan_to_num(math.floor(position)), 0.0, EDGES - 2.0))
    fraction = clip(position - edge, 0.0, 1.0)
    log_total = math.log(total)
    lower = math.log(np.float64(counts[edge])) - log_total
    upper = math.log(np.float64(counts[edge + 1])) - log_total
    seen = lower + fraction * (upper - lower) if math.isfinite(upper) else lower
    if position < 0.0:
        seen = 0.0
    inside = log_stat <= row[LOG_STAR]
    beyond = seen if inside else row[LOG_SURVIVAL] - row[SLOPE] * (log_stat - row[LOG_STAR])
    return seen, beyond, inside and total >= ANCHOR


@compiled
def _edge_of(x: float) -> int:
    """histogram._edge_of: the last edge ``x`` is at or past (-1: below the first)."""
    position = math.floor((math.log(fmax(x, 0.0)) - LOG_LOWEST) / LOG_STEP)
    return int(clip(position, -1.0, EDGES - 1.0))


@compiled
def learn(
    c: TailColumns,
    s: int,
    stat: F64,
    anomalous: Bools,
    ts: float,
    spec: TailSpec,
    min_samples: float,
    edges: F64,
) -> None:
    """Tail.learn for one stream's statistics (NaN: nothing to learn), then its refit when
    due."""
    numbers = c.tail[s]
    for j in range(stat.shape[0]):
        row = numbers[j]
        x = stat[j]
        known = not math.isnan(x)
        flagged = anomalous[j] and row[N] >= MATURE
        if flagged:
            flagged = _record_day(row, ts)
        if known and not flagged:
            row[TOTAL] += 1.0
            _count(c.tail_counts[s, j], x, row[LAST])
            if row[TOTAL] > 2.0 * MEMORY:
                counts = c.tail_counts[s, j]
                for e in range(EDGES):
                    counts[e] *= np.float32(0.5)
                row[TOTAL] *= 0.5
                row[LEARNT] *= 0.5
        if known:
            _learn_clusters(row, x, spec.floor[j])
            row[LAST] = x
    due = False
    for j in range(stat.shape[0]):
        since = numbers[j, N] - numbers[j, FITTED_AT]
        young = since > 0 and since * YOUNG_REFIT >= numbers[j, N] and numbers[j, N] >= min_samples
        due = due or since >= REFIT_EVERY or young
    if due:
        refit(c, s, spec, edges)


@compiled
def _record_day(row: F64, ts: float) -> bool:
    """An anomalous statistic's day into the habit record; still anomalous (not learnt)
    unless anomalies have become the stream's habit."""
    day = math.floor(ts / DAY_S)
    if day > row[DAY]:
        faded = row[HABIT] * math.exp((row[DAY] - day) / HABIT_DAYS)
        row[HABIT] = nan_to_num(faded) + 1.0
        row[DAY] = day
    return bool(row[HABIT] < HABIT_AFTER)


@compiled
def _count(counts: F64, x: float, last: float) -> None:
    """histogram.count: a cluster starts past every edge ``last`` was not past and ``x`` is."""
    now, before = _edge_of(x), _edge_of(nan_to_num(last))
    for edge in range(before + 1, now + 1):
        counts[edge] += np.float32(1.0)


@compiled
def _learn_clusters(row: F64, x: float, floor: float) -> None:
    """Tail._learn_clusters for a known statistic."""
    u = row[U]
    above = 1.0 if x > u else 0.0
    row[U] = fmax(u * math.exp(STEP * (above - LEVEL)), floor)
    row[N] += 1.0
    starts = 1.0 if above == 1.0 and row[ABOVE] == 0.0 else 0.0
    rate = 1.0 / RATE_MEMORY
    row[EX] += rate * (above - row[EX])
    row[CL] += rate * (starts - row[CL])
    row[ABOVE] = above


@compiled
def refit(c: TailColumns, s: int, spec: TailSpec, edges: F64) -> None:
    """Tail._refit for one stream: the histogram's fit, and how far it contradicts the light
    fit (the stream's own clusters, the learnt start's taken out)."""
    numbers = c.tail[s]
    envelope, own = edges[0], edges[1]  # (room for two rows of the histogram)
    for j in range(numbers.shape[0]):
        row = numbers[j]
        total = row[TOTAL]
        counts = c.tail_counts[s, j]
        best = float(counts[EDGES - 1])
        for e in range(EDGES - 1, -1, -1):
            best = fmax(best, float(counts[e]))
            envelope[e] = best
        log_star, log_survival, slope = _fit(envelope, total)
        own_total = total
        if not spec.learnt:
            copy(envelope, own)
        else:
            kept = row[LEARNT]
            for e in range(EDGES):
                own[e] = fmax(envelope[e] - kept * spec.learnt_counts[j, e], 0.0)
            own_total = fmax(total - kept * spec.learnt_values[j], 0.0)
        fade = clip(1.0 - own_total / LEARNT_FADE, 0.0, 1.0)
        light = _contradiction(own, own_total, row[U], spec.shape[j], spec.edge_values)
        heavy = fmax(light, spec.learnt_heavy[j] * fade)
        row[LOG_STAR] = log_star if total >= ANCHOR else LOG_LOWEST
        row[LOG_SURVIVAL] = log_survival if total >= ANCHOR else 0.0
        row[SLOPE] = slope if math.isfinite(slope) else SLOPE_LOW
        row[HEAVY] = heavy if math.isfinite(heavy) else 0.0
        row[FITTED_AT] = row[N]


@compiled
def _fit(envelope: F64, total: float) -> tuple[float, float, float]:
    """histogram.fit for one statistic's envelope: log s*, the log survival there, the
    slope past it."""
    log_total = math.log(total)
    last = 0
    for e in range(EDGES):
        last += 1 if envelope[e] >= ANCHOR else 0
    last = int(clip(last - 1.0, 0.0, EDGES - 2.0))
    here, there = math.log(envelope[last]), math.log(envelope[last + 1])
    share = 0.0
    if math.isfinite(there) and here > there:
        share = (here - LOG_ANCHOR) / (here - there)
    share = clip(share, 0.0, 1.0)
    log_star = LOG_LOWEST + LOG_STEP * (last + share)
    log_survival = fmin(here + share * nan_to_num(there - here), log_total)
    log_survival = fmax(log_survival - log_total, -math.log1p(total))
    position = (log_star - SEGMENT - LOG_LOWEST) / LOG_STEP
    edge = int(clip(math.floor(position), 0.0, EDGES - 2.0))
    fraction = clip(position - edge, 0.0, 1.0)
    lower, upper = math.log(envelope[edge]), math.log(envelope[edge + 1])
    below = lower + fraction * (upper - lower) if math.isfinite(upper) else lower
    below -= log_total
    if not (position >= 0 and math.isfinite(below)):
        below = 0.0
    slope = clip((below - log_survival) / SEGMENT, SLOPE_LOW, SLOPE_HIGH)
    return log_star, log_survival, slope


@compiled
def _contradiction(counts: F64, total: float, u: float, shape: float, edge_values: F64) -> float:
    """histogram.contradiction for one statistic: 0 where its clusters agree with the light
    fit, 1 where it is surely wrong."""
    out = 0.0
    for e in range(EDGES):
        count = counts[e]
        if not (count >= CONTRADICTION and u <= edge_values[e]):
            continue
        expected = total * math.exp(LOG_LEVEL * (edge_values[e] / u) ** shape)
        ratio = math.log(count / expected)
        deviance = 2.0 * (count * ratio - (count - expected))
        weight = ramp(ratio, RATIO_LOW, RATIO_HIGH) * ramp(deviance, DEVIANCE_LOW, DEVIANCE_HIGH)
        if math.isfinite(weight):
            out = max(out, weight)
    return out
