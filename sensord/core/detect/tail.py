"""Calibrated tails: a channel's statistic in, its probability under the stream's normal out.

Every channel reduces a surprise to non-negative statistics in units of the stream's own
spread (a standardised error, a standardised level, ...). How often a value that large occurs
on normal data differs from stream to stream (Gaussian noise, spiky traffic, a sensor that
quantises), so each statistic is turned into a tail probability per stream, learnt online:
that is what makes one threshold mean the same false-alarm rate on every stream. Three parts:

**The fit.** A Weibull-type tail anchored at the stream's own 95th percentile ``u`` of the
statistic: ``-ln P(S > s) = ln(1 / LEVEL) (s / u) ** k``. ``u`` is tracked by stochastic
approximation in log space (``log u += step (1[s > u] - LEVEL)``: at rest exactly a
``LEVEL`` share of values lies above it; one odd value moves it one step however large it
was, so an anomaly barely moves the tail it is judged by). The shape ``k`` is the channel's:
2 is a Gaussian's tail, for statistics that average many readings (a window's mean, a level
against its normal); a single error's is taken a little heavier (``k`` 1.7). Learning the
shape too, from a second, farther quantile, was measured: from a few thousand values the
99.5th percentile moves too much, and the shape with it (a Gaussian stream's estimates
ranged from 0.7 to 1.6 within a day, and 6-sigma spikes went unflagged).

**Surprises on record.** No fit of a few thousand values knows the far tail: a stream whose
readings are Gaussian but for a spike every few hours looks Gaussian to its ``u``, and each
spike then looks like a one-in-a-billion event. So each tail also keeps a record of how
often its own surprises happen: per level of ``SURPRISE_LEVELS`` decades, an exponentially
weighted count (over ``SURPRISE_MEMORY`` values) of values the fit put at or past it. Past
``FREE_SURPRISES`` of them (a real anomaly may well happen more than once) the record wins:
a value the fit puts past a level is no rarer than values that reached that level have
turned out to be. A stream whose fit is honest never runs out of its free surprises and
keeps the fit's sensitivity; a spiky one has its spikes priced at their real rate after the
first few.

**Clusters.** A statistic that moves slowly exceeds a high value in runs, and what an
operator counts is alerts, i.e. clusters. Extreme value theory calls the reciprocal of the
mean cluster size the extremal index ``theta`` (Leadbetter 1983); it is estimated by runs at
``u`` (the share of exceedances that follow a non-exceedance), and the probability becomes
the chance that a cluster this extreme *starts*: ``theta P(S > s)``. White statistics keep
theta near 1; slow ones earn credit for their slowness, so the threshold means the same
false-alert rate for fast and slow channels.

A stream's tails start from a prior threshold (``TailPrior``) and say nothing (probability
1) until they have seen ``min_samples`` values, so a new stream cannot alert on noise it has
not learnt yet. An averaged statistic's threshold (``TailPrior.firm``) never goes below the
prior's: every statistic is in units of its stream's own spread already, and a tail learnt
in a quiet week would call the next ordinary week impossible (measured on NAB's machine
temperature).

Everything is a few numpy operations over the slots of a wave, twelve numbers per stream and
statistic in one column of the state table (snapshotted, journaled, carried over by a swap).
libspot, which the ``spot`` detector uses, keeps one C object per stream outside the table: it could
not be snapshotted or batched, which is why this small fit is written here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensord.core.state import ColumnSpec, Slots, StateTable

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

LEVEL = 0.05  # share of values above u
STEP = 0.02  # quantile tracking step, in log units
SURPRISE_LEVELS = (3.0, 4.0, 5.0, 6.0, 8.0, 11.0, 15.0)  # decades
SURPRISE_MEMORY = 10_000.0  # values the record of surprises remembers
FREE_SURPRISES = 3.0  # surprises at a level the fit is trusted with, per memory
MIN_THETA = 0.02  # clusters of more than 50 exceedances in a row count as 50
RATE_MEMORY = 2000.0  # values the exceedance and cluster rates remember
LOG_LEVEL = math.log(LEVEL)
LOG10 = math.log(10.0)


@dataclass(frozen=True)
class TailPrior:
    """Where a new stream's tail starts, and the shape it keeps."""

    threshold: float  # the statistic's 95th percentile before the stream has shown its own
    shape: float | tuple[float, ...]  # k; a tuple gives one per block of columns
    # An averaged statistic's threshold never goes below the prior's (see the module doc).
    firm: bool = False
    # Nor does any threshold go below this: a statistic in units of the stream's spread
    # whose 95th percentile is under half a unit comes from a degenerate stream (a flat
    # line), where any deviation would otherwise look infinitely rare.
    floor: float = 0.5


# One column per tail holds each stream's numbers, so a wave gathers and scatters a tail's
# state once (a tail per channel, six columns each, took a fifth of the daemon's time per
# reading at 1,000 streams in cProfile).
U, N, ABOVE, EX, CL, SEEN = range(6)  # u, values seen, last above u, rates; then the record:
LAST = SEEN + len(SURPRISE_LEVELS)  # per level its count, then the N when it last changed
WIDTH = LAST + len(SURPRISE_LEVELS)
# The record decays by this per value seen; lazily: a count is stored with the N at which it
# was last changed and read as count * DECAY ** (N - last), so a value that reaches no level
# (nearly all of them) costs the record nothing.
LOG_DECAY = math.log1p(-1.0 / SURPRISE_MEMORY)


class Tail:
    """The calibrated tails of several statistics per stream: ``blocks`` of columns, each
    ``(width, prior)``. The detector keeps all its channels in one ``Tail`` so that a wave
    costs a few numpy calls however many channels there are."""

    def __init__(
        self, name: str, blocks: Sequence[tuple[int, TailPrior]], min_samples: int
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
        self._levels = np.asarray(SURPRISE_LEVELS)
        self._column = f"tail_{name}"

    def columns(self) -> dict[str, ColumnSpec]:
        return {self._column: ColumnSpec(np.float64, (self.width, WIDTH))}

    def start(self, table: StateTable, slots: Slots) -> None:
        fresh = np.zeros((self.width, WIDTH))
        fresh[:, U] = self._prior
        fresh[:, EX] = LEVEL  # theta starts at 1: no credit until earned
        fresh[:, CL] = LEVEL
        table[self._column][slots] = fresh

    def threshold(self, table: StateTable, slots: Slots) -> F64:
        """Each stream's ``u``, as the probabilities use it."""
        return self._threshold(table[self._column][slots])

    def _threshold(self, block: F64) -> F64:
        u: F64 = np.maximum(block[..., U], self._lowest)
        return u

    def fitted(self, table: StateTable, slots: Slots, stat: F64) -> F64:
        """Natural log of ``P(S > stat)`` under the fit alone."""
        return self._fitted(table[self._column][slots], stat)

    def _fitted(self, block: F64, stat: F64) -> F64:
        with np.errstate(invalid="ignore", over="ignore"):
            out: F64 = LOG_LEVEL * (np.maximum(stat, 0.0) / self._threshold(block)) ** self.shape
        return out

    def log_p(self, table: StateTable, slots: Slots, stat: F64) -> tuple[F64, F64]:
        """Natural log of the chance that a cluster at least this extreme starts here
        (``stat[n, width]``; 0, p = 1, while a tail is not ready or the statistic is NaN),
        and of the fit's own probability (which ``learn`` takes back)."""
        block = table[self._column][slots]
        fitted = self._fitted(block, stat)
        # The record of the highest level the value reached: how often such values came.
        # (NaN statistics sort past the last level: a valid index, masked at the end.)
        level = np.searchsorted(self._levels, -fitted / LOG10, side="right") - 1
        index = np.maximum(level, 0)
        elapsed = block[..., N] - _pick(block, LAST + index)
        seen = _pick(block, SEEN + index) * np.exp(elapsed * LOG_DECAY)
        record = np.maximum(seen - FREE_SURPRISES, 0.0) / SURPRISE_MEMORY
        with np.errstate(divide="ignore", invalid="ignore"):
            log_p = np.where(level >= 0, np.maximum(fitted, np.log(record)), fitted)
            theta = np.minimum(np.maximum(block[..., CL] / block[..., EX], MIN_THETA), 1.0)
        log_p = np.minimum(log_p + np.log(theta), 0.0)
        ready = block[..., N] >= self.min_samples
        out: F64 = np.where(ready & ~np.isnan(stat), log_p, 0.0)
        return out, fitted

    def learn(self, table: StateTable, slots: Slots, stat: F64, fitted: F64) -> None:
        """Take these statistics (``[n, width]``; NaN: nothing to learn) into the tails;
        ``fitted`` is what ``log_p`` gave as the fit's own log probability for them."""
        if slots.size == 0:
            return
        block = table[self._column][slots]
        known = ~np.isnan(stat)
        u = block[..., U]
        above = known & (stat > u)
        moved = np.maximum(u * np.exp(STEP * (above - LEVEL)), self._floor)
        block[..., U] = np.where(known, moved, u)
        block[..., N] += known
        starts = above & (block[..., ABOVE] == 0.0)
        rate = known / RATE_MEMORY
        block[..., EX] += rate * (above - block[..., EX])
        block[..., CL] += rate * (starts - block[..., CL])
        block[..., ABOVE] = np.where(known, above, block[..., ABOVE])
        level = np.searchsorted(self._levels, -fitted / LOG10, side="right") - 1
        _record(block.reshape(-1, WIDTH), np.flatnonzero(known & (level >= 0)), level.ravel())
        table[self._column][slots] = block


def _per_column(
    blocks: Sequence[tuple[int, TailPrior]], value: Callable[[TailPrior], float]
) -> F64:
    return np.asarray([value(p) for width, p in blocks for _ in range(width)], dtype=np.float64)


def _shapes(width: int, prior: TailPrior) -> list[float]:
    """One ``k`` per column: a tuple shape gives one per equal block of the columns."""
    shapes = prior.shape if isinstance(prior.shape, tuple) else (prior.shape,)
    return [k for k in shapes for _ in range(width // len(shapes))]


def _pick(block: F64, index: npt.NDArray[np.intp]) -> F64:
    """``block[..., index]`` element by element: a flat gather, as ``np.take_along_axis``
    does it at a fifth of its cost on a wave's small arrays."""
    rows = block.reshape(-1, block.shape[-1])
    flat = np.arange(rows.shape[0]) * rows.shape[1] + index.ravel()
    picked: F64 = rows.ravel()[flat].reshape(index.shape)
    return picked


def _record(rows: F64, hits: npt.NDArray[np.intp], level: npt.NDArray[np.intp]) -> None:
    """Count each hit (a row of ``rows``, just learnt) at every level up to the one it
    reached, decaying what the record held since it last changed."""
    if hits.size == 0:
        return
    now = rows[hits, N][:, None]
    counts, last = rows[hits, SEEN:LAST], rows[hits, LAST:WIDTH]
    reached = np.arange(len(SURPRISE_LEVELS)) <= level[hits][:, None]
    rows[hits, SEEN:LAST] = np.where(reached, counts * np.exp((now - last) * LOG_DECAY) + 1, counts)
    rows[hits, LAST:WIDTH] = np.where(reached, now, last)
