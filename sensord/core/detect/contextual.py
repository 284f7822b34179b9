"""The contextual channel: the stream's level against the same time of day on earlier days.

A next-step forecaster follows a signal wherever it goes, so a daily pattern that changes shape
(a day's peak that does not come, a flat stretch where there should be a cycle, a machine at
the wrong level for the hour) barely moves its error. This channel ignores the model and asks
whether the stream's recent level is usual *for this time of day*:

- the level ``L`` is an exponentially weighted mean of the scaled values over ``span``
  samples (one reading's noise should not decide, a few readings' drift should);
- a profile per time-of-day slot keeps the exponentially weighted mean and variance of ``L``
  over about ``days`` days (a slot's visits in that many days); a stream without a daily cycle
  (a bundle without time-of-day inputs) has one slot, so the profile is simply its normal
  level;
- the statistic is ``|L - mean| / sd`` of the slot (with several features, the Mahalanobis
  distance under an exponentially weighted correlation of the slots' standardised residuals,
  shrunk towards the identity: a relation between features that breaks while each stays in
  its own range stands out, and each feature's share names which ones did).

A slot says nothing until it has seen ``min_days`` days of visits (``MIN_SAMPLES`` samples
without a daily cycle). It is a state channel: a feature's profile is not learnt while an
alert it drives is up, so a persisting fault stays abnormal against the normal it
interrupted, while the features the fault is not about go on learning theirs (visits are
counted per feature); the correlation is not learnt while any feature is frozen.
"""

from __future__ import annotations

import numpy as np

from sensord.arrays import F64, Bools
from sensord.core.detect.channel import Channel, Earlier, Observation, Reading
from sensord.core.detect.scale import TimeSlots
from sensord.core.state import ColumnSpec, Slots, StateTable

MIN_SAMPLES = 100  # without a daily cycle: values seen before the profile judges
SD_FLOOR = 0.05  # scaled units (training standard deviations): a flat slot is not exact
SHRINK = 0.1  # correlation shrunk this far towards the identity
CLIP_Z = 6.0  # standardised residuals enter the correlation clipped here
WINSOR = 3.0  # standard deviations at which a level enters the profile clipped
CORR_PRIOR = 20.0  # the identity a new stream's correlation starts from, in samples


class ContextualChannel(Channel):
    name = "contextual"
    learns_while_alerting = False

    def __init__(
        self, features: int, slots: TimeSlots, *, span: float, days: float, min_days: float
    ) -> None:
        self.features = features
        self.width = features + 1 if features > 1 else 1
        self.alpha = 2.0 / (span + 1.0)
        self.time = slots
        self.slots = slots.count
        per_day = slots.per_day
        self.cap = max(1.0, days * per_day)
        self.min_visits = max(2.0, min_days * per_day) if slots.daily else float(MIN_SAMPLES)
        # With a daily cycle a slot's visits on one day follow one another closely: at most
        # one independent look at its normal per day (fewer if the residuals are slower).
        self.per_day = per_day if slots.daily else 1.0

    def columns(self) -> dict[str, ColumnSpec]:
        f, s = self.features, self.slots
        columns = {
            "context_level": ColumnSpec(np.float64, (f,), np.nan),
            "context_mean": ColumnSpec(np.float64, (s, f), 0.0),
            "context_var": ColumnSpec(np.float64, (s, f), 0.0),
            "context_n": ColumnSpec(np.float64, (s, f), 0.0),
        }
        columns.update(
            {
                "context_prev": ColumnSpec(np.float64, (f,), np.nan),
                "context_lag": ColumnSpec(np.float64, (f,), 0.0),
                "context_sq": ColumnSpec(np.float64, (f,), 0.0),
                "context_ac_n": ColumnSpec(np.float64, (), 0.0),
            }
        )
        if f > 1:
            columns["context_corr"] = ColumnSpec(np.float64, (f, f), 0.0)
            columns["context_corr_n"] = ColumnSpec(np.float64, (), 0.0)
        return columns

    def start(self, table: StateTable, slots: Slots) -> None:
        super().start(table, slots)
        self.forget_normal(table, slots)

    def restart(self, table: StateTable, slots: Slots) -> None:
        table["context_level"][slots] = np.nan

    def forget_normal(self, table: StateTable, slots: Slots) -> None:
        table["context_mean"][slots] = 0.0
        table["context_var"][slots] = 0.0
        table["context_n"][slots] = 0.0
        table["context_prev"][slots] = np.nan
        table["context_lag"][slots] = 0.0
        table["context_sq"][slots] = 0.0
        table["context_ac_n"][slots] = 0.0
        if self.features > 1:
            table["context_corr"][slots] = np.eye(self.features)
            table["context_corr_n"][slots] = CORR_PRIOR

    def read(
        self, table: StateTable, slots: Slots, obs: Observation, z: F64, earlier: Earlier
    ) -> Reading:
        previous = table["context_level"][slots]
        level = np.where(
            np.isnan(previous), obs.values, previous + self.alpha * (obs.values - previous)
        )
        slot = self.time.of(obs.ts)
        mean = table["context_mean"][slots, slot]
        var = table["context_var"][slots, slot]
        visits = table["context_n"][slots, slot]  # [n, F]
        raw = (level - mean) / np.sqrt(np.maximum(var, SD_FLOOR * SD_FLOOR))
        resid = predictive_z(raw, self._looks(table, slots, visits))
        ready = visits >= self.min_visits
        parts = None
        stat = np.where(ready, np.abs(resid), np.nan)
        if self.features > 1:
            corr = (1.0 - SHRINK) * table["context_corr"][slots] + SHRINK * np.eye(self.features)
            solved = np.linalg.solve(corr, resid[:, :, None])[:, :, 0]
            parts = resid * solved
            joint = np.sqrt(np.maximum(parts.sum(axis=1), 0.0))
            joint = np.where(ready.all(axis=1), joint, np.nan)
            stat = np.concatenate([stat, joint[:, None]], axis=1)
        keep = {"level": level, "slot": slot, "resid": resid, "raw": raw}
        return Reading(stat=stat, parts=parts, keep=keep)

    def _looks(self, table: StateTable, slots: Slots, visits: F64) -> F64:
        """How many independent looks at its normal each feature's slot has had: its visits
        discounted by the lag-1 autocorrelation rho of the residuals (an AR(1)'s effective
        sample size, ``n (1 - rho) / (1 + rho)``: a level that wanders slowly, like an
        engine's temperature, has shown its normal only a few times however often it was
        read), and at most one per day with a daily cycle."""
        sq = table["context_sq"][slots]
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.clip(np.where(sq > 0, table["context_lag"][slots] / sq, 0.0), 0.0, 0.9999)
        looks = visits * (1.0 - rho) / (1.0 + rho)
        out: F64 = np.minimum(looks, visits / self.per_day)
        return out

    def learn(
        self, table: StateTable, slots: Slots, obs: Observation, reading: Reading, trust: F64
    ) -> None:
        """``trust[n, F + 1]``: per feature, then for the correlation (alert.py)."""
        level = reading.keep["level"]
        table["context_level"][slots] = level
        own = trust[:, : self.features]
        normal = own > 0
        # (Before the return below: a frozen feature's previous residual is forgotten
        # whatever the other streams of its wave do, so a stream's outcome does not depend
        # on which streams share its wave; the compiled path steps one stream at a time.)
        self._learn_autocorrelation(table, slots, reading.keep["raw"], own >= 1.0)
        if not normal.any():
            return
        rows = normal.any(axis=1)
        slots, level, own = slots[rows], level[rows], own[rows]
        slot = reading.keep["slot"][rows]
        visits = table["context_n"][slots, slot]
        weight = own / np.minimum(visits + 1.0, self.cap)
        mean = table["context_mean"][slots, slot]
        var = table["context_var"][slots, slot]
        # Once a slot judges, a level far from its normal enters winsorised: an anomaly that
        # has not raised an alert (yet) drags the normal it is judged by only a little.
        limit = np.where(
            visits >= self.min_visits,
            WINSOR * np.sqrt(np.maximum(var, SD_FLOOR * SD_FLOOR)),
            np.inf,
        )
        delta = np.clip(level - mean, -limit, limit)
        table["context_mean"][slots, slot] = mean + weight * delta
        table["context_var"][slots, slot] = (1.0 - weight) * (var + weight * delta * delta)
        table["context_n"][slots, slot] = visits + own
        if self.features > 1:
            self._learn_correlation(table, slots, reading.keep["resid"][rows], trust[rows], visits)

    def _learn_autocorrelation(
        self, table: StateTable, slots: Slots, raw: F64, calm: Bools
    ) -> None:
        """The lag-1 autocorrelation of each feature's residuals, from calm features only."""
        previous = table["context_prev"][slots]
        table["context_prev"][slots] = np.where(calm, raw, np.nan)
        both = calm & ~np.isnan(previous) & ~np.isnan(raw)
        rows = both.any(axis=1)
        if not rows.any():
            return
        slots, raw, previous, both = slots[rows], raw[rows], previous[rows], both[rows]
        n = table["context_ac_n"][slots] + 1.0
        weight = np.where(both, (1.0 / np.minimum(n, self.cap * self.slots))[:, None], 0.0)
        clipped = np.clip(np.nan_to_num(raw), -CLIP_Z, CLIP_Z)
        before = np.clip(np.nan_to_num(previous), -CLIP_Z, CLIP_Z)
        lag, sq = table["context_lag"][slots], table["context_sq"][slots]
        table["context_lag"][slots] = lag + weight * (clipped * before - lag)
        table["context_sq"][slots] = sq + weight * (clipped * clipped - sq)
        table["context_ac_n"][slots] = n

    def _learn_correlation(
        self, table: StateTable, slots: Slots, resid: F64, trust: F64, visits: F64
    ) -> None:
        """The residuals' correlation, weighted by the relation's trust (``trust[:, -1]``:
        nothing while any feature drives an alert)."""
        relation = trust[:, -1]
        ready = (visits >= self.min_visits).all(axis=1) & (relation > 0)
        if not ready.any():
            return
        slots = slots[ready]
        resid = np.clip(resid[ready], -CLIP_Z, CLIP_Z)
        n = table["context_corr_n"][slots] + 1.0
        weight = (relation[ready] / np.minimum(n, self.cap * self.slots))[:, None, None]
        corr = table["context_corr"][slots]
        outer = resid[:, :, None] * resid[:, None, :]
        table["context_corr"][slots] = corr + weight * (outer - corr)
        table["context_corr_n"][slots] = n


class ShiftChannel(Channel):
    """The stream's level kept away from its normal for a while: a fault that persists.

    The contextual residuals (each feature's level against its slot's normal, in the slot's
    standard deviations) averaged exponentially over ``span`` samples: a small offset that
    no single level reading makes remarkable adds up while it lasts, as a CUSUM's sum does,
    and fades once the level is back. A state channel, like the contextual one it reads.
    """

    name = "shift"
    learns_while_alerting = False

    def __init__(self, features: int, span: float) -> None:
        self.features = self.width = features
        self.alpha = 2.0 / (span + 1.0)

    def columns(self) -> dict[str, ColumnSpec]:
        return {"shift_mean": ColumnSpec(np.float64, (self.features,), 0.0)}

    def restart(self, table: StateTable, slots: Slots) -> None:
        table["shift_mean"][slots] = 0.0

    def forget_normal(self, table: StateTable, slots: Slots) -> None:
        table["shift_mean"][slots] = 0.0

    def read(
        self, table: StateTable, slots: Slots, obs: Observation, z: F64, earlier: Earlier
    ) -> Reading:
        context = earlier["contextual"]
        resid = np.clip(context.keep["resid"], -CLIP_Z, CLIP_Z)
        known = ~np.isnan(context.stat[:, :1])
        previous = table["shift_mean"][slots]
        mean = np.where(known, previous + self.alpha * (resid - previous), previous)
        return Reading(stat=np.where(known, np.abs(mean), np.nan), keep={"mean": mean})

    def learn(
        self, table: StateTable, slots: Slots, obs: Observation, reading: Reading, trust: F64
    ) -> None:
        table["shift_mean"][slots] = reading.keep["mean"]


def predictive_z(t: F64, looks: F64) -> F64:
    """A residual against a normal estimated from ``looks`` independent looks, as the
    standard normal deviate of the same tail probability.

    With the mean and variance estimated from n looks, a new level's standardised residual
    follows Student's t with n - 1 degrees of freedom, scaled by sqrt(1 + 1/n): a profile
    learnt over two days must not be trusted like one learnt over twenty. Wallace's (1959)
    approximation maps t to the normal deviate (within 4 % of the exact one at 1 degree of
    freedom, 0.2 % at 10, and on the conservative side).
    """
    n = np.maximum(looks, 1.0)
    nu = np.maximum(n - 1.0, 1.0)
    scaled = t / np.sqrt(1.0 + 1.0 / n)
    magnitude = (8.0 * nu + 1.0) / (8.0 * nu + 3.0) * np.sqrt(nu * np.log1p(scaled * scaled / nu))
    out: F64 = np.sign(t) * magnitude
    return out
