"""No-data alarms: a stream that falls silent for much longer than it usually is.

A sensor that stops sending is no anomaly the LSTM can see (there is nothing to score), yet
it is often the first sign of a fault: a dead battery, a cut cable, a crashed gateway. Each
stream learns its usual period as a geometric moving average of the intervals between its
readings (by receive time: silence is what sensord hears), kept in the state table and so in
snapshots. A stream silent for ``multiple`` of its period (and at least ``min_silence_s``)
raises a ``nodata`` event, a data-quality alarm kept apart from anomaly alerts; its next
reading clears it.

The geometric mean, not the arithmetic one: one long outage must not teach a 1 s sensor that
its period is an hour. Silence is counted from when sensord last (re)connected at the
latest, so a daemon that was away itself does not blame every stream at start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sensord.arrays import F64
from sensord.core.gaps import log_intervals
from sensord.core.state import ColumnSpec, Slots, StateTable

PERIOD_WEIGHT = 0.1  # of the newest interval in the moving average of log intervals
NODATA_COLUMNS = {
    "log_period": ColumnSpec(np.float64, (), np.nan),
    "intervals": ColumnSpec(np.int64, (), 0),
    "nodata": ColumnSpec(np.bool_, (), False),
    # The last reading before the silence: the returning reading overwrites last_received
    # before the clear is reported, so the clear's silence is measured from this.
    "silent_since": ColumnSpec(np.float64, (), np.nan),
}


@dataclass(frozen=True)
class NodataPolicy:
    multiple: float = 10.0
    min_silence_s: float = 30.0
    min_intervals: int = 5


@dataclass(frozen=True)
class Silence:
    """A stream gone silent: since when, and what its usual period is."""

    stream: str
    slot: int
    last: float
    period_s: float


def learn_period(table: StateTable, slots: Slots, previous: F64, received: F64) -> None:
    """Fold the interval since each stream's previous reading into its usual period."""
    found = log_intervals(slots, previous, received)
    if found is None:
        return
    slots, log_gap = found
    old = table["log_period"][slots]
    table["log_period"][slots] = np.where(
        np.isnan(old), log_gap, old + PERIOD_WEIGHT * (log_gap - old)
    )
    table["intervals"][slots] += 1


def silent(
    table: StateTable, policy: NodataPolicy, now: float, listening_since: float
) -> list[Silence]:
    """Streams newly silent at ``now`` (marked, so each is reported once)."""
    last = table["last_received"]
    period = np.exp(table["log_period"])
    allowed = np.maximum(policy.multiple * period, policy.min_silence_s)
    quiet = np.maximum(last, listening_since)
    newly = (
        np.isfinite(last)
        & (table["intervals"] >= policy.min_intervals)
        & ~table["nodata"]
        & (now - quiet > allowed)
    )
    found = []
    for slot in np.flatnonzero(newly).tolist():
        stream = table.stream_of[slot]
        if stream is not None:
            table["nodata"][slot] = True
            table["silent_since"][slot] = last[slot]
            found.append(Silence(stream, slot, float(last[slot]), float(period[slot])))
    return found


def returned(table: StateTable, slots: Slots) -> list[Silence]:
    """Of these streams that just sent a reading, those that were silent (now cleared)."""
    flags = table["nodata"][slots]
    if not flags.any():  # the usual case, kept cheap: it runs for every batch
        return []
    back = np.unique(slots[flags])
    table["nodata"][back] = False
    return [
        Silence(
            table.stream_of[slot] or "",
            slot,
            _silent_since(table, slot),
            usual_period(table, slot),
        )
        for slot in back.tolist()
    ]


def _silent_since(table: StateTable, slot: int) -> float:
    since = float(table["silent_since"][slot])
    # (NaN: a snapshot from before this column; the returning reading is all we know.)
    return since if math.isfinite(since) else float(table["last_received"][slot])


def usual_period(table: StateTable, slot: int) -> float:
    value = float(table["log_period"][slot])
    return math.exp(value) if math.isfinite(value) else math.nan
