"""The alert lifecycle: decisions per sample in, raised/updated/cleared events out.

Separate from scoring on purpose: a detector says how anomalous one sample is; the lifecycle
decides when that becomes an alert an operator sees, and when it ends.

- **Raise**: after ``raise_after`` consecutive anomalous samples (score at or above the
  threshold, past warm-up), not within ``cooldown_s`` of the last clear, and only if the
  score beats every score of the last ``repeat_window`` samples: the tail of an event that
  was just alerted (a second spike of the same burst, the score settling after a shift) is
  the same event, not a new alert.
- **Drivers**: an alert is about the features that drove it: at its raise, every feature
  (and, for several features, the relation between them) whose own score is past ``threshold
  - hysteresis``, and at least the one that decided it; an update adds the features of the
  new onset. They are kept per stream (``alert_drivers``).
- **Hold**: an alert stays up while its drivers are still abnormal (the score of the most
  surprised driver), and the detector's model of normal does not learn those features while
  it is up (detect/channel.py): a fault that persists stays alerted against the normal it
  interrupted. Every other feature goes on learning, and a feature that did not drive the
  alert does not hold it: a pump's temperature that drifts after a valve fault does not keep
  the valve's alert up once the flow is back.
- **Update**: inside an alert, a new onset (the surprise channels anomalous again after
  ``clear_after`` calm samples) is an ``updated`` event of the same alert, so a second
  fault during the first is not lost in it.
- **Clear**: after ``clear_after`` consecutive samples whose drivers score below
  ``threshold - hysteresis``; or, if ``adopt_after_s`` is set, once an alert has lasted that
  long the stream's current state is adopted as its new normal (the clear says so).
  Otherwise a changed plant becomes normal only explicitly: an operator's ``new_normal``
  verdict or a retrained bundle.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64, Bools
from sensord.core.bundle import Manifest
from sensord.core.detect import CHANNELS
from sensord.core.state import ColumnSpec, Slots, StateTable

ALERT_ID_NAMESPACE = uuid.UUID("6f1c7a52-3d0e-4b8e-9a57-5e6a3b1f0c11")


class Transition(IntEnum):
    NONE = 0
    RAISED = 1
    CLEARED = 2
    UPDATED = 3
    ADOPTED = 4  # cleared because the alert lasted adopt_after_s: the new normal


EVENT_NAMES = {
    Transition.RAISED: "raised",
    Transition.UPDATED: "updated",
    Transition.CLEARED: "cleared",
    Transition.ADOPTED: "cleared",
}


@dataclass(frozen=True)
class AlertPolicy:
    """When decisions become alerts."""

    raise_after: int = 1
    clear_after: int = 5
    hysteresis: float = 0.1
    cooldown_s: float = 0.0
    warmup: int = 10
    repeat_window: int = 20
    adopt_after_s: float | None = None

    def __post_init__(self) -> None:
        if self.raise_after < 1 or self.clear_after < 1:
            raise ValueError("raise_after and clear_after must be >= 1")
        if not 0.0 <= self.hysteresis < 1.0 or self.cooldown_s < 0 or self.warmup < 0:
            raise ValueError("hysteresis must be in [0, 1), cooldown_s and warmup >= 0")
        if self.repeat_window < 0:
            raise ValueError("repeat_window must be >= 0")
        if self.adopt_after_s is not None and self.adopt_after_s <= 0:
            raise ValueError("adopt_after_s must be > 0 (or None: never)")


ALERT_COLUMNS: dict[str, ColumnSpec] = {
    "alert_active": ColumnSpec(np.bool_, (), False),
    "anomalous_run": ColumnSpec(np.int64),
    "normal_run": ColumnSpec(np.int64),
    "surprise_calm": ColumnSpec(np.int64),
    "cooldown_until": ColumnSpec(np.float64, (), -np.inf),
    "raised_ts": ColumnSpec(np.float64, (), np.nan),
    "peak_score": ColumnSpec(np.float64, (), np.nan),
    "recent_peak": ColumnSpec(np.float64, (), -np.inf),
    "recent_age": ColumnSpec(np.int64),
    "alert_channel": ColumnSpec(np.int8, (), -1),
    "alert_updates": ColumnSpec(np.int64),
    "alerts_raised": ColumnSpec(np.int64),
}


DRIVERS = "alert_drivers"


def driver_columns(features: int) -> dict[str, ColumnSpec]:
    """Which features drove each stream's alert: one per feature, then the relation between
    them (the joint statistic of several features)."""
    return {DRIVERS: ColumnSpec(np.bool_, (features + 1,), False)}


def advance(
    table: StateTable,
    policy: AlertPolicy,
    slots: Slots,
    *,
    ts: F64,
    scores: F64,
    surprise: F64,
    warm: Bools,
    threshold: float,
    held: F64 | None = None,
) -> npt.NDArray[np.int8]:
    """Advance the lifecycle of these streams by one sample each; return their transitions.

    ``scores`` decide raising, ``held`` (the score of the alert's drivers, ``held_scores``;
    by default ``scores``) holding, ``surprise`` (the surprise channels' own score) updates
    inside an alert; NaN scores (no prediction yet) neither raise nor clear, and streams not
    ``warm`` yet never count as anomalous.
    """
    calm_below = threshold - policy.hysteresis
    anomalous = (scores >= threshold) & warm
    calm = (scores if held is None else held) < calm_below
    anomalous_run = np.where(anomalous, table["anomalous_run"][slots] + 1, 0)
    normal_run = np.where(calm, table["normal_run"][slots] + 1, 0)
    active = table["alert_active"][slots].astype(bool)

    fresh = scores > _remembered_peak(table, policy, slots)
    cooled = ts >= table["cooldown_until"][slots]
    raised = (~active) & (anomalous_run >= policy.raise_after) & cooled & fresh
    cleared = active & (normal_run >= policy.clear_after)
    adopted = np.zeros(len(slots), dtype=bool)
    if policy.adopt_after_s is not None:
        lasted = ts - table["raised_ts"][slots] >= policy.adopt_after_s
        adopted = active & ~cleared & lasted
    onset = _onset(table, policy, slots, surprise=surprise, warm=warm, threshold=threshold)
    updated = active & ~cleared & ~adopted & onset
    _renew_peak(table, policy, slots, scores)

    ended = cleared | adopted
    peak = table["peak_score"][slots]
    peak = np.where(raised, scores, np.where(active, np.fmax(peak, scores), peak))
    table["peak_score"][slots] = peak
    table["raised_ts"][slots] = np.where(raised, ts, table["raised_ts"][slots])
    table["alerts_raised"][slots] += raised
    table["alert_updates"][slots] = np.where(raised, 0, table["alert_updates"][slots] + updated)
    table["cooldown_until"][slots] = np.where(
        ended, ts + policy.cooldown_s, table["cooldown_until"][slots]
    )
    table["alert_active"][slots] = (active | raised) & ~ended
    table["anomalous_run"][slots] = np.where(ended, 0, anomalous_run)
    table["normal_run"][slots] = np.where(raised, 0, normal_run)
    return _codes(raised=raised, updated=updated, cleared=cleared, adopted=adopted)


def _remembered_peak(table: StateTable, policy: AlertPolicy, slots: Slots) -> F64:
    """The highest score of each stream's last ``repeat_window`` samples (-inf: none): a
    new alert must beat it, or it is the tail of the event just alerted."""
    recent_peak, recent_age = table["recent_peak"][slots], table["recent_age"][slots]
    out: F64 = np.where(recent_age < policy.repeat_window, recent_peak, -np.inf)
    return out


def _renew_peak(table: StateTable, policy: AlertPolicy, slots: Slots, scores: F64) -> None:
    """Take these scores into the streams' recent peaks (after they were judged by them)."""
    recent_peak, recent_age = table["recent_peak"][slots], table["recent_age"][slots]
    known = ~np.isnan(scores)
    renew = known & ((scores >= recent_peak) | (recent_age >= policy.repeat_window))
    table["recent_peak"][slots] = np.where(renew, scores, recent_peak)
    table["recent_age"][slots] = np.where(renew, 0, recent_age + known)


def _onset(
    table: StateTable,
    policy: AlertPolicy,
    slots: Slots,
    *,
    surprise: F64,
    warm: Bools,
    threshold: float,
) -> Bools:
    """A new onset: the surprise channels anomalous again after ``clear_after`` calm samples
    of theirs (this sample's calm is counted for the next)."""
    surprised = (surprise >= threshold) & warm
    settled = table["surprise_calm"][slots] >= policy.clear_after
    table["surprise_calm"][slots] = np.where(
        surprise < threshold - policy.hysteresis, table["surprise_calm"][slots] + 1, 0
    )
    out: Bools = surprised & settled
    return out


def _codes(
    *, raised: Bools, updated: Bools, cleared: Bools, adopted: Bools
) -> npt.NDArray[np.int8]:
    """Each sample's ``Transition`` (at most one: the four are exclusive)."""
    transitions = np.zeros(len(raised), dtype=np.int8)
    transitions[raised] = Transition.RAISED
    transitions[updated] = Transition.UPDATED
    transitions[cleared] = Transition.CLEARED
    transitions[adopted] = Transition.ADOPTED
    return transitions


def held_scores(table: StateTable, slots: Slots, scores: F64, features: F64) -> F64:
    """The score an alert is held by: its most surprised driver's (``features[n, F + 1]``:
    each feature's score, then the relation's); a stream without an alert up (or without
    drivers) is judged by its whole ``scores``."""
    active = table["alert_active"][slots].astype(bool)
    if not active.any():  # (most waves: nothing to hold)
        return scores
    drivers = table[DRIVERS][slots]
    active &= drivers.any(axis=1)
    driven = np.where(drivers, np.nan_to_num(features, nan=0.0), 0.0).max(axis=1)
    out: F64 = np.where(active & ~np.isnan(scores), driven, scores)
    return out


def drive(
    table: StateTable,
    slots: Slots,
    transitions: npt.NDArray[np.int8],
    features: F64,
    *,
    threshold: float,
    calm_below: float,
) -> None:
    """Record the drivers of the alerts these transitions raised or updated; forget those
    of the alerts they ended."""
    if not transitions.any():  # (most waves: no transition)
        return
    drivers = table[DRIVERS][slots]
    known = np.nan_to_num(features, nan=0.0)
    top = np.zeros_like(drivers)
    top[np.arange(len(slots)), np.argmax(known, axis=1)] = True
    raised = (transitions == Transition.RAISED)[:, None]
    updated = (transitions == Transition.UPDATED)[:, None]
    ended = ((transitions == Transition.CLEARED) | (transitions == Transition.ADOPTED))[:, None]
    # The relation drives an alert only when no feature explains it on its own.
    own: Bools = known[:, :-1] >= calm_below
    relation: Bools = (known[:, -1] >= calm_below) & ~own.any(axis=1)
    alone = np.concatenate([own, relation[:, None]], axis=1)
    drivers = np.where(raised, alone | top, drivers)
    drivers = np.where(updated, drivers | (known >= threshold) | top, drivers)
    table[DRIVERS][slots] = drivers & ~ended


SUSPICIOUS_TRUST = 0.1


def trust(table: StateTable, slots: Slots, features: F64, calm_below: float) -> F64:
    """How far each sample may move its stream's model of normal, per feature and for the
    relation between them (``features[n, F + 1]``, their scores; detect/channel.py): not at
    all for what drives an alert that is up (a persisting fault is not learnt as normal),
    a tenth as far as a calm sample where the score is past ``calm_below`` (a fault that
    has not raised an alert yet is not absorbed before it does, while a real change that
    never alerts is still learnt, ten times slower), fully otherwise. The relation does not
    learn while any driver is frozen."""
    suspicious = features >= calm_below  # NaN: not suspicious
    out: F64 = np.where(suspicious, SUSPICIOUS_TRUST, 1.0)
    active = table["alert_active"][slots].astype(bool)
    if active.any():
        frozen = active[:, None] & table[DRIVERS][slots]
        frozen[:, -1] |= frozen.any(axis=1)
        out[frozen] = 0.0
    return out


@dataclass(frozen=True)
class AlertEvent:
    """An alert raised, updated or cleared for one stream."""

    event: str  # "raised" | "updated" | "cleared"
    alert_id: str
    stream: str
    ts: float
    raised_ts: float
    values: tuple[float, ...]
    expected: tuple[float, ...]
    error: float
    score: float
    peak_score: float
    threshold: float
    severity: str
    model: str
    model_version: str
    channel: str = "error"  # the channel that decided this sample's score
    drivers: tuple[tuple[str, float], ...] = ()  # (feature, share), largest share first
    reason: str | None = None  # for a clear: "normal", "adopted" or "accepted"


def alert_id(model: str, stream: str, raised_ts: float) -> str:
    """A stable id: the same alert (model, stream, time raised) always gets the same id."""
    return str(uuid.uuid5(ALERT_ID_NAMESPACE, f"{model}|{stream}|{raised_ts:.6f}"))


def severity(score: float, threshold: float) -> str:
    """``critical`` past halfway from the threshold to 1, else ``warning``."""
    return "critical" if score >= (1.0 + threshold) / 2 else "warning"


def alert_event(
    table: StateTable | None,
    manifest: Manifest,
    threshold: float,
    stream: str,
    slot: int,
    *,
    ts: float,
    values: F64,
    expected: F64,
    error: float,
    score: float,
    transition: Transition,
    channel: int,
    shares: F64,
    raised: tuple[float, float] | None = None,
) -> AlertEvent:
    """The event of a transition of one stream's alert, with the features that drove it;
    its raise time and peak score ``raised`` (as of this reading) or the table's now."""
    if raised is None and table is not None:
        raised = (float(table["raised_ts"][slot]), float(table["peak_score"][slot]))
    raised_ts, peak = raised or (float("nan"), float("nan"))
    features = manifest.features
    drivers = tuple(
        (features[f], round(float(shares[f]), 4))
        for f in np.argsort(-shares, kind="stable").tolist()
        if shares[f] > 0
    )
    reason = {Transition.CLEARED: "normal", Transition.ADOPTED: "adopted"}.get(transition)
    return AlertEvent(
        event=EVENT_NAMES[transition],
        alert_id=alert_id(manifest.name, stream, raised_ts),
        stream=stream,
        ts=ts,
        raised_ts=raised_ts,
        values=tuple(float(v) for v in values),
        expected=tuple(float(v) for v in expected),
        error=error,
        score=score,
        peak_score=peak,
        threshold=threshold,
        severity=severity(peak, threshold),
        model=manifest.name,
        model_version=manifest.version,
        channel=CHANNELS[channel] if channel >= 0 else "none",
        drivers=drivers,
        reason=reason,
    )


def accept(
    table: StateTable,
    policy: AlertPolicy,
    slot: int,
    *,
    manifest: Manifest,
    threshold: float,
    values: F64,
) -> AlertEvent | None:
    """An operator's verdict that a stream's state is its new normal: end its alert as for
    any clear (cooldown included) and return the cleared event, reason ``accepted``, at its
    last reading (``values``, raw). None if the stream has no alert up. Learning the normal
    again from here is the detector's business (``forget_normal``)."""
    stream = table.stream_of[slot]
    if stream is None or not table["alert_active"][slot]:
        return None
    ts = float(table["last_ts"][slot])
    event = alert_event(
        table,
        manifest,
        threshold,
        stream,
        slot,
        ts=ts,
        values=values,
        expected=np.full(len(values), np.nan),
        error=float("nan"),
        score=float("nan"),
        transition=Transition.CLEARED,
        channel=-1,
        shares=np.zeros(len(values)),
    )
    table["alert_active"][slot] = False
    table["anomalous_run"][slot] = 0
    table["normal_run"][slot] = 0
    table["cooldown_until"][slot] = ts + policy.cooldown_s
    table[DRIVERS][slot] = False
    return replace(event, reason="accepted")
