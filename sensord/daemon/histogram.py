"""Histograms observed a batch at a time, for the metrics endpoint.

prometheus-client's ``Histogram.observe`` takes one value per call, under a lock; at 20,000
readings a second, one call per reading's lag would cost the scoring loop more than the rest
of the metrics together. Here a whole batch's values are bucketed with one ``searchsorted``
and one ``bincount``; metrics.py turns the counts into prometheus-client's
``HistogramMetricFamily`` at scrape time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt


class Waves(Protocol):
    @property
    def waves(self) -> Sequence[int]: ...


class Histogram:
    """Counts per upper bound (``le``, inclusive, as Prometheus), a sum and a total."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = np.asarray(sorted(bounds), dtype=np.float64)
        self.counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # last: above every bound
        self.sum = 0.0

    def observe(self, values: npt.ArrayLike) -> None:
        """Add every finite value."""
        array = np.asarray(values, dtype=np.float64).ravel()
        finite = np.isfinite(array)
        if not finite.all():
            array = array[finite]
        if array.size == 0:
            return
        where = np.searchsorted(self.bounds, array, side="left")
        self.counts += np.bincount(where, minlength=len(self.counts))
        self.sum += float(array.sum())

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, observations at or below it)`` pairs, ending with ``+Inf``."""
        totals = np.cumsum(self.counts)
        pairs = [(_bound(b), float(t)) for b, t in zip(self.bounds, totals[:-1], strict=True)]
        return [*pairs, ("+Inf", float(totals[-1]))]


def _bound(value: float) -> str:
    return repr(float(value))


def exponential(start: float, factor: float, count: int) -> list[float]:
    return [start * factor**i for i in range(count)]


@dataclass
class LoopTimings:
    """The daemon loop's histograms, fed a batch at a time."""

    wave_size: Histogram = field(default_factory=lambda: Histogram(exponential(1, 2, 13)))
    step_s: Histogram = field(default_factory=lambda: Histogram(exponential(1e-4, 2, 15)))
    lag_s: Histogram = field(default_factory=lambda: Histogram(exponential(1e-3, 2, 15)))
    age_s: Histogram = field(default_factory=lambda: Histogram(exponential(1e-2, 2, 20)))
    steps: list[float] = field(default_factory=list)  # the engines' step times since last batch

    def scored(self, scored: Waves, ages: npt.NDArray[np.float64]) -> None:
        """One route's batch: its wave sizes, its engine steps' times, its readings' ages."""
        self.wave_size.observe(scored.waves)
        self.step_s.observe(self.steps)
        self.steps.clear()
        self.age_s.observe(ages)

    def histograms(self) -> dict[str, Histogram]:
        return {
            "wave_size": self.wave_size,
            "step_s": self.step_s,
            "lag_s": self.lag_s,
            "age_s": self.age_s,
        }
