"""The error scale and the channels, one reading at a time (the reference: detect/scale.py,
detect/channel.py, detect/contextual.py, detect/range.py). ``c`` is the kernel's columns
(kernel.Columns), ``s`` the stream's slot, ``k`` its reading's time-of-day slot."""

from __future__ import annotations

import math

from sensord.arrays import F64
from sensord.core.compiled import settings as S
from sensord.core.compiled.columns import (
    ContextColumns,
    RangeColumns,
    ScaleColumns,
    ShiftColumns,
    SustainedColumns,
)
from sensord.core.compiled.maths import clip, compiled, fmax, fmin, predictive_z

DAY_S = 86_400.0
SCALE_WINSOR = 4.0  # detect/scale.py
SPREAD_FLOOR = 0.02  # detect/channel.py
SUSTAINED_WINSOR = 4.0
SD_FLOOR = 0.05  # detect/contextual.py
SHRINK = 0.1
CLIP_Z = 6.0
CONTEXT_WINSOR = 3.0
BIG = 1.7976931348623157e308  # np.nan_to_num's infinities


@compiled
def time_slot(ts: float, count: int, width_s: float) -> int:
    """scale.TimeSlots.of for one timestamp."""
    if count == 1:
        return 0
    return math.floor((ts % DAY_S) / width_s) % count


@compiled
def variance(c: ScaleColumns, s: int, k: int, count: int, pool: float, out: F64) -> None:
    """ErrorScale.variance: each feature's, its slot's pooled with the whole day's."""
    for f in range(out.shape[0]):
        overall = c.error_var[s, f]
        if count == 1:
            out[f] = overall
        else:
            n = c.error_slot_n[s, k]
            out[f] = (n * c.error_slot_var[s, k, f] + pool * overall) / (n + pool)


@compiled
def learn_scale(c: ScaleColumns, s: int, k: int, errors: F64, var: F64, p: F64) -> None:
    """ErrorScale.learn (``var``: the variance the reading was standardised by)."""
    count, floor = int(p[S.SLOTS]), p[S.SCALE_FLOOR]
    horizon, slot_cap = p[S.SCALE_HORIZON], p[S.SCALE_SLOT_CAP]
    n = c.error_n[s] + 1.0
    weight = 1.0 / fmin(n, horizon)
    c.error_n[s] = n
    seen = c.error_slot_n[s, k] + 1.0
    mine = 1.0 / fmin(seen, slot_cap)
    for f in range(errors.shape[0]):
        limit = SCALE_WINSOR * SCALE_WINSOR * fmax(var[f], floor * floor)
        squared = fmin(errors[f] * errors[f], limit)
        old = c.error_var[s, f]
        c.error_var[s, f] = old + weight * (squared - old)
        if count > 1:
            own = c.error_slot_var[s, k, f]
            c.error_slot_var[s, k, f] = own + mine * (squared - own)
    if count > 1:
        c.error_slot_n[s, k] = seen


@compiled
def read_sustained(
    c: SustainedColumns, s: int, z: F64, sp: F64, stat: F64, drift: F64, mean: F64
) -> None:
    """SustainedChannel.read: ``stat`` gets the drift then the burst of every feature
    (``sp``: alpha, the drift's norm, the clip)."""
    alpha, norm, limit = sp[0], sp[1], sp[2]
    n_f = z.shape[0]
    for f in range(n_f):
        clipped = clip(z[f], -limit, limit)
        old = c.sustained_drift[s, f]
        drift[f] = old + alpha * (clipped - old)
        previous = c.sustained_mean[s, f]
        magnitude = abs(clipped)
        if math.isnan(previous):
            mean[f] = magnitude
        else:
            mean[f] = previous + alpha * (magnitude - previous)
        spread = math.sqrt(fmax(c.sustained_var[s, f], SPREAD_FLOOR * SPREAD_FLOOR))
        stat[f] = abs(drift[f]) * norm
        stat[n_f + f] = fmax(mean[f] - c.sustained_usual[s, f], 0.0) / spread


@compiled
def learn_sustained(c: SustainedColumns, s: int, drift: F64, mean: F64, horizon: float) -> None:
    """SustainedChannel.learn."""
    n = c.sustained_n[s] + 1.0
    weight = 1.0 / fmin(n, horizon)
    for f in range(drift.shape[0]):
        c.sustained_drift[s, f] = drift[f]
        c.sustained_mean[s, f] = mean[f]
        usual, var = c.sustained_usual[s, f], c.sustained_var[s, f]
        limit = SUSTAINED_WINSOR * math.sqrt(fmax(var, SPREAD_FLOOR * SPREAD_FLOOR))
        first = math.isnan(usual)
        delta = 0.0 if first else clip(mean[f] - usual, -limit, limit)
        c.sustained_usual[s, f] = mean[f] if first else usual + weight * delta
        c.sustained_var[s, f] = (1.0 - weight) * (var + weight * delta * delta)
    c.sustained_n[s] = n


@compiled
def _looks(c: ContextColumns, s: int, f: int, visits: float, per_day: float) -> float:
    """ContextualChannel._looks for one feature."""
    sq = c.context_sq[s, f]
    rho = clip(c.context_lag[s, f] / sq if sq > 0 else 0.0, 0.0, 0.9999)
    looks = visits * (1.0 - rho) / (1.0 + rho)
    return fmin(looks, visits / per_day)


@compiled
def read_contextual(
    c: ContextColumns, s: int, k: int, values: F64, cp: F64, stat: F64, keep: F64, square: F64
) -> None:
    """ContextualChannel.read (``cp``: alpha, min visits, visits a day); with several
    features ``stat`` ends with the joint statistic. ``keep[6, F]``: the level, the raw and
    the predictive residuals, each feature's part in the joint statistic, and room for
    solving the correlation (with ``square[F, F]``)."""
    alpha, min_visits, per_day = cp[0], cp[1], cp[2]
    level, raw, resid, parts = keep[0], keep[1], keep[2], keep[3]
    n_f = values.shape[0]
    ready = True
    for f in range(n_f):
        previous = c.context_level[s, f]
        if math.isnan(previous):
            level[f] = values[f]
        else:
            level[f] = previous + alpha * (values[f] - previous)
        visits = c.context_n[s, k, f]
        sd = math.sqrt(fmax(c.context_var[s, k, f], SD_FLOOR * SD_FLOOR))
        raw[f] = (level[f] - c.context_mean[s, k, f]) / sd
        resid[f] = predictive_z(raw[f], _looks(c, s, f, visits, per_day))
        mine = visits >= min_visits
        ready = ready and mine
        stat[f] = abs(resid[f]) if mine else math.nan
    if n_f > 1:
        solved = keep[5]
        solve(c.context_corr[s], resid, square, keep[4], solved)
        total = 0.0
        for f in range(n_f):
            parts[f] = resid[f] * solved[f]
            total += parts[f]
        stat[n_f] = math.sqrt(fmax(total, 0.0)) if ready else math.nan


@compiled
def solve(corr: F64, resid: F64, a: F64, b: F64, x: F64) -> None:
    """``np.linalg.solve`` of the shrunk correlation into ``x`` (LU with partial pivoting,
    as LAPACK's gesv; ``a`` and ``b`` its room); the matrix is small and well conditioned
    (shrunk towards the identity). Nothing is allocated: the kernels run without numba's
    reference counting, which cost a third of their time."""
    n = resid.shape[0]
    for row in range(n):
        b[row] = resid[row]
        for j in range(n):
            a[row, j] = (1.0 - SHRINK) * corr[row, j] + (SHRINK if row == j else 0.0)
    for col in range(n):
        pivot = col
        for row in range(col + 1, n):
            if abs(a[row, col]) > abs(a[pivot, col]):
                pivot = row
        if pivot != col:
            for j in range(n):
                a[col, j], a[pivot, j] = a[pivot, j], a[col, j]
            b[col], b[pivot] = b[pivot], b[col]
        for row in range(col + 1, n):
            factor = a[row, col] / a[col, col]
            for j in range(col, n):
                a[row, j] -= factor * a[col, j]
            b[row] -= factor * b[col]
    for row in range(n - 1, -1, -1):
        total = b[row]
        for j in range(row + 1, n):
            total -= a[row, j] * x[j]
        x[row] = total / a[row, row]


@compiled
def learn_contextual(c: ContextColumns, s: int, k: int, keep: F64, trust: F64, cp: F64) -> None:
    """ContextualChannel.learn (``trust[F + 1]``: per feature, then the correlation's;
    ``cp``: alpha, min visits, visits a day, a slot's cap, the slots)."""
    min_visits, cap, slots = cp[1], cp[3], cp[4]
    level, raw, resid = keep[0], keep[1], keep[2]
    n_f = level.shape[0]
    normal = False
    for f in range(n_f):
        c.context_level[s, f] = level[f]
        normal = normal or trust[f] > 0.0
    _learn_autocorrelation(c, s, raw, trust, cap * slots)
    if not normal:
        return
    ready = True
    for f in range(n_f):
        visits = c.context_n[s, k, f]
        ready = ready and visits >= min_visits
        weight = trust[f] / fmin(visits + 1.0, cap)
        mean, var = c.context_mean[s, k, f], c.context_var[s, k, f]
        limit = math.inf
        if visits >= min_visits:
            limit = CONTEXT_WINSOR * math.sqrt(fmax(var, SD_FLOOR * SD_FLOOR))
        delta = clip(level[f] - mean, -limit, limit)
        c.context_mean[s, k, f] = mean + weight * delta
        c.context_var[s, k, f] = (1.0 - weight) * (var + weight * delta * delta)
        c.context_n[s, k, f] = visits + trust[f]
    relation = trust[n_f]
    if n_f > 1 and ready and relation > 0.0:
        n = c.context_corr_n[s] + 1.0
        weight = relation / fmin(n, cap * slots)
        for i in range(n_f):
            for j in range(n_f):
                outer = clip(resid[i], -CLIP_Z, CLIP_Z) * clip(resid[j], -CLIP_Z, CLIP_Z)
                corr = c.context_corr[s, i, j]
                c.context_corr[s, i, j] = corr + weight * (outer - corr)
        c.context_corr_n[s] = n


@compiled
def _learn_autocorrelation(c: ContextColumns, s: int, raw: F64, trust: F64, cap: float) -> None:
    """ContextualChannel._learn_autocorrelation: from the calm features (trust 1) only."""
    n_f = raw.shape[0]
    weight = 1.0 / fmin(c.context_ac_n[s] + 1.0, cap)
    any_both = False
    for f in range(n_f):
        calm = trust[f] >= 1.0
        previous = c.context_prev[s, f]
        c.context_prev[s, f] = raw[f] if calm else math.nan
        if not (calm and not math.isnan(previous) and not math.isnan(raw[f])):
            continue
        any_both = True
        clipped = clip(raw[f], -CLIP_Z, CLIP_Z)
        before = clip(previous, -CLIP_Z, CLIP_Z)
        lag, sq = c.context_lag[s, f], c.context_sq[s, f]
        c.context_lag[s, f] = lag + weight * (clipped * before - lag)
        c.context_sq[s, f] = sq + weight * (clipped * clipped - sq)
    if any_both:
        c.context_ac_n[s] += 1.0


@compiled
def read_shift(
    c: ShiftColumns, s: int, resid: F64, known: bool, alpha: float, stat: F64, mean: F64
) -> None:
    """ShiftChannel.read (``known``: the contextual channel spoke for this reading)."""
    for f in range(resid.shape[0]):
        previous = c.shift_mean[s, f]
        if known:
            mean[f] = previous + alpha * (clip(resid[f], -CLIP_Z, CLIP_Z) - previous)
            stat[f] = abs(mean[f])
        else:
            mean[f] = previous
            stat[f] = math.nan


@compiled
def read_extremes(
    c: RangeColumns, s: int, values: F64, margin: float, min_samples: float, stat: F64
) -> None:
    """ExtremesChannel.read: ``log(n + 1)`` past the widened range of ``n`` values."""
    seen = c.seen_n[s]
    for f in range(values.shape[0]):
        low, high = c.seen_min[s, f], c.seen_max[s, f]
        slack = margin * (high - low)
        outside = values[f] < low - slack or values[f] > high + slack
        stat[f] = math.log1p(seen) if outside and seen >= min_samples else math.nan


@compiled
def widen(c: RangeColumns, s: int, values: F64) -> None:
    """range.widen."""
    for f in range(values.shape[0]):
        c.seen_min[s, f] = fmin(c.seen_min[s, f], values[f])
        c.seen_max[s, f] = fmax(c.seen_max[s, f], values[f])
    c.seen_n[s] += 1
