"""Channels: each sees one kind of surprise and reduces it to one statistic per sample.

A channel reads what the core knows of a wave (scaled values, the errors against the
predictions made a step before, timestamps, and the errors standardised by the stream's own
error scale) and returns a non-negative statistic per sample, larger for more surprising, with
each feature's share in it. The channel detector (composite.py) turns every statistic into a
tail probability per stream (tail.py) and combines them. Channels keep their per-stream state
in the state table like everything else.

Two kinds, told apart by ``learns_while_alerting``:

- **surprise** channels (point, sustained, and extremes, which marks a value's first step
  beyond the range) judge the model's errors, and keep learning while an alert is up, as
  HTM's likelihood does: after a real change the errors settle again, and a new onset inside
  a long alert stays visible;
- **state** channels (contextual, shift) judge the stream's level against what it learnt
  as normal, and stop learning while an alert is up (and learn only slowly from a reading
  that looks suspicious): a fault that persists stays abnormal against the normal it
  interrupted, instead of being learnt as the new normal within minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sensord.arrays import F64
from sensord.core.state import ColumnSpec, Slots, StateTable


@dataclass(frozen=True)
class Observation:
    """What a detector sees of one wave's scored samples."""

    values: F64  # [n, F] scaled values (after the bundle's transform)
    errors: F64  # [n, F] value minus the prediction made a step before, scaled
    ts: F64  # [n] epoch seconds

    @property
    def rms(self) -> F64:
        """The RMS over features of the errors: what the single-error detectors score."""
        out: F64 = np.sqrt(np.mean(self.errors**2, axis=1))
        return out


@dataclass
class Reading:
    """A channel's view of a wave: its statistics, and what it would keep if it learns
    (written by ``learn``, never by ``read``).

    ``stat[n, width]``: one column per feature, each calibrated on its own tail (a quantised
    flow meter and a smooth thermometer are surprised by different amounts), and for some
    channels one joint column after them (``parts[n, F]``: each feature's part in it)."""

    stat: F64  # NaN where the channel has nothing to say yet
    parts: F64 | None = None
    keep: dict[str, F64] = field(default_factory=dict)


Earlier = dict[str, Reading]  # the readings of the channels read before, by name


class Channel:
    """The contract of a channel; see the module docstring."""

    name: str = ""
    learns_while_alerting: bool = True
    width: int = 1  # statistics per sample: the features, and a joint one where there is

    def columns(self) -> dict[str, ColumnSpec]:
        return {}

    def start(self, table: StateTable, slots: Slots) -> None:
        """Initialise new streams."""
        self.restart(table, slots)

    def restart(self, table: StateTable, slots: Slots) -> None:
        """After a gap: forget the short-term context, keep what was learnt."""

    def read(
        self, table: StateTable, slots: Slots, obs: Observation, z: F64, earlier: Earlier
    ) -> Reading:
        """The statistic of each sample (``z``: errors over the stream's error scale;
        ``earlier``: what the channels before this one read); changes nothing."""
        raise NotImplementedError

    def learn(
        self, table: StateTable, slots: Slots, obs: Observation, reading: Reading, trust: F64
    ) -> None:
        """Keep this wave: tracking state always; the model of normal weighted by ``trust``
        (1: the sample looks normal; less: it looks suspicious, and a state channel lets it
        move its normal only that much; 0: an alert is up, and a state channel learns
        nothing of it)."""
        raise NotImplementedError

    def forget_normal(self, table: StateTable, slots: Slots) -> None:
        """The stream's normal changed for good (an operator said so, or it was adopted):
        drop what was learnt as normal so that it is learnt again from here."""


def shares_of(weights: F64) -> F64:
    """Rows of non-negative weights scaled to sum to 1 (all-zero rows stay zero)."""
    total = weights.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: F64 = np.where(total > 0, weights / total, 0.0)
    return out


class PointChannel(Channel):
    """This reading's error against the stream's error distribution: one-sample spikes and
    dips, inside the range as well as outside it. Each feature's statistic is its error in
    units of the stream's error scale."""

    name = "point"

    def __init__(self, features: int) -> None:
        self.width = features

    def read(
        self, table: StateTable, slots: Slots, obs: Observation, z: F64, earlier: Earlier
    ) -> Reading:
        return Reading(stat=np.abs(z))

    def learn(
        self, table: StateTable, slots: Slots, obs: Observation, reading: Reading, trust: F64
    ) -> None:
        return


class SustainedChannel(Channel):
    """The error over a short window: shifts, drifts and bursts that no single reading shows.

    Two statistics per feature, over a window of ``span`` samples (exponentially weighted),
    each error standardised and clipped at ``clip`` scales so that one spike (the point
    channel's business) cannot pass for a lasting change:

    - **drift**: the mean of the signed errors, times ``sqrt((2 - a) / a)`` so that it is
      about a standard normal on white errors. A level shift the model does not follow at
      once, or a drift it lags behind, leaves errors of one sign: their mean grows as the
      square root of their number, where a single error would not stand out;
    - **burst**: the mean of the error magnitudes against its own long-run mean and spread
      (over ``horizon`` samples), as the mean of recent errors is in HTM's anomaly
      likelihood: errors more frequent or larger than usual, whatever their signs. Only
      larger errors count; an unusually calm stretch is no anomaly.
    """

    name = "sustained"

    def __init__(self, features: int, span: float, clip: float, horizon: int) -> None:
        self.features = features
        self.width = 2 * features
        self.alpha = 2.0 / (span + 1.0)
        self.norm = float(np.sqrt((2.0 - self.alpha) / self.alpha))
        self.clip = clip
        self.horizon = horizon

    def columns(self) -> dict[str, ColumnSpec]:
        f = (self.features,)
        return {
            "sustained_drift": ColumnSpec(np.float64, f, 0.0),
            "sustained_mean": ColumnSpec(np.float64, f, np.nan),
            "sustained_usual": ColumnSpec(np.float64, f, np.nan),
            "sustained_var": ColumnSpec(np.float64, f, 0.0),
            "sustained_n": ColumnSpec(np.float64, (), 0.0),
        }

    def restart(self, table: StateTable, slots: Slots) -> None:
        table["sustained_drift"][slots] = 0.0
        table["sustained_mean"][slots] = np.nan

    def read(
        self, table: StateTable, slots: Slots, obs: Observation, z: F64, earlier: Earlier
    ) -> Reading:
        clipped = np.clip(z, -self.clip, self.clip)
        drift = table["sustained_drift"][slots]
        drift = drift + self.alpha * (clipped - drift)
        previous = table["sustained_mean"][slots]
        magnitude = np.abs(clipped)
        mean = np.where(
            np.isnan(previous), magnitude, previous + self.alpha * (magnitude - previous)
        )
        usual, var = table["sustained_usual"][slots], table["sustained_var"][slots]
        spread = np.sqrt(np.maximum(var, SPREAD_FLOOR * SPREAD_FLOOR))
        burst = np.maximum(mean - usual, 0.0) / spread
        stat = np.concatenate([np.abs(drift) * self.norm, burst], axis=1)
        return Reading(stat=stat, keep={"drift": drift, "mean": mean})

    def learn(
        self, table: StateTable, slots: Slots, obs: Observation, reading: Reading, trust: F64
    ) -> None:
        table["sustained_drift"][slots] = reading.keep["drift"]
        mean = reading.keep["mean"]
        table["sustained_mean"][slots] = mean
        usual, var = table["sustained_usual"][slots], table["sustained_var"][slots]
        n = table["sustained_n"][slots] + 1.0
        weight = (1.0 / np.minimum(n, self.horizon))[:, None]
        first = np.isnan(usual)
        # Winsorised, as the error scale is: a burst moves the usual level a little only.
        limit = WINSOR * np.sqrt(np.maximum(var, SPREAD_FLOOR * SPREAD_FLOOR))
        delta = np.where(first, 0.0, np.clip(mean - usual, -limit, limit))
        table["sustained_usual"][slots] = np.where(first, mean, usual + weight * delta)
        table["sustained_var"][slots] = (1.0 - weight) * (var + weight * delta * delta)
        table["sustained_n"][slots] = n


SPREAD_FLOOR = 0.02  # the window mean's spread, in error scales, is never taken below this
WINSOR = 4.0  # spreads at which a window mean enters its usual level clipped
