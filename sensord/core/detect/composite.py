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
the common scale's ``d / (d + 5)`` of its decades ``d``. The default threshold, 0.45, is 4.1
decades: on a stream behaving as it learnt, one sample in 12,000 or fewer is anomalous.

The channel with the smallest probability is the one that fired; every feature surprising in
some channel is named with its share, first the one that decided. ``surprise`` is the same
score from the channels that judge errors (point, sustained, extremes), for onsets inside an
alert that a state channel holds up (alert.py).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64, Bools
from sensord.core.bundle import NormalTails
from sensord.core.detect.base import (
    CALIBRATED_CHANNELS,
    CHANNEL_CODES,
    Assessment,
    Detector,
    DetectorContext,
    DetectorSettings,
    decades_of_score,
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
from sensord.core.detect.histogram import EDGES
from sensord.core.detect.range import ExtremesChannel
from sensord.core.detect.scale import ErrorScale, TimeSlots
from sensord.core.detect.tail import Learnt, Tail, TailPrior
from sensord.core.state import ColumnSpec, Slots, StateTable

SUSTAINED_CLIP = 6.0  # standardised errors enter the sustained mean clipped here
CONTEXT_MIN_DAYS = 2.0
# Where a new stream's tails start (tail.py), and their light fits' shapes. Anchored at the
# 95th percentile, a Gaussian's tail is not a Weibull of k 2 where alerts are decided (one in
# 10^4 to 10^6): there its -ln P grows as if k were 1.66 for a magnitude |X| and 1.41 for a
# one-sided X (k 2 is its limit far out). k 2 priced a clean stream's drift 5 to 8 times too
# rare (tests/test_robustness.py's clean streams: 23 raises in 200,000 readings, 10 with these).
# A single error's tail a little heavier than a Gaussian's magnitude (k 1.7 is lighter only
# past one in 10^9); a window's drift and the levels Gaussian magnitudes; a window's error
# magnitudes above their usual one-sided (a mean of magnitudes is skewed besides).
GAUSSIAN_MAGNITUDE = 1.66
GAUSSIAN_ONE_SIDED = 1.41
TAIL_PRIORS = {
    "point": TailPrior(threshold=2.0, shape=1.7),
    "sustained": TailPrior(
        threshold=2.0, shape=(GAUSSIAN_MAGNITUDE, GAUSSIAN_ONE_SIDED), firm=True
    ),
    "contextual": TailPrior(threshold=2.0, shape=GAUSSIAN_MAGNITUDE, firm=True),
    "shift": TailPrior(threshold=2.0, shape=GAUSSIAN_MAGNITUDE, firm=True),
}
LOG10 = math.log(10.0)
SURPRISE_CHANNELS = ("point", "sustained", "extremes")


class ChannelDetector(Detector):
    kind = "channels"

    def __init__(self, context: DetectorContext, settings: DetectorSettings) -> None:
        super().__init__(context, settings)
        f = context.features
        slots = TimeSlots(
            daily=context.daily, interval_s=context.interval_s, span=settings.context_span
        )
        self.channels = _channels(f, slots, settings)
        self.codes = np.asarray([CHANNEL_CODES[c.name] for c in self.channels], dtype=np.int8)
        # One tail for every calibrated channel's statistics, each channel a block of it.
        calibrated = [c for c in self.channels if c.name in CALIBRATED_CHANNELS]
        # What the statistics are: a bundle's learnt tails are for exactly these.
        self.layout = (
            f"tails/{EDGES}/"
            + ",".join(f"{c.name}:{c.width}" for c in calibrated)
            + f"/sustained {settings.sustained_span}/context {settings.context_span} "
            f"{settings.context_days}/shift {settings.shift_span}/errors {settings.error_horizon}"
        )
        self.learnt = _learnt(context.normal, self.layout)
        # Training replays its rows with this on: every value is normal there.
        self.learning_normal = False
        self.tail = Tail(
            "channels",
            [(c.width, TAIL_PRIORS[c.name]) for c in calibrated],
            settings.min_samples,
            self.learnt,
        )
        self._blocks = _blocks(calibrated)
        # Bonferroni over the channels that can decide: the extremes channel is never rarer
        # than 1 / (n + 1) (range.py), far from an alert until a stream has shown a million.
        self._bonferroni = math.log(max(1, len(calibrated)))
        # The log probability at which a sample scores the threshold.
        self._log_alert = -decades_of_score(settings.threshold) * LOG10
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

        features = _score(self._by_feature(columns, readings))
        return Assessment(score, surprise, self.codes[strongest], shares, readings, features)

    def _by_feature(self, columns: list[F64], readings: tuple[Reading, ...]) -> F64:
        """[n, F + 1] log probabilities: each feature's most surprised statistic in any
        channel, then the relation's (the joint statistic), each with its channel's
        Bonferroni and the detector's, so that the sample's is their smallest."""
        f = self.context.features
        out = np.zeros((len(columns[0]) if columns else 0, f + 1))
        for lp, reading, channel in zip(columns, readings, self.channels, strict=True):
            width = math.log(channel.width) + self._bonferroni
            per_feature = lp[:, :f]
            if reading.parts is not None:  # a joint column after the features'
                out[:, f] = np.minimum(out[:, f], lp[:, f] + width)
            elif lp.shape[1] == 2 * f:  # two statistics per feature
                per_feature = np.minimum(per_feature, lp[:, f:])
            out[:, :f] = np.minimum(out[:, :f], per_feature + width)
        return out

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
        """Each channel's columns' log probabilities (kept for ``learn``, which learns an
        anomalous column differently)."""
        by_name = {c.name: r for c, r in zip(self.channels, readings, strict=True)}
        log_p = np.zeros((len(slots), 0))
        if self._blocks:
            stat = self._joined({name: by_name[name].stat for name in self._blocks})
            log_p = self.tail.log_p(table, slots, stat)
        out: list[F64] = []
        for channel, reading in zip(self.channels, readings, strict=True):
            block = self._blocks.get(channel.name)
            if block is not None:
                reading.keep["log_p"] = log_p[:, block]
                out.append(log_p[:, block])
            else:  # extremes: priced by record theory (range.py)
                out.append(np.where(np.isnan(reading.stat), 0.0, -reading.stat))
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
        everything = np.ones_like(trust)
        if self.learning_normal:
            trust = everything
        learning = trust > 0.0
        stats: dict[str, F64] = {}
        anomalous: dict[str, Bools] = {}
        for channel, reading in zip(self.channels, assessment.readings, strict=True):
            surprise = channel.learns_while_alerting
            channel.learn(table, slots, obs, reading, everything if surprise else trust)
            if channel.name in self._blocks:
                # A state channel's tail does not learn what drives an alert that is up
                # (NaN: nothing learnt for that statistic): a fault's level is not its normal.
                keep = surprise or learning.all()
                stats[channel.name] = (
                    reading.stat if keep else _only(reading.stat, _by_column(learning, channel))
                )
                # A statistic anomalous by itself (its channel's Bonferroni and the
                # detector's included) is not learnt as normal with the others (tail.py).
                width = math.log(channel.width) + self._bonferroni
                anomalous[channel.name] = (reading.keep["log_p"] + width <= self._log_alert) & (
                    not self.learning_normal
                )
        if self._blocks:
            flagged = np.concatenate([anomalous[name] for name in self._blocks], axis=1)
            self.tail.learn(table, slots, self._joined(stats), flagged, obs.ts)
        self.scale.learn(table, slots, obs.errors, obs.ts)

    def normal_tails(self, table: StateTable, slots: Slots) -> NormalTails:
        """What these streams' tails learnt, pooled, for a bundle's manifest."""
        learnt = self.tail.learnt_from(table, slots)
        return NormalTails(
            layout=self.layout,
            values=[float(v) for v in learnt.values],
            threshold=[float(u) for u in learnt.threshold],
            counts=[[round(float(c), 3) for c in row] for row in learnt.counts],
        )


def _channels(f: int, slots: TimeSlots, settings: DetectorSettings) -> list[Channel]:
    """The channels these settings enable, in the order they are read (the shift channel
    reads the contextual one's residual, so it brings that one along)."""
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
    enabled = settings.channels
    wanted = set(enabled) | ({"contextual"} if "shift" in enabled else set())
    return [c for c in every if c.name in wanted]


def _blocks(calibrated: list[Channel]) -> dict[str, slice]:
    """Each calibrated channel's columns in the one tail, side by side in their order."""
    blocks: dict[str, slice] = {}
    for c in calibrated:
        at = sum(s.stop - s.start for s in blocks.values())
        blocks[c.name] = slice(at, at + c.width)
    return blocks


def _learnt(normal: NormalTails | None, layout: str) -> Learnt | None:
    """A bundle's learnt tails, if they are for this detector's statistics."""
    if normal is None or normal.layout != layout:
        return None
    return Learnt(
        counts=np.asarray(normal.counts, dtype=np.float64),
        values=np.asarray(normal.values, dtype=np.float64),
        threshold=np.asarray(normal.threshold, dtype=np.float64),
    )


def _only(stat: F64, keep: Bools) -> F64:
    out: F64 = np.where(keep, stat, np.nan)
    return out


def _by_column(per_feature: Bools, channel: Channel) -> Bools:
    """A ``[n, F + 1]`` mask (features, then the relation) for a state channel's columns: one
    per feature, and a joint one after them for several features."""
    out: Bools = per_feature[:, : channel.width]
    return out


def _score(log_p: F64) -> F64:
    decades = -np.minimum(log_p, 0.0) / LOG10
    return score_from_decades(decades)
