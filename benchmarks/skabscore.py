"""SKAB's metrics, written from its rules (the Skoltech Anomaly Benchmark's leaderboard).

SKAB (github.com/waico/SKAB, GPL-3.0; this is an independent implementation of the rules its
``core/metrics.py`` applies, checked against the figures its shipped results give: see
docs/benchmarks.md) scores the rows after each file's first ``TRAIN_ROWS``:

- **outlier detection**: the binary flags against the ``anomaly`` labels as one
  classification pooled over every file's test rows: F1 = TP / (TP + (FP + FN) / 2),
  FAR = FP / (FP + TN) (%), MAR = FN / (FN + TP) (%), each rounded to two decimals as SKAB
  reports them;
- **changepoint detection**: every test row where the flag changes (and the first test row
  if it is flagged) is a detected changepoint, scored by SKAB's variant of NAB: a window of
  ``WINDOW_S`` seconds to the right of each labelled changepoint (a window that overlaps the
  one before starts where that one ends); the first detection in a window scores from
  ``A_tp`` at its start down to ``A_fp`` at its end along a tanh curve, later ones in it
  nothing; a detection outside every window costs ``A_fp``; an empty window ``A_fn``. Raw,
  null (every window missed) and perfect (every window hit at once) scores are summed over
  files and normalised once: ``100 (raw - null) / (perfect - null)``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64, I64

TRAIN_ROWS = 400
WINDOW_S = 60.0
DETAIL = 1000  # points of SKAB's scoring curve


@dataclass(frozen=True)
class CpProfile:
    name: str
    tp: float
    fp: float
    fn: float


PROFILES = (
    CpProfile("standard", 1.0, -0.11, -1.0),
    CpProfile("low_fp", 1.0, -0.22, -1.0),
    CpProfile("low_fn", 1.0, -0.11, -2.0),
)


@dataclass
class Confusion:
    tp: int = 0
    tn: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, truth: npt.ArrayLike, flags: npt.ArrayLike) -> None:
        t = np.asarray(truth) == 1
        p = np.asarray(flags) == 1
        self.tp += int((t & p).sum())
        self.tn += int((~t & ~p).sum())
        self.fp += int((~t & p).sum())
        self.fn += int((t & ~p).sum())

    @property
    def f1(self) -> float:
        denominator = self.tp + (self.fp + self.fn) / 2
        return round(self.tp / denominator, 2) if denominator else math.nan

    @property
    def far(self) -> float:
        normal = self.fp + self.tn
        return round(self.fp / normal * 100, 2) if normal else math.nan

    @property
    def mar(self) -> float:
        anomalous = self.fn + self.tp
        return round(self.fn / anomalous * 100, 2) if anomalous else math.nan


@dataclass
class CpScore:
    """Summed raw, null and perfect scores per profile, and the counts behind them."""

    raw: dict[str, float] = field(default_factory=lambda: {p.name: 0.0 for p in PROFILES})
    null: dict[str, float] = field(default_factory=lambda: {p.name: 0.0 for p in PROFILES})
    perfect: dict[str, float] = field(default_factory=lambda: {p.name: 0.0 for p in PROFILES})
    windows: int = 0
    missed: int = 0
    false_positives: int = 0
    delays: list[float] = field(default_factory=list)

    def normalized(self, profile: str) -> float:
        span = self.perfect[profile] - self.null[profile]
        if span == 0:
            return math.nan
        return round(100 * (self.raw[profile] - self.null[profile]) / span, 2)

    def add_file(self, ts: F64, true_cp: npt.ArrayLike, flags: npt.ArrayLike) -> None:
        """One file's test rows: timestamps (s), changepoint labels and binary flags."""
        detected = ts[changepoints(np.asarray(flags))]
        bounds = windows(ts[np.asarray(true_cp) == 1])
        hits, outside = match(detected, bounds)
        self.windows += len(bounds)
        self.missed += sum(1 for h in hits if h is None)
        self.false_positives += outside
        for (start, _), hit in zip(bounds, hits, strict=True):
            if hit is not None:
                self.delays.append(hit - start)
        for profile in PROFILES:
            score = profile.fp * outside
            for (start, end), hit in zip(bounds, hits, strict=True):
                score += profile.fn if hit is None else curve(start, hit, end, profile)
            self.raw[profile.name] += score
            self.null[profile.name] += len(bounds) * profile.fn
            self.perfect[profile.name] += len(bounds) * profile.tp


def changepoints(flags: I64) -> npt.NDArray[np.bool_]:
    """Rows where the flag changes, and the first row if it is flagged."""
    change = np.zeros(len(flags), dtype=bool)
    if len(flags):
        change[0] = flags[0] == 1
        change[1:] = flags[1:] != flags[:-1]
    return change


def windows(changepoint_ts: F64) -> list[tuple[float, float]]:
    """``[t, t + WINDOW_S]`` for each changepoint; one that overlaps the window before starts
    where that one ends."""
    bounds = [[float(t), float(t) + WINDOW_S] for t in sorted(changepoint_ts)]
    for i in range(len(bounds) - 1):
        bounds[i + 1][0] = max(bounds[i][1], bounds[i + 1][0])
    return [(start, end) for start, end in bounds]


def match(detected: F64, bounds: list[tuple[float, float]]) -> tuple[list[float | None], int]:
    """The first detection in each window (None: missed) and how many fall in none.

    Windows are closed at both ends, each judged on its own, as SKAB does (a detection on
    the boundary two cut windows share counts for both)."""
    detected = np.sort(detected)
    hits: list[float | None] = []
    for start, end in bounds:
        inside = detected[(detected >= start) & (detected <= end)]
        hits.append(float(inside[0]) if inside.size else None)
    if not bounds:
        return hits, len(detected)
    outside = int((detected < bounds[0][0]).sum())
    for (_, end), (start, _) in itertools.pairwise(bounds):
        outside += int(((detected > end) & (detected < start)).sum())
    outside += int((detected > bounds[-1][1]).sum())
    return hits, outside


_CURVE_X = np.linspace(-np.pi / 2, np.pi / 2, DETAIL)
_CURVE_UNIT = -np.tanh(_CURVE_X) / np.tanh(np.pi / 2)  # +1 at the start, -1 at the end


def curve(start: float, hit: float, end: float, profile: CpProfile) -> float:
    """The score of a first detection at ``hit`` in the window ``[start, end]``: ``tp`` at
    the start falling to ``fp`` at the end along SKAB's tanh, sampled at DETAIL points."""
    half = (profile.tp - profile.fp) / 2
    index = min(int((hit - start) / (end - start) * DETAIL), DETAIL - 1)
    return float(half * _CURVE_UNIT[index] + half + profile.fp)
