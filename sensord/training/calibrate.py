"""Detector calibration from the model's errors on the validation rows.

The errors are computed exactly as the daemon computes them (RMS over features of scaled
value minus the prediction made one step before), smoothed with the detector's EWMA over
the whole sequence so the smoothing is warm when validation starts, and summarised as a
normal fit of their logarithm. That fit is where the channels detector's error scale starts
for a stream it has not seen yet (its typical error, and the floor under it); the
benchmarks' single-error baselines (benchmarks/baselines/) take their statistics from it too.
"""

from __future__ import annotations

import math

import numpy as np

from sensord.arrays import F32, F64
from sensord.core.bundle import Calibration
from sensord.core.detect import MIN_LOG_STD, DetectorSettings, z_from_score
from sensord.core.engine import CrossHead, HorizonHead
from sensord.training.data import TrainingData
from sensord.training.heads import deviations
from sensord.training.model import Forecaster

DEFAULT_SMOOTHING = 0.5
# Errors under this fraction of the median validation error count as that fraction: below
# it, differences are noise, and the log of a near-zero error would dominate the fit.
FLOOR_FRACTION = 0.1
ABSOLUTE_FLOOR = 1e-6


def step_errors(
    model: Forecaster,
    scaled: F32,
    inputs: F32,
    cross: CrossHead | None = None,
    horizon: HorizonHead | None = None,
) -> F64:
    """Per-row error against the previous row's prediction, as the daemon's core sees it
    (the model's heads applied); row 0 has none (NaN)."""
    found = deviations(model, inputs, scaled, cross, horizon)
    errors: F64 = np.sqrt(np.mean(found**2, axis=1))
    return errors


def ewma(errors: F64, smoothing: float) -> F64:
    smoothed = np.empty_like(errors)
    level = math.nan
    for i, error in enumerate(errors):
        if not math.isnan(error):
            level = error if math.isnan(level) else smoothing * error + (1 - smoothing) * level
        smoothed[i] = level
    return smoothed


def calibrate(
    model: Forecaster,
    data: TrainingData,
    smoothing: float = DEFAULT_SMOOTHING,
    cross: CrossHead | None = None,
    horizon: HorizonHead | None = None,
) -> Calibration:
    """Calibration from the smoothed validation errors of every stream."""
    validation = np.concatenate(
        [
            ewma(step_errors(model, s.scaled, s.inputs, cross, horizon), smoothing)[s.split :]
            for s in data.streams
        ]
    )
    floor = max(float(np.median(validation)) * FLOOR_FRACTION, ABSOLUTE_FLOOR)
    log_errors = np.log(np.maximum(validation, floor))
    mean = float(log_errors.mean())
    std = max(float(log_errors.std()), MIN_LOG_STD)
    z = z_from_score(DetectorSettings().threshold)
    return Calibration(
        smoothing=smoothing,
        error_floor=floor,
        log_error_mean=mean,
        log_error_std=std,
        threshold_error=math.exp(mean + z * std),
        samples=len(validation),
        quantiles={
            name: float(np.quantile(validation, q))
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        },
    )
