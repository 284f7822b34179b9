"""The alert lifecycle for one reading (the reference: core/alert.py's ``held_scores``,
``advance``, ``drive`` and ``trust``; its docstring says what each rule is for)."""

from __future__ import annotations

import math

from sensord.arrays import F64
from sensord.core.compiled import settings as S
from sensord.core.compiled.columns import AlertColumns
from sensord.core.compiled.maths import compiled, nanmax
from sensord.core.compiled.tails import nan_to_num

RAISED, CLEARED, UPDATED, ADOPTED = 1, 2, 3, 4  # alert.Transition
SUSPICIOUS_TRUST = 0.1


@compiled
def held(c: AlertColumns, s: int, score: float, features: F64) -> float:
    """alert.held_scores: an alert up is held by its most surprised driver's score."""
    if not c.alert_active[s] or math.isnan(score):
        return score
    driven, any_driver = 0.0, False
    for f in range(features.shape[0]):
        if c.alert_drivers[s, f]:
            any_driver = True
            driven = max(driven, nan_to_num(features[f]))
    return driven if any_driver else score


@compiled
def advance(
    c: AlertColumns,
    s: int,
    p: F64,
    ts: float,
    score: float,
    surprise: float,
    warm: bool,
    hold: float,
) -> int:
    """alert.advance for one reading: its transition code (0: none)."""
    threshold, calm_below = p[S.THRESHOLD], p[S.CALM_BELOW]
    clear_after, window = p[S.CLEAR_AFTER], p[S.REPEAT_WINDOW]
    anomalous_run = c.anomalous_run[s] + 1 if score >= threshold and warm else 0
    normal_run = c.normal_run[s] + 1 if hold < calm_below else 0
    active = c.alert_active[s]
    remembered = c.recent_peak[s] if c.recent_age[s] < window else -math.inf
    raised = (
        not active
        and anomalous_run >= p[S.RAISE_AFTER]
        and ts >= c.cooldown_until[s]
        and score > remembered
    )
    cleared = active and normal_run >= clear_after
    adopt = p[S.ADOPT_AFTER_S]
    adopted = active and not cleared and not math.isnan(adopt) and ts - c.raised_ts[s] >= adopt
    onset = surprise >= threshold and warm and c.surprise_calm[s] >= clear_after
    c.surprise_calm[s] = c.surprise_calm[s] + 1 if surprise < calm_below else 0
    updated = active and not cleared and not adopted and onset
    _renew_peak(c, s, score, window)
    ended = cleared or adopted
    if raised:
        c.peak_score[s] = score
        c.raised_ts[s] = ts
        c.alerts_raised[s] += 1
        c.alert_updates[s] = 0
    else:
        if active:
            c.peak_score[s] = nanmax(c.peak_score[s], score)
        c.alert_updates[s] += 1 if updated else 0
    if ended:
        c.cooldown_until[s] = ts + p[S.COOLDOWN_S]
    c.alert_active[s] = (active or raised) and not ended
    c.anomalous_run[s] = 0 if ended else anomalous_run
    c.normal_run[s] = 0 if raised else normal_run
    if adopted:
        return ADOPTED
    if cleared:
        return CLEARED
    return UPDATED if updated else (RAISED if raised else 0)


@compiled
def _renew_peak(c: AlertColumns, s: int, score: float, window: float) -> None:
    """alert._renew_peak: the score into the stream's recent peak, after it was judged."""
    if math.isnan(score):
        return
    if score >= c.recent_peak[s] or c.recent_age[s] >= window:
        c.recent_peak[s] = score
        c.recent_age[s] = 0
    else:
        c.recent_age[s] += 1


@compiled
def drive(c: AlertColumns, s: int, transition: int, features: F64, p: F64) -> None:
    """alert.drive for one reading: the drivers of the alert it raised or updated; none
    once it ended."""
    if transition == 0:
        return
    width = features.shape[0]
    if transition in (CLEARED, ADOPTED):
        for f in range(width):
            c.alert_drivers[s, f] = False
        return
    top, best = 0, nan_to_num(features[0])
    for f in range(1, width):
        if nan_to_num(features[f]) > best:
            top, best = f, nan_to_num(features[f])
    if transition == RAISED:
        own = False
        for f in range(width - 1):
            c.alert_drivers[s, f] = nan_to_num(features[f]) >= p[S.CALM_BELOW]
            own = own or c.alert_drivers[s, f]
        relation = nan_to_num(features[width - 1]) >= p[S.CALM_BELOW]
        c.alert_drivers[s, width - 1] = relation and not own
    else:
        for f in range(width):
            if nan_to_num(features[f]) >= p[S.THRESHOLD]:
                c.alert_drivers[s, f] = True
    c.alert_drivers[s, top] = True


@compiled
def trust(c: AlertColumns, s: int, features: F64, calm_below: float, out: F64) -> None:
    """alert.trust for one reading: how far it may move each feature's normal, and the
    relation's."""
    width = features.shape[0]
    frozen_any = False
    for f in range(width):
        out[f] = SUSPICIOUS_TRUST if features[f] >= calm_below else 1.0
        if c.alert_active[s] and c.alert_drivers[s, f]:
            out[f] = 0.0
            frozen_any = True
    if frozen_any:
        out[width - 1] = 0.0
