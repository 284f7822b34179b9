"""Scalar helpers of the compiled path, each the scalar twin of a numpy expression the
reference uses (so NaN and infinities behave as numpy's do)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

Function = TypeVar("Function", bound=Callable[..., Any])
# (``_nrt`` is numba's own option, not in its type stubs: hence a plain dict.)
OPTIONS: dict[str, Any] = {"cache": True, "error_model": "numpy", "nogil": True, "_nrt": False}


def compiled(function: Function) -> Function:
    """``numba.njit`` with the path's options: cached on disk; numpy's float semantics (a
    division by zero is inf or NaN, not an exception); no fastmath, so results match the
    reference's; and no reference counting of arrays (``_nrt=False``: the kernels allocate
    nothing, the caller's arrays outlive the call, and counting every array passed to every
    function was a third of their time). Typed as the function it compiles."""
    return cast(Function, numba.njit(**OPTIONS)(function))


def inlined(function: Function) -> Function:
    """``compiled``, inlined into its callers by numba: a function that takes the state's
    columns would otherwise pass some 400 machine words a call, which made the first
    compile take a minute."""
    return cast(Function, numba.njit(inline="always", **OPTIONS)(function))


LOG10 = math.log(10.0)
HALF_SCORE_DECADES = 5.0
LOG_HALF = math.log(0.5)
# detect/normal.py's polynomial, highest power first (np.polyval's order)
P_HIGH_FIRST = (
    0.17087277,
    -0.82215223,
    1.48851587,
    -1.13520398,
    0.27886807,
    -0.18628806,
    0.09678418,
    0.37409196,
    1.00002368,
    -1.26551223,
)


@compiled
def fmin(a: float, b: float) -> float:
    """np.minimum: NaN if either is NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return a if a <= b else b


@compiled
def fmax(a: float, b: float) -> float:
    """np.maximum: NaN if either is NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return a if a >= b else b


@compiled
def nanmax(a: float, b: float) -> float:
    """np.fmax: the other where one is NaN."""
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return a if a >= b else b


@compiled
def clip(x: float, low: float, high: float) -> float:
    """np.clip (NaN stays NaN)."""
    return fmin(fmax(x, low), high)


@compiled
def score_of_log_p(log_p: float) -> float:
    """composite._score: the common scale's score of a natural log probability."""
    d = fmax(-fmin(log_p, 0.0) / LOG10, 0.0)
    if math.isinf(d):
        return 1.0
    return d / (d + HALF_SCORE_DECADES)


@compiled
def log_upper_tail(z: float) -> float:
    """detect/normal.log_upper_tail for one z."""
    if math.isnan(z):
        return math.nan
    x = abs(z) * math.sqrt(0.5)
    t = 1.0 / (1.0 + 0.5 * x)
    poly = 0.0
    for c in P_HIGH_FIRST:
        poly = poly * t + c
    log_tail = LOG_HALF + math.log(t) - x * x + poly
    if math.isinf(x) and x > 0:
        log_tail = -math.inf
    if z >= 0:
        return log_tail
    return math.log1p(-math.exp(log_tail))


@compiled
def predictive_z(t: float, looks: float) -> float:
    """detect/contextual.predictive_z for one residual."""
    n = fmax(looks, 1.0)
    nu = fmax(n - 1.0, 1.0)
    scaled = t / math.sqrt(1.0 + 1.0 / n)
    magnitude = (
        (8.0 * nu + 1.0) / (8.0 * nu + 3.0) * math.sqrt(nu * math.log1p(scaled * scaled / nu))
    )
    if math.isnan(t):
        return math.nan
    sign = 1.0 if t > 0 else (-1.0 if t < 0 else 0.0)
    return sign * magnitude


@compiled
def ramp(x: float, low: float, high: float) -> float:
    """histogram._ramp."""
    return clip((x - low) / (high - low), 0.0, 1.0)


# Element loops instead of numpy's slice assignment, whose broadcasting checks (and their
# error messages) took numba seconds to compile wherever one appeared.
@compiled
def fill(a: Any, value: float) -> None:
    """Every element of a 1-d array."""
    for i in range(a.shape[0]):
        a[i] = value


@compiled
def fill2(a: Any, value: float) -> None:
    """Every element of a 2-d array."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] = value


@compiled
def copy(source: Any, target: Any) -> None:
    """A 1-d array's elements into another's, converted to the target's type."""
    for i in range(source.shape[0]):
        target[i] = source[i]
