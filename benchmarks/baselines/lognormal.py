"""``adaptive`` and ``fixed``: smoothed log error against a normal fit.

The error is smoothed (EWMA), floored, and its log compared with a normal fit; the score is
the fit's upper-tail probability. The two differ in where the fit comes from:

- ``fixed``: the bundle's calibration on validation errors, frozen;
- ``adaptive``: per-stream exponentially weighted statistics that start from the calibration
  and then follow the stream, with anomalous errors clipped before they enter the baseline,
  so a burst of anomalies is not learnt as normal.
"""

from __future__ import annotations

import numpy as np

from benchmarks.baselines.base import BaselineSettings, ErrorDetector, ewma
from sensord.arrays import F64
from sensord.core.detect import (
    MIN_LOG_STD,
    DetectorContext,
    DetectorSettings,
    score_from_z,
    z_from_score,
)
from sensord.core.state import ColumnSpec, Slots, StateTable


class LogNormalDetector(ErrorDetector):
    """Base of ``fixed`` and ``adaptive``; subclasses choose the fit."""

    def __init__(
        self, context: DetectorContext, settings: DetectorSettings, options: BaselineSettings
    ) -> None:
        super().__init__(context, settings, options)
        calibration = context.calibration
        self.smoothing = options.smoothing or calibration.smoothing
        self.floor = calibration.error_floor
        self._clip_z = z_from_score(settings.threshold)

    def error_columns(self) -> dict[str, ColumnSpec]:
        return {"smoothed_error": ColumnSpec(np.float64, (), np.nan)}

    def restart(self, table: StateTable, slots: Slots) -> None:
        table["smoothed_error"][slots] = np.nan

    def smoothed(self, table: StateTable, slots: Slots, errors: F64) -> F64:
        return ewma(table["smoothed_error"][slots], errors, self.smoothing)

    def fit(self, table: StateTable, slots: Slots) -> tuple[F64, F64]:
        """Mean and std of log smoothed error for these streams."""
        raise NotImplementedError

    def score(self, table: StateTable, slots: Slots, errors: F64) -> F64:
        log_error = np.log(np.maximum(self.smoothed(table, slots, errors), self.floor))
        mean, std = self.fit(table, slots)
        return score_from_z((log_error - mean) / std)

    def learn_errors(self, table: StateTable, slots: Slots, errors: F64, scores: F64) -> None:
        table["smoothed_error"][slots] = self.smoothed(table, slots, errors)


class FixedDetector(LogNormalDetector):
    """The bundle's calibration, frozen: the same threshold for every stream, for ever."""

    kind = "fixed"

    def fit(self, table: StateTable, slots: Slots) -> tuple[F64, F64]:
        n = len(slots)
        std = max(self.calibration.log_error_std, MIN_LOG_STD)
        return np.full(n, self.calibration.log_error_mean), np.full(n, std)


class AdaptiveDetector(LogNormalDetector):
    """Per-stream statistics of log error, exponentially weighted over ``window`` samples."""

    kind = "adaptive"

    def error_columns(self) -> dict[str, ColumnSpec]:
        return {
            **super().error_columns(),
            "log_error_mean": ColumnSpec(np.float64),
            "log_error_var": ColumnSpec(np.float64),
            "log_error_n": ColumnSpec(np.float64),
        }

    def start(self, table: StateTable, slots: Slots) -> None:
        super().start(table, slots)
        table["log_error_mean"][slots] = self.calibration.log_error_mean
        table["log_error_var"][slots] = self.calibration.log_error_std**2
        table["log_error_n"][slots] = self.options.prior_weight

    def fit(self, table: StateTable, slots: Slots) -> tuple[F64, F64]:
        std = np.sqrt(table["log_error_var"][slots])
        return table["log_error_mean"][slots], np.maximum(std, MIN_LOG_STD)

    def learn_errors(self, table: StateTable, slots: Slots, errors: F64, scores: F64) -> None:
        smoothed = self.smoothed(table, slots, errors)
        mean, std = self.fit(table, slots)
        # Clip at the alert threshold: an anomaly moves the baseline no more than a sample
        # right at the threshold would, so a long anomaly is not learnt as the new normal
        # quickly, yet a lasting change of regime is still followed.
        log_error = np.minimum(np.log(np.maximum(smoothed, self.floor)), mean + self._clip_z * std)
        n = np.minimum(table["log_error_n"][slots] + 1.0, self.options.window)
        weight = 1.0 / n
        delta = log_error - mean
        table["log_error_mean"][slots] = mean + weight * delta
        table["log_error_var"][slots] = (1.0 - weight) * (
            table["log_error_var"][slots] + weight * delta**2
        )
        table["log_error_n"][slots] = n
        table["smoothed_error"][slots] = smoothed
