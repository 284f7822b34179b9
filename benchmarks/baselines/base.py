"""What the baselines share: one number per sample (the RMS prediction error), the range rule
on top of it, and the settings the product's detector has no use for.

They keep the core's detector contract (sensord/core/detect/base.py: ``assess`` changes
nothing, ``learn`` takes the samples in, scores on the common scale), so the core scores them
as it scores its own detector. Each scores the error first (``score``, then ``learn_errors``,
their original contract) and gets the product's extremes channel as a second channel, applied
as it always was for them: its range widens with every sample, alert or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from sensord.arrays import F64
from sensord.core.detect import Assessment, Detector, DetectorContext, DetectorSettings
from sensord.core.detect.base import CHANNEL_CODES
from sensord.core.detect.channel import Observation, Reading, shares_of
from sensord.core.detect.range import ExtremesChannel
from sensord.core.state import ColumnSpec, Slots, StateTable

BaselineKind = Literal["likelihood", "adaptive", "fixed", "telemanom", "spot"]
BASELINE_KINDS: tuple[BaselineKind, ...] = ("adaptive", "fixed", "likelihood", "telemanom", "spot")


@dataclass(frozen=True)
class BaselineSettings:
    """A baseline and its own options; the threshold and the range rule are the core's
    ``DetectorSettings``, as for the product's detector."""

    kind: BaselineKind = "likelihood"
    smoothing: float | None = None  # adaptive, fixed: EWMA weight; None: the bundle's
    window: int = 8640  # likelihood, adaptive: the statistics' horizon, samples
    prior_weight: int = 50  # samples' worth of weight the calibration's prior starts with

    def __post_init__(self) -> None:
        if self.kind not in BASELINE_KINDS:
            raise ValueError(f"baseline {self.kind!r} is not one of {BASELINE_KINDS}")
        if self.smoothing is not None and not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"smoothing {self.smoothing} is not in (0, 1]")
        if self.window < 2 or self.prior_weight < 1:
            raise ValueError("window must be >= 2 and prior_weight >= 1")


def rms(obs: Observation) -> F64:
    """The RMS over features of the errors: the one number a baseline scores."""
    out: F64 = np.sqrt(np.mean(obs.errors**2, axis=1))
    return out


class ErrorDetector(Detector):
    """A baseline: scores the RMS error, with the range rule as a second channel."""

    def __init__(
        self, context: DetectorContext, settings: DetectorSettings, options: BaselineSettings
    ) -> None:
        super().__init__(context, settings)
        self.options = options
        margin = settings.range_margin
        self._range = (
            None
            if margin is None
            else ExtremesChannel(context.features, margin, settings.range_min_samples)
        )

    def columns(self) -> dict[str, ColumnSpec]:
        ranged = {} if self._range is None else self._range.columns()
        return {**self.error_columns(), **ranged}

    def error_columns(self) -> dict[str, ColumnSpec]:
        """The per-stream columns the error's own statistics keep."""
        return {}

    def score(self, table: StateTable, slots: Slots, errors: F64) -> F64:
        """Anomaly scores in [0, 1] for these errors; changes nothing."""
        raise NotImplementedError

    def learn_errors(self, table: StateTable, slots: Slots, errors: F64, scores: F64) -> None:
        """Take these errors into the streams' statistics; ``scores`` are what ``score``
        gave for them."""
        raise NotImplementedError

    def assess(self, table: StateTable, slots: Slots, obs: Observation) -> Assessment:
        scores = self.score(table, slots, rms(obs))
        channel = np.full(len(slots), CHANNEL_CODES["error"], dtype=np.int8)
        shares = shares_of(obs.errors**2)
        readings: tuple[Reading, ...] = ()
        if self._range is not None:
            reading = self._range.read(table, slots, obs, obs.errors, {})
            outside = ~np.isnan(reading.stat)
            beyond = outside.any(axis=1)
            scores = np.where(beyond, 1.0, scores)
            channel[beyond] = CHANNEL_CODES["extremes"]
            shares[beyond] = shares_of(outside[beyond].astype(np.float64))
            readings = (reading,)
        return Assessment(scores, scores, channel, lambda rows: shares[rows], readings)

    def learn(
        self,
        table: StateTable,
        slots: Slots,
        obs: Observation,
        assessment: Assessment,
        trust: F64,
    ) -> None:
        errors = rms(obs)
        inner = self.score(table, slots, errors)  # the error's own score, before the range rule
        self.learn_errors(table, slots, errors, inner)
        if self._range is not None:
            self._range.learn(table, slots, obs, assessment.readings[0], trust)


def ewma(previous: F64, errors: F64, weight: float) -> F64:
    """Exponentially weighted moving average; a NaN ``previous`` starts at the error."""
    blended = weight * errors + (1.0 - weight) * previous
    return np.where(np.isnan(previous), errors, blended)
