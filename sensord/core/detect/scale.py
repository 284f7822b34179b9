"""Time-of-day slots, and each stream's error scale per slot.

``TimeSlots`` cuts the day into slots for streams with a daily cycle (a bundle with
time-of-day inputs): at most ``MAX_SLOTS``, none shorter than ``MIN_SLOT_S`` or than a span
of samples, so that every slot is visited a few times a day. A stream without a daily cycle
has one slot. The contextual channel keeps its profile by slot, and so does the error scale.

``ErrorScale`` is what every error is measured in: per feature, the exponentially weighted
RMS of the prediction errors, per slot. A stream's errors are often larger at some times of
day than at others (rush hour, the switching edge of a cycle the model cannot time to the
sample): an error is judged against the errors usually made at that time of day. A slot's
own estimate, over about ``days`` days, is pooled with the whole day's (as many samples'
worth as ``POOL_DAYS`` days of that slot), so a slot seen on a few days only is not trusted
alone. Errors enter winsorised at ``WINSOR`` scales: one anomaly does not widen the scale it
is judged by.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64
from sensord.core.state import ColumnSpec, Slots, StateTable

DAY_S = 86_400.0
MAX_SLOTS = 48
MIN_SLOT_S = 1_800.0  # slots of at least half an hour
WINSOR = 4.0  # errors enter the error scale clipped at this many scales
POOL_DAYS = 2.0  # the whole day's scale counts as this many days of a slot's own
SCALE_PRIOR = 20.0  # the calibration's error scale counts as this many samples


class TimeSlots:
    """Which slot of the day a timestamp falls in, and how often a slot is visited."""

    def __init__(self, *, daily: bool, interval_s: float, span: float) -> None:
        interval = max(interval_s, 1e-3)
        if daily:
            width = max(MIN_SLOT_S, span * interval)
            self.count = max(1, min(MAX_SLOTS, round(DAY_S / width)))
        else:
            self.count = 1
        self.daily = daily
        self.width_s = DAY_S / self.count
        self.per_day = DAY_S / self.count / interval  # visits of one slot per day

    def of(self, ts: F64) -> npt.NDArray[np.intp]:
        if self.count == 1:
            return np.zeros(len(ts), dtype=np.intp)
        slot = np.floor(np.mod(ts, DAY_S) / self.width_s).astype(np.intp)
        return np.asarray(slot % self.count, dtype=np.intp)


class ErrorScale:
    """Per stream, slot and feature: the RMS prediction error usually made there."""

    def __init__(
        self,
        features: int,
        slots: TimeSlots,
        *,
        horizon: int,
        days: float,
        prior: float,
        floor: float,
    ) -> None:
        self.features = features
        self.slots = slots
        self.horizon = horizon
        self.prior_var = prior * prior
        self.floor = floor
        self.pool = POOL_DAYS * slots.per_day
        self.slot_cap = max(1.0, days * slots.per_day)

    def columns(self) -> dict[str, ColumnSpec]:
        f, s = self.features, self.slots.count
        return {
            "error_var": ColumnSpec(np.float64, (f,)),
            "error_n": ColumnSpec(np.float64),
            "error_slot_var": ColumnSpec(np.float64, (s, f)),
            "error_slot_n": ColumnSpec(np.float64, (s,)),
        }

    def start(self, table: StateTable, slots: Slots) -> None:
        table["error_var"][slots] = self.prior_var
        table["error_n"][slots] = SCALE_PRIOR
        table["error_slot_var"][slots] = self.prior_var
        table["error_slot_n"][slots] = 0.0

    def variance(self, table: StateTable, slots: Slots, ts: F64) -> F64:
        """Each sample's error variance: its slot's, pooled with the whole day's."""
        overall = table["error_var"][slots]
        if self.slots.count == 1:
            return overall
        slot = self.slots.of(ts)
        own, n = table["error_slot_var"][slots, slot], table["error_slot_n"][slots, slot]
        pooled: F64 = (n[:, None] * own + self.pool * overall) / (n[:, None] + self.pool)
        return pooled

    def standardised(self, table: StateTable, slots: Slots, errors: F64, ts: F64) -> F64:
        scale = np.maximum(np.sqrt(self.variance(table, slots, ts)), self.floor)
        out: F64 = errors / scale
        return out

    def learn(self, table: StateTable, slots: Slots, errors: F64, ts: F64) -> None:
        limit = WINSOR * WINSOR * np.maximum(self.variance(table, slots, ts), self.floor**2)
        squared = np.minimum(errors * errors, limit)
        n = table["error_n"][slots] + 1.0
        weight = (1.0 / np.minimum(n, self.horizon))[:, None]
        var = table["error_var"][slots]
        table["error_var"][slots] = var + weight * (squared - var)
        table["error_n"][slots] = n
        if self.slots.count == 1:
            return
        slot = self.slots.of(ts)
        seen = table["error_slot_n"][slots, slot] + 1.0
        own = table["error_slot_var"][slots, slot]
        mine = (1.0 / np.minimum(seen, self.slot_cap))[:, None]
        table["error_slot_var"][slots, slot] = own + mine * (squared - own)
        table["error_slot_n"][slots, slot] = seen
