"""Gaps in a stream's own time: how far apart its readings usually are, by their timestamps.

Each stream learns its usual step as a geometric moving average of the intervals between
the timestamps of the readings it steps (one long outage must not teach a 1 s sensor that
its step is an hour), kept in the state table and so in snapshots. The daemon's reorder
stage (daemon/reorder.py) reads it to tell a reading that arrives after a gap, whose older
neighbours may still be on their way, from the next reading in line.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sensord.core.state import ColumnSpec, Slots, StateTable

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
STEP_WEIGHT = 0.1  # of the newest interval in the moving average of log intervals
GAP_COLUMNS = {"log_ts_step": ColumnSpec(np.float64, (), np.nan)}


def learn_step(table: StateTable, slots: Slots, previous: F64, ts: F64) -> None:
    """Fold the interval since each stream's previous timestamp into its usual step."""
    step = ts - previous
    ok = np.isfinite(previous) & (step > 0)
    if not ok.any():
        return
    slots, log_step = slots[ok], np.log(step[ok])
    old = table["log_ts_step"][slots]
    table["log_ts_step"][slots] = np.where(
        np.isnan(old), log_step, old + STEP_WEIGHT * (log_step - old)
    )


def after_gap(last: F64, log_step: F64, ts: F64, factor: float) -> Bools:
    """Readings at ``ts`` more than ``factor`` usual steps after their stream's last one
    (False where either is not known yet)."""
    with np.errstate(invalid="ignore"):
        gap: Bools = (ts - last) > factor * np.exp(log_step)
    return gap & np.isfinite(last) & np.isfinite(log_step)
