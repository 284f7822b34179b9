"""Gaps in a stream's own time: how far apart its readings can be, by their timestamps.

Each stream keeps the longest recent interval between the timestamps of the readings it
steps, as a decaying maximum: a new interval longer than it takes its place, and it shrinks
by ``DECAY`` (in log terms) with every reading, so one outage is forgotten after a few
hundred readings while a sensor that reports on change, at irregular intervals, keeps its
longest ones in mind. It is kept in the state table and so in snapshots. The daemon's
reorder stage (daemon/reorder.py) reads it to tell a reading that arrives after a gap, whose
older neighbours may still be on their way, from the next reading in line: a maximum rather
than an average, so that an irregular sensor is not held at every longer interval.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64, Bools
from sensord.core.state import ColumnSpec, Slots, StateTable

DECAY = 0.01  # of the log of the longest interval per reading (halves in about 70)
# The longest step is trusted once this many intervals went into it: over the first few, a
# publisher's jitter alone makes a "gap" (a 1,000-stream drain held 46 % of its readings
# when one interval was enough).
MIN_INTERVALS = 16
GAP_COLUMNS = {"log_long_step": ColumnSpec(np.float64, (), np.nan)}


def log_intervals(slots: Slots, previous: F64, current: F64) -> tuple[Slots, F64] | None:
    """The streams with an interval since their previous time, and its log (None: none)."""
    interval = current - previous
    ok = np.isfinite(previous) & (interval > 0)
    if not ok.any():
        return None
    return slots[ok], np.log(interval[ok])


def learn_step(table: StateTable, slots: Slots, previous: F64, ts: F64) -> None:
    """Fold the interval since each stream's previous timestamp into its longest step."""
    found = log_intervals(slots, previous, ts)
    if found is None:
        return
    slots, log_step = found
    old = table["log_long_step"][slots]
    table["log_long_step"][slots] = np.where(
        np.isnan(old), log_step, np.maximum(log_step, old - DECAY)
    )


def after_gap(
    last: F64, log_step: F64, steps: npt.NDArray[np.int64], ts: F64, factor: float
) -> Bools:
    """Readings at ``ts`` more than ``factor`` longest steps after their stream's last one
    (False where either is not known yet, or the stream has made fewer than
    ``MIN_INTERVALS`` steps)."""
    with np.errstate(invalid="ignore"):
        gap: Bools = (ts - last) > factor * np.exp(log_step)
    return gap & np.isfinite(last) & np.isfinite(log_step) & (steps > MIN_INTERVALS)
