"""One reading's assessment, compiled (the reference: ChannelDetector.assess and its
``_by_feature`` and ``_shares``, detect/composite.py): the channels' statistics, their tail
probabilities, and how they combine into the reading's score."""

from __future__ import annotations

import math

from sensord.arrays import F64
from sensord.core.compiled import settings as S
from sensord.core.compiled.channels import (
    read_contextual,
    read_extremes,
    read_shift,
    read_sustained,
    variance,
)
from sensord.core.compiled.columns import I64, Columns, TailSpec, Work
from sensord.core.compiled.maths import (
    LOG10,
    compiled,
    fill,
    fmax,
    fmin,
    inlined,
    score_of_log_p,
)
from sensord.core.compiled.tails import log_p


@inlined
def assess(
    c: Columns,
    p: F64,
    chans: I64,
    spec: TailSpec,
    s: int,
    k: int,
    ts: float,
    scaled: F64,
    w: Work,
) -> tuple[float, float, int]:
    """ChannelDetector.assess for one reading: its score, its surprise channels' score and
    the channel that decided (its row in ``chans``); ``w.features`` each feature's score,
    then the relation's."""
    n_f = scaled.shape[0]
    variance(c.scale, s, k, int(p[S.SLOTS]), p[S.SCALE_POOL], w.var)
    for f in range(n_f):
        w.z[f] = w.dev[f] / fmax(math.sqrt(w.var[f]), p[S.SCALE_FLOOR])
    _read_channels(c, p, chans, s, k, scaled, w)
    log_p(c.tail, s, w.stat, spec, p[S.TAIL_MIN_SAMPLES], w.lp)
    strongest, best, calm = 0, math.inf, math.inf
    fill(w.features, 0.0)
    for j in range(chans.shape[0]):
        width = chans[j, S.WIDTH]
        least = math.inf
        for col in range(width):
            least = fmin(least, _column(chans, j, col, w.lp, w.extremes))
        w.least[j] = least
        channel_p = fmin(least + p[S.LOG_WIDTHS + j], 0.0)
        if channel_p < best:
            strongest, best = j, channel_p
        if chans[j, S.KIND] in (S.POINT, S.SUSTAINED, S.EXTREMES):
            calm = fmin(calm, channel_p)
        _by_feature(chans, j, p[S.BONFERRONI], w.lp, w.extremes, w.features)
    for f in range(n_f + 1):
        w.features[f] = score_of_log_p(w.features[f])
    score = score_of_log_p(best + p[S.BONFERRONI])
    surprise = 0.0
    if calm < math.inf:
        surprise = score_of_log_p(calm + p[S.SURPRISE_BONFERRONI])
    return score, surprise, strongest


@compiled
def _column(chans: I64, j: int, col: int, lp: F64, extremes: F64) -> float:
    """A channel's column's log probability: the tail's, or the extremes' by record
    theory."""
    start = chans[j, S.TAIL_START]
    if start >= 0:
        return float(lp[start + col])
    x = extremes[col]
    return 0.0 if math.isnan(x) else -x


@inlined
def _read_channels(c: Columns, p: F64, chans: I64, s: int, k: int, scaled: F64, w: Work) -> None:
    """Every enabled channel's statistics, in order (the shift channel reads the contextual
    one's residuals)."""
    n_f = scaled.shape[0]
    context_known = False
    for j in range(chans.shape[0]):
        kind, start, width = chans[j, S.KIND], chans[j, S.TAIL_START], chans[j, S.WIDTH]
        block = w.stat[max(start, 0) : max(start, 0) + width]
        if kind == S.POINT:
            for f in range(n_f):
                block[f] = abs(w.z[f])
        elif kind == S.SUSTAINED:
            sp = p[S.SUSTAINED_ALPHA : S.SUSTAINED_CLIP + 1]
            read_sustained(c.sustained, s, w.z, sp, block, w.drift, w.mean)
        elif kind == S.CONTEXTUAL:
            cp = p[S.CONTEXT_ALPHA : S.CONTEXT_SLOTS + 1]
            read_contextual(c.context, s, k, scaled, cp, block, w.context, w.square)
            context_known = not math.isnan(block[0])
        elif kind == S.SHIFT:
            read_shift(c.shift, s, w.context[2], context_known, p[S.SHIFT_ALPHA], block, w.shift)
        else:
            read_extremes(c.range, s, scaled, p[S.RANGE_MARGIN], p[S.RANGE_MIN_SAMPLES], w.extremes)


@compiled
def _by_feature(
    chans: I64, j: int, bonferroni: float, lp: F64, extremes: F64, features: F64
) -> None:
    """ChannelDetector._by_feature for one channel: each feature's (and the relation's)
    log probability so far, kept in ``features``."""
    n_f = features.shape[0] - 1
    width = chans[j, S.WIDTH]
    term = math.log(width) + bonferroni
    joint = chans[j, S.KIND] == S.CONTEXTUAL and n_f > 1
    if joint:
        features[n_f] = fmin(features[n_f], _column(chans, j, n_f, lp, extremes) + term)
    for f in range(n_f):
        own = _column(chans, j, f, lp, extremes)
        if not joint and width == 2 * n_f:
            own = fmin(own, _column(chans, j, n_f + f, lp, extremes))
        features[f] = fmin(features[f], own + term)


@compiled
def shares(
    chans: I64,
    strongest: int,
    lp: F64,
    extremes: F64,
    least: F64,
    parts: F64,
    weights: F64,
    out: F64,
) -> None:
    """ChannelDetector._shares for one reading: each feature's share in its surprise."""
    n_f = out.shape[0]
    fill(weights, 0.0)
    for j in range(chans.shape[0]):
        width = chans[j, S.WIDTH]
        joint = chans[j, S.KIND] == S.CONTEXTUAL and n_f > 1
        for f in range(n_f):
            mine = _decades_past_one(_column(chans, j, f, lp, extremes))
            if not joint and width == 2 * n_f:
                other = _column(chans, j, n_f + f, lp, extremes)
                mine = fmax(mine, _decades_past_one(other))
            if joint:
                joint_p = _column(chans, j, n_f, lp, extremes)
                mine = fmax(mine, _part_share(parts, f) * _decades_past_one(joint_p))
            weights[f] = fmax(weights[f], mine)
    total = 0.0
    for f in range(n_f):
        if least[strongest] == 0.0:
            weights[f] = 0.0
        total += weights[f]
    for f in range(n_f):
        out[f] = weights[f] / total if total > 0 else 0.0


@compiled
def _decades_past_one(log_p: float) -> float:
    decades = -log_p / LOG10
    return 1e6 if math.isinf(decades) else fmax(decades - 1.0, 0.0)


@compiled
def _part_share(parts: F64, f: int) -> float:
    """channel.shares_of the joint statistic's positive parts, for feature ``f``."""
    total = 0.0
    for g in range(parts.shape[0]):
        total += fmax(parts[g], 0.0)
    return fmax(parts[f], 0.0) / total if total > 0 else 0.0
