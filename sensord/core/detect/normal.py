"""The normal distribution's upper tail, in log space, in numpy alone.

Detectors score a z by ``-log10`` of its upper-tail probability, which for a real anomaly
is far below what a float can hold (z = 40 is 1e-349), so the tail is computed as a log.
This used scipy's ``log_ndtr``; scipy cost the daemon 23 MB of resident memory and 0.1 s of
start-up for this one function, so it is written here (measured in docs/benchmarks.md).

For ``x >= 0``, ``erfc(x) = t exp(-x^2 + P(t))`` with ``t = 1 / (1 + x/2)`` and the
Chebyshev-fitted polynomial ``P`` of Numerical Recipes (``erfcc``), fractional error below
1.2e-7 for every x; its log, ``log t - x^2 + P(t)``, never underflows. Negative z use
``Q(z) = 1 - Q(-z)``. tests/core/test_detect.py compares it with scipy over the whole range.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64

_P = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)
_P_HIGH_FIRST = _P[::-1]  # np.polyval wants the highest power first
_LOG_HALF = math.log(0.5)


def log_upper_tail(z: npt.ArrayLike) -> F64:
    """``log P(Z > z)`` for a standard normal Z, elementwise; NaN stays NaN."""
    z = np.asarray(z, dtype=np.float64)
    x = np.abs(z) * math.sqrt(0.5)
    t = 1.0 / (1.0 + 0.5 * x)
    # One errstate and one polyval: the detectors call this once per wave, often for a
    # handful of streams, where each extra numpy call is a measurable share of the step.
    with np.errstate(divide="ignore", invalid="ignore"):
        log_tail = _LOG_HALF + np.log(t) - x * x + np.polyval(_P_HIGH_FIRST, t)  # log Q(|z|)
        log_tail = np.where(np.isposinf(x), -np.inf, log_tail)
        lower = np.log1p(-np.exp(log_tail))  # log Q(-|z|) = log(1 - Q(|z|))
    result: F64 = np.where(z >= 0, log_tail, np.where(np.isnan(z), np.nan, lower))
    return result
