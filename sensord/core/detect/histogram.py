"""The histogram of cluster starts: what a stream has shown of a statistic, past fixed edges.

Part of a calibrated tail (tail.py). The edges are log-spaced, ``PER_OCTAVE`` to an octave
from ``LOWEST``, the same for every statistic (each is in units of its stream's own spread).
Per statistic, the histogram keeps the weight of clusters at or past each edge: a value
counts at every edge the last value was not past and it is, so a run past a level counts
once. The tail halves it when it passes twice ``MEMORY`` values, so it remembers about that
many.

Read as a tail (``read``): log P(S >= s), log-linearly between edges, up to the level ``s*``
that still has ``ANCHOR`` values past it; past ``s*`` a power law with the slope of the
log-survival over the half octave below ``s*`` (the generalised Pareto family's heavy end:
never lighter than a tail that has shown this slope). ``fit`` finds ``s*``, the survival
there and the slope; the tail refits every few values, not on every reading, so reading a
probability costs two gathers and learning one masked add. ``contradiction`` says how far
the histogram contradicts the tail's light fit: from how far it does, the tail is the
histogram's rather than the light fit's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64, Bools

LOWEST = 0.25  # the histogram's first edge, in the statistic's units (spreads)
PER_OCTAVE = 4  # edges per doubling
OCTAVES = 14  # from LOWEST to 4096 spreads
EDGES = OCTAVES * PER_OCTAVE + 1
LOG_LOWEST = math.log(LOWEST)
LOG_STEP = math.log(2.0) / PER_OCTAVE
MEMORY = 20_000.0  # values the histogram remembers (its counts are halved past twice this)
ANCHOR = 10.0  # values past the level where the histogram stops and extrapolation starts
SEGMENT = 0.5 * math.log(2.0)  # the slope is read over this much log-statistic below s*
SLOPE_RANGE = (0.5, 60.0)  # the extrapolated power law's exponent, bounded
EDGE_VALUES = np.exp(LOG_LOWEST + LOG_STEP * np.arange(EDGES))
CONTRADICTION = 2.0  # values past an edge that can contradict the light fit
# How many too many: from 3 times what the light fit expects blending starts, from 10 times
# the histogram's fit is whole; and how sure: the Poisson deviance of the count (from 6, about
# one chance in 70, to 12, one in 2,000; every edge and refit is another look).
BLEND_RATIO = (math.log(3.0), math.log(10.0))
BLEND_DEVIANCE = (6.0, 12.0)


@dataclass(frozen=True)
class Fit:
    """Where a histogram stops and how its tail goes on, per statistic."""

    counts: F64  # [..., EDGES] clusters past each edge, as their non-increasing envelope
    log_star: F64  # log s*: the level with ANCHOR values past it
    log_survival: F64  # log P(S >= s*)
    slope: F64  # the power law's exponent past s*


def read(
    counts: npt.NDArray[np.floating],
    total: F64,
    fitted: tuple[F64, F64, F64],
    log_stat: F64,
) -> tuple[F64, F64, Bools]:
    """log P(S >= s) as the histogram shows it (``seen``), as its fit (``fitted``: log s*,
    the log survival there, the slope) goes on past s* (``beyond``: the histogram's below
    s*, the power law past it), and whether ``s`` is where the histogram can say
    (``inside``: at or below s*, with ``ANCHOR`` values counted). ``total`` values went into
    ``counts``."""
    log_star, log_survival, slope = fitted
    position = (log_stat - LOG_LOWEST) / LOG_STEP  # -inf for 0, NaN for NaN
    edge = np.clip(np.nan_to_num(np.floor(position), nan=0.0), 0, EDGES - 2).astype(np.intp)
    fraction = np.clip(position - edge, 0.0, 1.0)
    log_total = np.log(total)
    lower = np.log(_pick(counts, edge)) - log_total
    upper = np.log(_pick(counts, edge + 1)) - log_total
    seen = np.where(np.isfinite(upper), lower + fraction * (upper - lower), lower)
    seen = np.where(position < 0.0, 0.0, seen)
    power = log_survival - slope * (log_stat - log_star)
    inside = log_stat <= log_star
    beyond: F64 = np.where(inside, seen, power)
    return seen, beyond, inside & (total >= ANCHOR)


def count(
    column: npt.NDArray[np.float32],
    slots: npt.NDArray[np.intp],
    stat: F64,
    *,
    last: F64,
    counted: Bools,
) -> None:
    """Count the ``counted`` statistics of ``stat[n, width]`` into the streams' histograms
    (``column``: the state table's, ``[slot, width, EDGES]``): a cluster starts past every
    edge the ``last`` value was not past and this one is."""
    width = stat.shape[1]
    now = _edge_of(np.where(counted, stat, 0.0))
    before = _edge_of(np.nan_to_num(last))
    rising = np.flatnonzero(counted & (now > before))
    if rising.size:
        rows = slots[rising // width]
        cols = rising % width
        edges = np.arange(EDGES)
        step = (edges > before.ravel()[rising, None]) & (edges <= now.ravel()[rising, None])
        column[rows, cols] += step


def fit(counts: npt.NDArray[np.float32], total: F64) -> Fit:
    """Where each histogram (``counts`` of ``total`` values) stops, the level with
    ``ANCHOR`` values past it, read log-linearly between edges; and the slope of the power
    law past it."""
    # Clusters past a level need not fall with the level (a statistic can cross a high
    # level often while it stays above a lower one): the fit reads the smallest
    # non-increasing envelope above them.
    envelope = np.maximum.accumulate(counts.astype(np.float64)[..., ::-1], axis=-1)[..., ::-1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_total = np.log(total)
        log_counts = np.log(envelope)
        # Counts fall with the edge: the last edge still holding ANCHOR values.
        last = np.clip((envelope >= ANCHOR).sum(axis=-1) - 1, 0, EDGES - 2)
        here, there = _pick(log_counts, last), _pick(log_counts, last + 1)
        share = np.where(
            np.isfinite(there) & (here > there),
            (here - math.log(ANCHOR)) / (here - there),
            0.0,
        )
        share = np.clip(share, 0.0, 1.0)
        log_star = LOG_LOWEST + LOG_STEP * (last + share)
        log_survival = np.minimum(here + share * np.nan_to_num(there - here), log_total)
        # Record theory's bound: the next of n values exceeds them all with probability
        # 1 / (n + 1), so nothing past the histogram is priced rarer at s*.
        log_survival = np.maximum(log_survival - log_total, -np.log1p(total))
        # The slope over the half octave below s*, read off the histogram (or, below its
        # first edge, from survival 1).
        position = (log_star - SEGMENT - LOG_LOWEST) / LOG_STEP
        below = _interpolate(log_counts, position) - log_total
        below = np.where((position >= 0) & np.isfinite(below), below, 0.0)
        slope = np.clip((below - log_survival) / SEGMENT, *SLOPE_RANGE)
    return Fit(envelope, log_star, log_survival, slope)


def contradiction(counts: F64, total: F64, u: F64, shape: F64, log_level: float) -> F64:
    """How far clusters past each edge (``counts[..., EDGES]`` of ``total`` values)
    contradict a tail's light fit (a Weibull of ``shape`` with ``log_level``, the log share
    of values past ``u``, at ``u``; tail.py): 0 where they agree, 1 where it is surely
    wrong."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # Every value past an edge, as if each started a cluster: the most clusters the light
        # fit allows there (a slow statistic's runs lengthen with the level).
        expected = total[..., None] * np.exp(
            log_level * (EDGE_VALUES / u[..., None]) ** shape[:, None]
        )
        ratio = np.log(counts / expected)
        deviance = 2.0 * (counts * ratio - (counts - expected))
        weight = _ramp(ratio, BLEND_RATIO) * _ramp(deviance, BLEND_DEVIANCE)
        hits = (counts >= CONTRADICTION) & (u[..., None] <= EDGE_VALUES)
        out: F64 = np.where(hits & np.isfinite(weight), weight, 0.0).max(axis=-1)
    return out


def _ramp(x: F64, bounds: tuple[float, float]) -> F64:
    """0 below the first bound, 1 past the second, linear between."""
    out: F64 = np.clip((x - bounds[0]) / (bounds[1] - bounds[0]), 0.0, 1.0)
    return out


def _edge_of(stat: F64) -> npt.NDArray[np.intp]:
    """The last edge each statistic is at or past (-1: below the first)."""
    with np.errstate(divide="ignore"):
        position = np.floor((np.log(np.maximum(stat, 0.0)) - LOG_LOWEST) / LOG_STEP)
    return np.clip(position, -1, EDGES - 1).astype(np.intp)


def _pick(rows: npt.NDArray[np.floating], index: npt.NDArray[np.intp]) -> F64:
    """``rows[..., index]`` element by element: a flat gather, as ``np.take_along_axis``
    does it at a fifth of its cost on a wave's small arrays."""
    flat_rows = rows.reshape(-1, rows.shape[-1])
    flat = np.arange(flat_rows.shape[0]) * flat_rows.shape[1] + index.ravel()
    picked: F64 = flat_rows.ravel()[flat].reshape(index.shape).astype(np.float64)
    return picked


def _interpolate(log_counts: F64, position: F64) -> F64:
    """The log counts at fractional edge ``position``, log-linearly."""
    edge = np.clip(np.floor(position).astype(np.intp), 0, EDGES - 2)
    fraction = np.clip(position - edge, 0.0, 1.0)
    lower, upper = _pick(log_counts, edge), _pick(log_counts, edge + 1)
    out: F64 = np.where(np.isfinite(upper), lower + fraction * (upper - lower), lower)
    return out
