"""The model's inputs besides the readings: the value transform a bundle applies after
scaling, and the features it makes from each sample's timestamp.

**The transform** (``transform`` in the manifest): ``asinh`` is linear near zero and
logarithmic far from it: ordinary values keep their shape, while a spike of a thousand
standard deviations becomes about 7.6, so it neither saturates the LSTM's state nor
dominates the error statistics that follow it. It is monotone, so orderings and ranges (the
range rule) mean the same before and after.

**Time features** (``time_features`` in the manifest), for streams with a daily cycle:
training adds them when the data shows a daily cycle could be learnt (at least two days,
sampled at least hourly), and the core computes them from each sample's timestamp the same
way. Time of day is a point on a circle (sine and cosine), so 23:59 and 00:00 are
neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from sensord.arrays import F64

Transform = Literal["none", "asinh"]
DAY_S = 86_400.0
TIME_OF_DAY = ("tod_sin", "tod_cos")
MIN_DAYS = 2.0
MAX_INTERVAL_S = 3600.0


def forward(transform: Transform, scaled: F64) -> F64:
    return np.arcsinh(scaled) if transform == "asinh" else scaled


def inverse(transform: Transform, value: F64) -> F64:
    return np.sinh(value) if transform == "asinh" else value


def time_features(names: Sequence[str], timestamps: F64) -> F64:
    """``[n, len(names)]`` features of epoch-second timestamps."""
    phase = 2.0 * np.pi * np.mod(timestamps, DAY_S) / DAY_S
    columns = {"tod_sin": np.sin(phase), "tod_cos": np.cos(phase)}
    return (
        np.stack([columns[name] for name in names], axis=1)
        if names
        else np.zeros((len(timestamps), 0))
    )


def shows_daily_cycle(timestamps: F64) -> bool:
    """True if the data could teach a daily cycle: >= 2 days, sampled at least hourly."""
    if len(timestamps) < 3:
        return False
    span = float(timestamps.max() - timestamps.min())
    interval = float(np.median(np.diff(np.sort(timestamps))))
    return span >= MIN_DAYS * DAY_S and 0 < interval <= MAX_INTERVAL_S
