"""The extremes channel (the range rule): a value beyond everything the stream has shown.

Per stream, the minimum and maximum of every feature seen so far (scaled units), starting from
the range training saw. Once a stream has shown ``min_samples`` values, one outside
``[min - m span, max + m span]`` (``m`` the margin, ``span = max - min``) is a new extreme.
A prediction error can be small for a value never seen before (the LSTM follows a slow climb
to a new level step by step): this marks what the errors miss, for two numbers per feature.

How rare is a new extreme? Record theory says, whatever the distribution: of ``n + 1``
exchangeable values, the last is the largest with probability ``1 / (n + 1)``. So a value
past the range of ``n`` values is priced at ``1 / (n + 1)``, no rarer: how far past it is the
point and contextual channels' business, on their calibrated tails. (It was priced certain
once: a score of 1 for every new extreme, which made 70 of the 76 false changepoints on
SKAB's first valve, and 3 of 6 alerts on a generated four-feature machine whose features
each set a record now and then.)

The range widens with every reading, alert or not: the channel marks the moment a stream goes
where it never went (an onset), and a new extreme fires again only beyond that. Holding an
alert while a fault persists is the contextual channels' business: a range frozen during an
alert held every alert on a pump whose engine temperature kept drifting after the fault.
"""

from __future__ import annotations

import numpy as np

from sensord.core.detect.channel import F64, Bools, Channel, Earlier, Observation, Reading
from sensord.core.state import ColumnSpec, Slots, StateTable


def range_columns(features: int) -> dict[str, ColumnSpec]:
    return {
        "seen_min": ColumnSpec(np.float64, (features,), np.inf),
        "seen_max": ColumnSpec(np.float64, (features,), -np.inf),
        "seen_n": ColumnSpec(np.int64),
    }


class ExtremesChannel(Channel):
    name = "extremes"

    def __init__(self, features: int, margin: float, min_samples: int) -> None:
        self.width = features
        self.margin = margin
        self.min_samples = min_samples

    def read(
        self, table: StateTable, slots: Slots, obs: Observation, z: F64, earlier: Earlier
    ) -> Reading:
        """The statistic: ``log(n + 1)`` for a feature past the range of ``n`` values (minus
        its natural log probability), NaN for one inside it."""
        outside = self.outside(table, slots, obs.values)
        seen = table["seen_n"][slots]
        outside &= (seen >= self.min_samples)[:, None]
        return Reading(stat=np.where(outside, np.log1p(seen)[:, None], np.nan))

    def outside(self, table: StateTable, slots: Slots, values: F64) -> Bools:
        """Per feature: beyond the stream's widened range."""
        low, high = table["seen_min"][slots], table["seen_max"][slots]
        slack = self.margin * (high - low)
        with np.errstate(invalid="ignore"):
            out: Bools = (values < low - slack) | (values > high + slack)
        return out

    def learn(
        self, table: StateTable, slots: Slots, obs: Observation, reading: Reading, trust: F64
    ) -> None:
        widen(table, slots, obs.values)

    def forget_normal(self, table: StateTable, slots: Slots) -> None:
        # What was shown before the change says nothing of the new normal's range.
        table["seen_min"][slots] = np.inf
        table["seen_max"][slots] = -np.inf
        table["seen_n"][slots] = 0


def widen(table: StateTable, slots: Slots, values: F64) -> None:
    table["seen_min"][slots] = np.minimum(table["seen_min"][slots], values)
    table["seen_max"][slots] = np.maximum(table["seen_max"][slots], values)
    table["seen_n"][slots] += 1
