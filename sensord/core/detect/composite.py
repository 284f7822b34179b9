"""``channels``: the default detector, where every kind of surprise has a channel.

Per sample, the prediction error of each feature is standardised by the stream's own error
scale (scale.py: per time-of-day slot, pooled with the whole day's, errors winsorised before
they enter); then each channel reduces the sample to statistics, one per feature (and one
joint statistic for several features where it says so):

- **point** (channel.py): the standardised error: one-sample spikes and dips, in range or not;
- **sustained** (channel.py): over a short window, the mean of the signed errors (a shift or
  drift the model does not follow at once) and of their magnitudes against their usual level
  (a burst of larger errors);
- **contextual** (contextual.py): the level against the same time of day on earlier days (a
  daily pattern that changes shape; a relation between features that breaks, by the joint
  Mahalanobis statistic);
- **shift** (contextual.py): the contextual residual accumulated over a longer window (a
  small offset that persists: a fault that lasts);
- **extremes** (range.py): a value beyond the range the stream has shown (the range rule).

Each calibrated statistic becomes the probability, under that stream's own tail (tail.py),
that a cluster of values this extreme starts: so a threshold means the same false-alert rate
on every stream and channel. A channel's probability is its most surprised statistic's
times their number, the sample's the smallest channel's times the number of calibrated
channels (Bonferroni: the chance that *any* statistic is this surprised), and the score is
the common scale's ``d / (d + 5)`` of its decades ``d``. The default threshold, 0.5, is 5
decades: on a stream behaving as it learnt, one sample in 100,000 or fewer is anomalous.

The channel with the smallest probability is the one that fired; every feature surprising in
some channel is named with its share, first the one that decided. ``surprise`` is the same
score from the channels that judge errors (point, sustained, extremes), for onsets inside an
alert that a state channel holds up (alert.py).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from sensord.core.detect.base import (
    CALIBRATED_CHANNELS,
    CHANNEL_CODES,
    F64,
    Assessment,
    Detector,
    DetectorContext,
    DetectorSettings,
    score_from_decades,
)
from sensord.core.detect.channel import (
    Channel,
    Observation,
    PointChannel,
    Reading,
    SustainedChannel,
    shares_of,
)
from sensord.core.detect.contextual import ContextualChannel, ShiftChannel
from sensord.core.detect.range import ExtremesChannel
from sensord.core.detect.scale import ErrorScale, TimeSlots
from sensord.core.detect.tail import Tail, TailPrior
from sensord.core.state import ColumnSpec, Slots, StateTable

SUSTAINED_CLIP = 6.0  # standardised errors enter the sustained mean clipped here
CONTEXT_MIN_DAYS = 2.0
# Where a new stream's tails start (tail.py), and their shapes: a single error's tail a
# little heavier than a Gaussian's (k 1.7); a window's drift and the levels Gaussian (k 2),
# a window's error magnitudes heavier (k 1.5: a mean of magnitudes is skewed).
TAIL_PRIORS = {
    "point": TailPrior(threshold=2.0, shape=1.7),
    "sustained": TailPrior(threshold=2.0, shape=(2.0, 1.5), firm=True),
    "contextual": TailPrior(threshold=2.0, shape=2.0, firm=True),
    "shift": TailPrior(threshold=2.0, shape=2.0, firm=True),
}
LOG10 = math.log(10.0)
SURPRISE_CHANNELS = ("point", "sustained", "extremes")


class ChannelDetector(Detector):
    kind = "channels"

    def __init__(self, context: DetectorContext, settings: DetectorSettings) -> None:
        super().__init__(context, settings)
        f = context.features
        enabled = settings.channels
        slots = TimeSlots(
            daily=context.daily, interval_s=context.interval_s, span=settings.context_span
        )
        every: list[Channel] = [
            PointChannel(f),
            SustainedChannel(f, settings.sustained_span, SUSTAINED_CLIP, settings.error_horizon),
            ContextualChannel(
                f,
                slots,
                span=settings.context_span,
                days=settings.context_days,
                min_days=CONTEXT_MIN_DAYS,
            ),
            ShiftChannel(f, settings.shift_span),
        ]
        if settings.range_margin is not None:
            every.append(ExtremesChannel(f, settings.range_margin, settings.range_min_samples))
        wanted = set(enabled) | ({"contextual"} if "shift" in enabled else set())
        self.channels = [c for c in every if c.name in wanted]
        self.codes = np.asarray([CHANNEL_CODES[c.name] for c in self.channels], dtype=np.int8)
        # One tail for every calibrated channel's statistics, each channel a block of it.
        calibrated = [c for c in self.channels if c.name in CALIBRATED_CHANNELS]
        self.tail = Tail(
            "channels", [(c.width, TAIL_PRIORS[c.name]) for c in calibrated], settings.min_samples
        )
        self._blocks: dict[str, slice] = {}
        for c in calibrated:
            at = sum(s.stop - s.start for s in self._blocks.values())
            self._blocks[c.name] = slice(at, at + c.width)
        self._bonferroni = math.log(max(1, len(calibrated)))
        # A channel's probability is its most surprised column's times its columns.
        self._widths = np.log([c.width for c in self.channels])
        self._surprise = [i for i, c in enumerate(self.channels) if c.name in SURPRISE_CHANNELS]
        self._surprise_bonferroni = math.log(max(1, len(self._surprise)))
        rms = math.exp(self.calibration.log_error_mean + self.calibration.log_error_std**2 / 2)
        self.scale = ErrorScale(
            f,
            slots,
            horizon=settings.error_horizon,
            days=settings.context_days,
            prior=rms,
            floor=self.calibration.error_floor,
        )

    def columns(self) -> dict[str, ColumnSpec]:
        columns = self.scale.columns()
        parts: list[Channel | Tail] = [*self.channels, self.tail]
        for part in parts:
            mine = part.columns()
            clash = sorted(set(mine) & set(columns))
            if clash:
                raise ValueError(f"state columns {clash} are declared twice")
            columns.update(mine)
        return columns

    def start(self, table: StateTable, slots: Slots) -> None:
        self.scale.start(table, slots)
        for channel in self.channels:
            channel.start(table, slots)
        self.tail.start(table, slots)

    def restart(self, table: StateTable, slots: Slots) -> None:
        for channel in self.channels:
            channel.restart(table, slots)

    def forget_normal(self, table: StateTable, slots: Slots) -> None:
        for channel in self.channels:
            channel.forget_normal(table, slots)

    def assess(self, table: StateTable, slots: Slots, obs: Observation) -> Assessment:
        z = self.scale.standardised(table, slots, obs.errors, obs.ts)
        earlier: dict[str, Reading] = {}
        for channel in self.channels:
            earlier[channel.name] = channel.read(table, slots, obs, z, earlier)
        readings = tuple(earlier[c.name] for c in self.channels)
        # Per channel: its most surprised column, Bonferroni over its columns.
        columns = self._log_p(table, slots, readings)
        least = np.stack([lp.min(axis=1) for lp in columns], axis=1)  # [n, channels]
        log_p = np.minimum(least + self._widths, 0.0)
        strongest = np.argmin(log_p, axis=1)
        rows = np.arange(len(slots))
        score = _score(log_p[rows, strongest] + self._bonferroni)
        if self._surprise:
            surprise = _score(log_p[:, self._surprise].min(axis=1) + self._surprise_bonferroni)
        else:
            surprise = np.zeros(len(slots))

        def shares(asked: npt.NDArray[np.intp]) -> F64:
            deciding = least[asked, strongest[asked]]
            return self._shares([lp[asked] for lp in columns], readings, asked, deciding)

        return Assessment(score, surprise, self.codes[strongest], shares, readings)

    def _shares(
        self,
        columns: list[F64],
        readings: tuple[Reading, ...],
        asked: npt.NDArray[np.intp],
        deciding: F64,
    ) -> F64:
        """Each feature's share in the surprise (for the ``asked`` rows, whose ``columns``
        these are): its decades past one in whichever channel found it most surprising (a
        channel's joint column spread over the features by their parts in it), so an alert
        names every feature that was out of the ordinary, and first the one that decided
        it."""
        f = self.context.features
        weights = np.zeros((len(asked), f))
        for lp, reading in zip(columns, readings, strict=True):
            decades = -lp / LOG10
            mine = np.where(np.isinf(decades), 1e6, np.maximum(decades - 1.0, 0.0))
            per_feature = mine[:, :f]
            if lp.shape[1] == 2 * f:  # two statistics per feature
                per_feature = np.maximum(per_feature, mine[:, f:])
            if reading.parts is not None:
                parts = shares_of(np.maximum(reading.parts[asked], 0.0))
                per_feature = np.maximum(per_feature, parts * mine[:, f : f + 1])
            weights = np.maximum(weights, per_feature)
        weights[deciding == 0.0] = 0.0  # nothing surprising at all: no drivers
        return shares_of(weights)

    def _log_p(self, table: StateTable, slots: Slots, readings: tuple[Reading, ...]) -> list[F64]:
        """Each channel's columns' log probabilities; the tail's fit is kept for ``learn``."""
        by_name = {c.name: r for c, r in zip(self.channels, readings, strict=True)}
        log_p = fitted = np.zeros((len(slots), 0))
        if self._blocks:
            stat = self._joined({name: by_name[name].stat for name in self._blocks})
            log_p, fitted = self.tail.log_p(table, slots, stat)
        out: list[F64] = []
        for channel, reading in zip(self.channels, readings, strict=True):
            block = self._blocks.get(channel.name)
            if block is not None:
                reading.keep["fitted"] = fitted[:, block]
                out.append(log_p[:, block])
            else:  # an uncalibrated channel (extremes) is certain where it speaks
                out.append(np.where(np.isnan(reading.stat), 0.0, -np.inf))
        return out

    def _joined(self, parts: dict[str, F64]) -> F64:
        """The calibrated channels' columns side by side, in the tail's order."""
        joined: F64 = np.concatenate([parts[name] for name in self._blocks], axis=1)
        return joined

    def learn(
        self,
        table: StateTable,
        slots: Slots,
        obs: Observation,
        assessment: Assessment,
        trust: F64,
    ) -> None:
        everything = np.ones(len(slots))
        calm = trust >= 1.0
        stats: dict[str, F64] = {}
        for channel, reading in zip(self.channels, assessment.readings, strict=True):
            surprise = channel.learns_while_alerting
            channel.learn(table, slots, obs, reading, everything if surprise else trust)
            if channel.name in self._blocks:
                # A state channel's tail learns calm samples only: it describes the normal
                # (NaN: nothing learnt for that statistic).
                keep = surprise or calm.all()
                stats[channel.name] = reading.stat if keep else _only(reading.stat, calm)
        if self._blocks:
            by_name = {c.name: r for c, r in zip(self.channels, assessment.readings, strict=True)}
            fitted = {name: by_name[name].keep["fitted"] for name in self._blocks}
            self.tail.learn(table, slots, self._joined(stats), self._joined(fitted))
        self.scale.learn(table, slots, obs.errors, obs.ts)


def _only(stat: F64, rows: npt.NDArray[np.bool_]) -> F64:
    out: F64 = np.where(rows[:, None], stat, np.nan)
    return out


def _score(log_p: F64) -> F64:
    decades = -np.minimum(log_p, 0.0) / LOG10
    return score_from_decades(decades)
