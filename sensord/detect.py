"""Detectors: prediction error in, anomaly score in [0, 1] out.

Following river's anomaly module, a detector's ``score`` (how surprising is this error?) is
separate from ``learn`` (update the per-stream statistics) and from ``classify`` (is the score
above the threshold?). The alert lifecycle that turns decisions into raised/cleared events is
alert.py's job. All methods are vectorised over the slots of one wave.

Every detector here scores the same way: the error (RMS over features of scaled value minus
scaled prediction) is smoothed by an EWMA, floored, and its log is compared with a normal fit;
the score is the upper-tail probability ``p`` of that z mapped to ``-log10(p) / 10`` (clipped to
[0, 1]), so a score of 0.5 means "one in 100,000" and the same threshold means the same rarity
for every stream, however noisy. They differ in where the fit comes from:

- ``fixed``: the bundle's calibration on validation errors, frozen;
- ``adaptive`` (default): per-stream exponentially weighted statistics that start from the
  calibration and then follow the stream, with anomalous errors clipped before they enter the
  baseline, so a burst of anomalies does not teach the detector that anomalies are normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
from scipy.special import log_ndtr

from sensord.bundle import Calibration
from sensord.state import ColumnSpec, Slots, StateTable

F64 = npt.NDArray[np.float64]
DetectorKind = Literal["adaptive", "fixed"]
DETECTOR_KINDS: tuple[DetectorKind, ...] = ("adaptive", "fixed")

# Scores map -log10(tail probability) onto [0, 1]: a score of 1 is a one-in-1e10 surprise.
SCORE_DECADES = 10.0
# The normal fit's spread is never taken below this (log units), so a stream whose errors
# were nearly constant does not call every tiny wobble impossible.
MIN_LOG_STD = 0.1


@dataclass(frozen=True)
class DetectorSettings:
    """How a route turns errors into scores and decisions."""

    kind: DetectorKind = "adaptive"
    threshold: float = 0.5
    smoothing: float | None = None
    window: int = 2000
    prior_weight: int = 50

    def __post_init__(self) -> None:
        if self.kind not in DETECTOR_KINDS:
            raise ValueError(f"detector kind {self.kind!r} is not one of {DETECTOR_KINDS}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold {self.threshold} is not in (0, 1)")
        if self.smoothing is not None and not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"smoothing {self.smoothing} is not in (0, 1]")
        if self.window < 2 or self.prior_weight < 1:
            raise ValueError("window must be >= 2 and prior_weight >= 1")


def score_from_z(z: F64) -> F64:
    """Map z-scores to [0, 1] by their upper-tail probability, in decades."""
    log10_tail = np.asarray(log_ndtr(-z), dtype=np.float64) / math.log(10.0)
    return np.clip(-log10_tail / SCORE_DECADES, 0.0, 1.0)


def z_from_score(score: float) -> float:
    """The z whose score is ``score`` (inverse of score_from_z on (0, 1))."""
    low, high = -10.0, 40.0
    for _ in range(100):  # bisection: score_from_z is monotone; 100 halvings is exact enough
        mid = (low + high) / 2
        if score_from_z(np.array([mid]))[0] < score:
            low = mid
        else:
            high = mid
    return (low + high) / 2


class Detector:
    """Base: EWMA-smoothed log error against a normal fit. Subclasses choose the fit."""

    kind: ClassVar[DetectorKind]

    def __init__(self, calibration: Calibration, settings: DetectorSettings) -> None:
        self.calibration = calibration
        self.settings = settings
        self.threshold = settings.threshold
        self.smoothing = settings.smoothing or calibration.smoothing
        self.floor = calibration.error_floor
        self._clip_z = z_from_score(settings.threshold)

    def columns(self) -> dict[str, ColumnSpec]:
        """The per-stream columns this detector keeps in the state table."""
        return {"smoothed_error": ColumnSpec(np.float64, (), np.nan)}

    def start(self, table: StateTable, slots: Slots) -> None:
        """Initialise the statistics of new streams."""
        self.restart(table, slots)

    def restart(self, table: StateTable, slots: Slots) -> None:
        """After a gap reset: smoothing starts over; learnt statistics are kept."""
        table["smoothed_error"][slots] = np.nan

    def smoothed(self, table: StateTable, slots: Slots, errors: F64) -> F64:
        previous = table["smoothed_error"][slots]
        blended = self.smoothing * errors + (1.0 - self.smoothing) * previous
        return np.where(np.isnan(previous), errors, blended)

    def fit(self, table: StateTable, slots: Slots) -> tuple[F64, F64]:
        """Mean and std of log smoothed error for these streams."""
        raise NotImplementedError

    def z(self, table: StateTable, slots: Slots, errors: F64) -> F64:
        log_error = np.log(np.maximum(self.smoothed(table, slots, errors), self.floor))
        mean, std = self.fit(table, slots)
        return (log_error - mean) / std

    def score(self, table: StateTable, slots: Slots, errors: F64) -> F64:
        """Anomaly scores in [0, 1] for these errors; changes nothing."""
        return score_from_z(self.z(table, slots, errors))

    def learn(self, table: StateTable, slots: Slots, errors: F64) -> None:
        """Take these errors into the streams' smoothing (and statistics)."""
        table["smoothed_error"][slots] = self.smoothed(table, slots, errors)

    def classify(self, scores: F64) -> npt.NDArray[np.bool_]:
        """Anomalous or not; NaN scores are not anomalous."""
        return np.asarray(scores >= self.threshold, dtype=bool)


class FixedDetector(Detector):
    """The bundle's calibration, frozen: the same threshold for every stream, for ever."""

    kind = "fixed"

    def fit(self, table: StateTable, slots: Slots) -> tuple[F64, F64]:
        n = len(slots)
        std = max(self.calibration.log_error_std, MIN_LOG_STD)
        return np.full(n, self.calibration.log_error_mean), np.full(n, std)


class AdaptiveDetector(Detector):
    """Per-stream statistics of log error, exponentially weighted over ``window`` samples."""

    kind = "adaptive"

    def columns(self) -> dict[str, ColumnSpec]:
        return {
            **super().columns(),
            "log_error_mean": ColumnSpec(np.float64),
            "log_error_var": ColumnSpec(np.float64),
            "log_error_n": ColumnSpec(np.float64),
        }

    def start(self, table: StateTable, slots: Slots) -> None:
        super().start(table, slots)
        table["log_error_mean"][slots] = self.calibration.log_error_mean
        table["log_error_var"][slots] = self.calibration.log_error_std**2
        table["log_error_n"][slots] = self.settings.prior_weight

    def fit(self, table: StateTable, slots: Slots) -> tuple[F64, F64]:
        std = np.sqrt(table["log_error_var"][slots])
        return table["log_error_mean"][slots], np.maximum(std, MIN_LOG_STD)

    def learn(self, table: StateTable, slots: Slots, errors: F64) -> None:
        smoothed = self.smoothed(table, slots, errors)
        mean, std = self.fit(table, slots)
        # Clip at the alert threshold: an anomaly moves the baseline no more than a sample
        # right at the threshold would, so a long anomaly is not learnt as the new normal
        # quickly, yet a lasting change of regime is still followed.
        log_error = np.minimum(np.log(np.maximum(smoothed, self.floor)), mean + self._clip_z * std)
        n = np.minimum(table["log_error_n"][slots] + 1.0, self.settings.window)
        weight = 1.0 / n
        delta = log_error - mean
        table["log_error_mean"][slots] = mean + weight * delta
        table["log_error_var"][slots] = (1.0 - weight) * (
            table["log_error_var"][slots] + weight * delta**2
        )
        table["log_error_n"][slots] = n
        table["smoothed_error"][slots] = smoothed


def make_detector(calibration: Calibration, settings: DetectorSettings) -> Detector:
    """The detector of ``settings.kind``."""
    detectors: dict[DetectorKind, type[Detector]] = {
        "adaptive": AdaptiveDetector,
        "fixed": FixedDetector,
    }
    return detectors[settings.kind](calibration, settings)
