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

from sensord.arrays import F64, Bools
from sensord.core.bundle import Manifest, Scaling
from sensord.core.detect.channel import Channel, Earlier, Observation, Reading
from sensord.core.state import ColumnSpec, Slots, StateTable
from sensord.core.transform import Transform, forward, inverse

# The slack each side of the range a stream has shown, as a fraction of it; and the values a
# stream shows before the channel speaks (fewer make a record too cheap to mean anything).
DEFAULT_RANGE_MARGIN = 0.05
DEFAULT_RANGE_MIN_SAMPLES = 100


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

    def columns(self) -> dict[str, ColumnSpec]:
        # The range is the channel's own state: a route whose range rule is off keeps none.
        return range_columns(self.width)

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


def start_from_training(table: StateTable, slot: int, scaling: Scaling, manifest: Manifest) -> None:
    """A new stream's range starts from what training saw of its kind of stream (its
    ``scaling``'s), counted as the training rows. Called by the core for every new stream,
    whichever detector keeps the range; nothing where none does, or the bundle has no range."""
    if "seen_min" not in table.specs or scaling.low is None or scaling.high is None:
        return
    center, scale = np.asarray(scaling.center), np.asarray(scaling.scale)
    low, high = np.asarray(scaling.low), np.asarray(scaling.high)
    table["seen_min"][slot] = forward(manifest.transform, (low - center) / scale)
    table["seen_max"][slot] = forward(manifest.transform, (high - center) / scale)
    table["seen_n"][slot] = manifest.training.rows


def carry_range(
    table: StateTable, slots: Slots, old: tuple[F64, F64, Transform], transform: Transform
) -> None:
    """At a new bundle (swap.py): the range, in the old scaled units (``old``: the streams'
    centers, scales and transform), carried through raw units into the new ones (the table's
    scaling now, and ``transform``)."""
    if "seen_min" not in table.specs:
        return
    center, scale, old_transform = old
    new_center, new_scale = table["center"][slots], table["scale"][slots]
    for column in ("seen_min", "seen_max"):
        seen = table[column][slots]
        raw = inverse(old_transform, seen) * scale + center  # ±inf (nothing seen) stays ±inf
        with np.errstate(invalid="ignore"):
            table[column][slots] = np.where(
                np.isfinite(seen), forward(transform, (raw - new_center) / new_scale), seen
            )
