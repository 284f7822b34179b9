"""Calibrated tails: a channel's statistic in, its probability under the stream's normal out.

Every channel reduces a surprise to non-negative statistics in units of the stream's own
spread (a standardised error, a standardised level, ...). How often a value that large comes
on normal data differs from stream to stream: Gaussian noise, bursty heavy-tailed counts, a
machine whose switching makes a cluster of large errors, a sensor that quantises. So each
statistic's tail is learnt per stream, in three parts:

**A light fit.** A Weibull-type tail anchored at the stream's own 95th percentile ``u``:
``-ln P(S > s) = ln(1 / LEVEL) (s / u) ** k``, with ``k`` the channel's (1.66 for the
magnitude of a statistic that averages many readings, a Gaussian's where alerts are decided,
between one in 10^4 and 10^6; 1.41 for a one-sided one; a little heavier for a single
error). ``u`` is tracked
by stochastic approximation in log space (``log u += step (1[s > u] - LEVEL)``: one odd value
moves it one step however large it was, so an anomaly barely moves the tail it is judged by).
Most sensors' errors and levels are this light, and from a few hundred values this is the
only fit that can call a value one in a million: it is what finds a pump's fault on SKAB.

**What the stream has shown.** A histogram of clusters past fixed log-spaced edges
(histogram.py), over about its last ``MEMORY`` values. Where the stream has put two or more
values past an edge where the light fit expected ten times fewer
(and a Poisson count that high is unlikely by chance), the light fit is wrong for this stream
(bursty counts, a machine whose switching makes a cluster of large errors, heavy tails), and
the tail becomes the histogram's own (peaks over threshold, empirically: read off the
histogram up to the level with ``ANCHOR`` values past it, a power law past that). Between
three and ten times too many, the two are blended. Whatever the fit, a value is never priced
rarer than the histogram shows such values to be. (A fixed shape for every stream measured
13 to 160 times its nominal false-alert rate on bursty and on-off streams;
benchmarks/calibration.py.)

**Nothing anomalous is learnt as normal behind the operator's back.** A value that is itself
anomalous (the caller says which: its probability, with the detector's Bonferroni, reached
the alert threshold) is not learnt: only its day (of the stream's time) is recorded, in a
record that forgets over ``HABIT_DAYS``. Once anomalies have come on enough days for the
record to hold ``HABIT_AFTER`` (four days in a row; every other day, the fifth such day), they
are how this stream behaves and are learnt like any value. So a spike every few hours of one
day is alerted each time, and so is a spike every day for three days; the fourth day's is
learnt. A
stream's first ``MATURE`` values are all learnt: a new stream has no normal yet to call
anything anomalous against, and a machine whose cycle makes large errors must show them
before they can be priced. Operators' verdicts say it sooner.

**Clusters.** A statistic that moves slowly exceeds a high value in runs, and what an operator
counts is alerts, i.e. clusters. Extreme value theory calls the reciprocal of the mean cluster
size the extremal index ``theta`` (Leadbetter 1983); it is estimated by runs at ``u`` (the
share of exceedances that follow a non-exceedance), and the probability becomes the chance
that a cluster this extreme *starts*: ``theta P(S > s)``.

A stream's tails start from a prior threshold (``TailPrior``) and say nothing (probability
1) until they have seen ``min_samples`` values. An averaged statistic's ``u``
(``TailPrior.firm``) never goes below the prior's: every statistic is in units of its stream's
own spread already, and a tail learnt in a quiet week would call the next ordinary week
impossible (measured on NAB's machine temperature).

The histogram's fit (whether the light fit holds, the anchor, its survival, the slope) is
recomputed every few values of a stream (``REFIT_EVERY``, more often while it is young), not
on every reading. libspot, which the ``spot`` baseline uses, keeps one C object per stream
outside the state table: it could not be snapshotted or batched; this histogram is a column
of the state table, snapshotted, journaled and carried over by a swap like every other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sensord.arrays import F64, Bools
from sensord.core.detect.histogram import (
    ANCHOR,
    EDGES,
    LOG_LOWEST,
    MEMORY,
    SLOPE_RANGE,
    contradiction,
    count,
    fit,
    read,
)
from sensord.core.state import ColumnSpec, Slots, StateTable

LEVEL = 0.05  # share of values above u
STEP = 0.02  # u's tracking step, in log units
MATURE = 500  # values a stream learns whole before any of its values counts as anomalous
HABIT_DAYS = 7.0  # the record of days with anomalies forgets over this many days
HABIT_AFTER = 3.0  # ... and once it holds this many, the anomaly is the stream's habit
REFIT_EVERY = 64  # values between refits of a mature stream's fit
YOUNG_REFIT = 4  # a young stream's fit is refitted when its values grow by a quarter
MIN_THETA = 0.02  # clusters of more than 50 exceedances in a row count as 50
RATE_MEMORY = 2000.0  # values the exceedance and cluster rates remember
LOG_LEVEL = math.log(LEVEL)
LOG10 = math.log(10.0)
DAY_S = 86_400.0

# Per statistic, one row of numbers: u, values seen, last above u, exceedance and cluster
# rates (theta); the histogram's total weight; its fit (log s*, log survival at s*, slope,
# how far the light fit is contradicted, values seen at the refit); the last day with an
# anomalous value, and the record of such days; the last value; the share of the learnt start
# still in the histogram.
(
    U,
    N,
    ABOVE,
    EX,
    CL,
    TOTAL,
    LOG_STAR,
    LOG_SURVIVAL,
    SLOPE,
    HEAVY,
    FITTED_AT,
    DAY,
    HABIT,
    LAST,
    LEARNT,
) = range(15)
WIDTH = 15


@dataclass(frozen=True)
class TailPrior:
    """Where a new stream's tail starts, and the light fit's shape."""

    threshold: float  # the statistic's 95th percentile before the stream has shown its own
    shape: float | tuple[float, ...]  # k; a tuple gives one per block of columns
    # An averaged statistic's threshold never goes below the prior's (see the module doc).
    firm: bool = False
    # Nor does any threshold go below this: a statistic in units of the stream's spread
    # whose 95th percentile is under half a unit comes from a degenerate stream (a flat
    # line), where any deviation would otherwise look infinitely rare.
    floor: float = 0.5


@dataclass(frozen=True)
class Learnt:
    """Tails learnt on other values (a bundle's training rows, pooled over its streams) for
    new streams to start from: what training showed is normal until a stream shows its own."""

    counts: F64  # [width, EDGES] clusters past each edge
    values: F64  # [width] the values each statistic's were counted over
    threshold: F64  # [width] each statistic's 95th percentile


LEARNT_WEIGHT = 5_000.0  # values a stream's learnt start counts as, at most
LEARNT_FADE = 3_000.0  # values of its own over which a stream's learnt heaviness fades
# A learnt u is taken from this many values on. Below u, the tracking moves log u by
# STEP * LEVEL a value: from the prior it falls by a third in 400 values, so a u tracked over
# a few hundred training rows is where the tracking was, not yet the 95th percentile. (From
# such a u, SKAB's valve1 missed 2 more of its 16 faults: F1 0.74 against 0.81 from the prior.)
LEARNT_U_VALUES = 2_000.0


class Tail:
    """The calibrated tails of several statistics per stream: ``blocks`` of columns, each
    ``(width, prior)``. The detector keeps all its channels in one ``Tail`` so that a wave
    costs a few numpy calls however many channels there are. With ``learnt``, new streams
    start from it instead of from nothing."""

    def __init__(
        self,
        name: str,
        blocks: Sequence[tuple[int, TailPrior]],
        min_samples: int,
        learnt: Learnt | None = None,
    ) -> None:
        self.name = name
        self.width = sum(width for width, _ in blocks)
        self.min_samples = min_samples
        self._prior = _per_column(blocks, lambda p: p.threshold)
        # A firm column's u never goes below its prior; others are bounded by 0 (no bound).
        self._lowest = _per_column(blocks, lambda p: p.threshold * p.firm)
        self._floor = _per_column(blocks, lambda p: p.floor)
        self.shape = np.asarray(
            [k for width, p in blocks for k in _shapes(width, p)], dtype=np.float64
        )
        self._numbers = f"tail_{name}"
        self._counts = f"tail_{name}_counts"
        if learnt is not None and learnt.counts.shape != (self.width, EDGES):
            raise ValueError(
                f"learnt tails of shape {learnt.counts.shape}, not {self.width}x{EDGES}"
            )
        self.learnt = learnt
        # How far the learnt start contradicts the light fit, on its own.
        self._learnt_heavy = np.zeros(self.width)
        if learnt is not None:
            self._learnt_heavy = contradiction(
                learnt.counts,
                learnt.values,
                np.maximum(learnt.threshold, self._floor),
                self.shape,
                LOG_LEVEL,
            )

    def columns(self) -> dict[str, ColumnSpec]:
        return {
            self._numbers: ColumnSpec(np.float64, (self.width, WIDTH)),
            # float32: a count is exact to 16 million, and the histogram is most of the
            # detector's memory per stream.
            self._counts: ColumnSpec(np.float32, (self.width, EDGES)),
        }

    def start(self, table: StateTable, slots: Slots) -> None:
        fresh = np.zeros((self.width, WIDTH))
        fresh[:, U] = self._prior
        fresh[:, EX] = LEVEL  # theta starts at 1: no credit until earned
        fresh[:, CL] = LEVEL
        fresh[:, LOG_STAR] = LOG_LOWEST
        fresh[:, SLOPE] = SLOPE_RANGE[0]
        fresh[:, DAY] = -np.inf
        fresh[:, LAST] = np.nan
        counts = np.zeros((self.width, EDGES))
        if self.learnt is not None:
            weight = np.minimum(self.learnt.values, LEARNT_WEIGHT)
            share = np.divide(
                weight, self.learnt.values, out=np.zeros(self.width), where=weight > 0
            )
            counts = self.learnt.counts * share[:, None]
            fresh[:, TOTAL] = weight
            fresh[:, LEARNT] = share
            settled = self.learnt.values >= LEARNT_U_VALUES
            fresh[:, U] = np.where(
                settled, np.maximum(self.learnt.threshold, self._floor), self._prior
            )
        table[self._numbers][slots] = fresh
        table[self._counts][slots] = counts
        self._refit(table, slots)

    def learnt_from(self, table: StateTable, slots: Slots) -> Learnt:
        """These streams' tails pooled, for others to start from."""
        numbers = table[self._numbers][slots]
        counts = table[self._counts][slots].astype(np.float64).sum(axis=0)
        return Learnt(
            counts=counts,
            values=numbers[..., TOTAL].sum(axis=0),
            threshold=np.median(numbers[..., U], axis=0),
        )

    def threshold(self, table: StateTable, slots: Slots) -> F64:
        """Each stream's ``u``, as the light fit uses it."""
        return self._threshold(table[self._numbers][slots])

    def _threshold(self, numbers: F64) -> F64:
        u: F64 = np.maximum(numbers[..., U], self._lowest)
        return u

    def log_p(self, table: StateTable, slots: Slots, stat: F64) -> F64:
        """Natural log of the chance that a cluster at least this extreme starts here, per
        statistic (``stat[n, width]``; 0, p = 1, while a tail is not ready or the statistic
        is NaN)."""
        numbers = table[self._numbers][slots]
        counts = table[self._counts][slots]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            u = self._threshold(numbers)
            light = LOG_LEVEL * (np.maximum(stat, 0.0) / u) ** self.shape
            theta = numbers[..., CL] / numbers[..., EX]  # clusters per value past u
            light += np.log(np.clip(theta, MIN_THETA, 1.0))
            heavy = numbers[..., HEAVY]
            log_p = light
            if (heavy > 0.0).any():  # (where the light fit holds, the histogram agrees)
                # The histogram counts clusters already (a run past a level counts once).
                fitted = (numbers[..., LOG_STAR], numbers[..., LOG_SURVIVAL], numbers[..., SLOPE])
                seen, beyond, inside = read(counts, numbers[..., TOTAL], fitted, np.log(stat))
                # The histogram took over because the light fit was too light: past its end
                # the power law is not lighter either (a slope read where a finite sample's
                # counts run out is steep).
                beyond = np.maximum(beyond, light)
                log_p = np.where(heavy > 0.0, (1.0 - heavy) * light + heavy * beyond, light)
                # Never rarer than the histogram shows such values to be, where it can say.
                log_p = np.where(inside & (heavy > 0.0), np.maximum(log_p, seen), log_p)
        log_p = np.minimum(log_p, 0.0)
        ready = numbers[..., N] >= self.min_samples
        out: F64 = np.where(ready & ~np.isnan(stat), log_p, 0.0)
        return out

    def learn(self, table: StateTable, slots: Slots, stat: F64, anomalous: Bools, ts: F64) -> None:
        """Take these statistics (``[n, width]``; NaN: nothing to learn) into the tails.
        ``anomalous`` marks statistics that were themselves anomalous: once a stream is
        mature, they are not learnt, only their day (of ``ts``) is recorded, until anomalies
        have come on enough days to be the stream's habit."""
        if slots.size == 0:
            return
        numbers = table[self._numbers][slots]
        known = ~np.isnan(stat)
        # (An anomalous statistic counts for the habit even where it is not learnt at all,
        # being what holds an alert.)
        anomalous = anomalous & (numbers[..., N] >= MATURE)
        if anomalous.any():
            day = np.floor(ts / DAY_S)[:, None]
            new_day = anomalous & (day > numbers[..., DAY])
            with np.errstate(invalid="ignore"):
                faded = numbers[..., HABIT] * np.exp((numbers[..., DAY] - day) / HABIT_DAYS)
            numbers[..., HABIT] = np.where(new_day, np.nan_to_num(faded) + 1.0, numbers[..., HABIT])
            numbers[..., DAY] = np.where(new_day, day, numbers[..., DAY])
            anomalous &= numbers[..., HABIT] < HABIT_AFTER
        counted = known & ~anomalous
        if counted.any():
            numbers[..., TOTAL] += counted
            count(table[self._counts], slots, stat, last=numbers[..., LAST], counted=counted)
            full = numbers[..., TOTAL] > 2.0 * MEMORY
            if full.any():  # halve: the histogram remembers between MEMORY and twice that
                halved = np.flatnonzero(full)
                table[self._counts][slots[halved // self.width], halved % self.width] *= 0.5
                numbers[..., TOTAL] = np.where(full, 0.5 * numbers[..., TOTAL], numbers[..., TOTAL])
                numbers[..., LEARNT] = np.where(
                    full, 0.5 * numbers[..., LEARNT], numbers[..., LEARNT]
                )
        self._learn_clusters(numbers, stat, known)
        numbers[..., LAST] = np.where(known, stat, numbers[..., LAST])
        table[self._numbers][slots] = numbers
        # Refit every REFIT_EVERY values, and while young each time its values have grown by
        # a quarter.
        due = numbers[..., N] - numbers[..., FITTED_AT]
        # (Not before the tail may speak: until then there is nothing to price.)
        young = (due > 0) & (due * YOUNG_REFIT >= numbers[..., N])
        young &= numbers[..., N] >= self.min_samples
        refit = ((due >= REFIT_EVERY) | young).any(axis=1)
        if refit.any():
            self._refit(table, slots[refit])

    def _learn_clusters(self, numbers: F64, stat: F64, known: Bools) -> None:
        u = numbers[..., U]
        above = known & (stat > u)
        moved = np.maximum(u * np.exp(STEP * (above - LEVEL)), self._floor)
        numbers[..., U] = np.where(known, moved, u)
        numbers[..., N] += known
        starts = above & (numbers[..., ABOVE] == 0.0)
        rate = known / RATE_MEMORY
        numbers[..., EX] += rate * (above - numbers[..., EX])
        numbers[..., CL] += rate * (starts - numbers[..., CL])
        numbers[..., ABOVE] = np.where(known, above, numbers[..., ABOVE])

    def _refit(self, table: StateTable, slots: Slots) -> None:
        """How far the histogram contradicts the light fit; where it stops (the level with
        ``ANCHOR`` values past it, read log-linearly between edges) and the slope of the
        power law past it."""
        numbers = table[self._numbers][slots]
        total = numbers[..., TOTAL]
        found = fit(table[self._counts][slots], total)
        # The stream's own clusters against the light fit (the learnt start's were judged on
        # their own: counting a training row's cluster again when the stream replays the
        # training rows, as NAB's and SKAB's protocols do, would make one event two).
        own, own_total = found.counts, total
        if self.learnt is not None:
            kept = numbers[..., LEARNT]
            own = np.maximum(found.counts - kept[..., None] * self.learnt.counts, 0.0)
            own_total = np.maximum(total - kept * self.learnt.values, 0.0)
        heavy = np.maximum(
            # (The shape is judged against the stream's own 95th percentile, not the floor a
            # firm statistic's is priced at: a narrow body with a heavy tail is heavy.)
            contradiction(own, own_total, numbers[..., U], self.shape, LOG_LEVEL),
            # (what training showed gives way to what the stream shows of itself)
            self._learnt_heavy * np.clip(1.0 - own_total / LEARNT_FADE, 0.0, 1.0),
        )
        numbers[..., LOG_STAR] = np.where(total >= ANCHOR, found.log_star, LOG_LOWEST)
        numbers[..., LOG_SURVIVAL] = np.where(total >= ANCHOR, found.log_survival, 0.0)
        numbers[..., SLOPE] = np.where(np.isfinite(found.slope), found.slope, SLOPE_RANGE[0])
        numbers[..., HEAVY] = np.where(np.isfinite(heavy), heavy, 0.0)
        numbers[..., FITTED_AT] = numbers[..., N]
        table[self._numbers][slots] = numbers


def _per_column(
    blocks: Sequence[tuple[int, TailPrior]], value: Callable[[TailPrior], float]
) -> F64:
    return np.asarray([value(p) for width, p in blocks for _ in range(width)], dtype=np.float64)


def _shapes(width: int, prior: TailPrior) -> list[float]:
    """One floor exponent per column: a tuple shape gives one per equal block of them."""
    shapes = prior.shape if isinstance(prior.shape, tuple) else (prior.shape,)
    return [k for k in shapes for _ in range(width // len(shapes))]
