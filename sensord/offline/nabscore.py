"""A NAB scorer, written from the Numenta Anomaly Benchmark's published rules (NAB v1.1).

For one data file with n rows and its labelled anomaly windows:

- the first ``min(floor(0.15 n), 750)`` rows are probationary and not scored;
- a detection is a row whose anomaly score is at or above the threshold;
- inside a window of ``w`` rows whose last row is ``r``, row ``i`` sits at relative position
  ``p = -(r - i + 1) / w`` and is worth ``tp * S(p) / S(-1)``, where
  ``S(p) = 2 sigmoid(-5 p) - 1`` (and ``-1`` from ``p >= 3``); a window counts only its best
  (earliest) detection, and ``-fn`` if it has none;
- outside windows, a detection costs ``fp * S(p)`` with ``p = |r - i| / (w - 1)`` measured
  from the end ``r`` of the previous window of width ``w`` (so a detection just after a window
  costs little), or ``-fp`` when no window came before;
- a detector's raw score is the sum over all files at ONE threshold, chosen to maximise it;
  it is normalised as ``100 (raw - null) / (perfect - null)``, where ``null`` is the score of
  a detector that never detects and ``perfect = tp x (labelled windows)`` (as NAB's runner).

The three application profiles (standard, reward_low_FP_rate, reward_low_FN_rate) only change
the weights ``tp``, ``fp`` and ``fn`` (NAB's ``profiles.json``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64
from sensord.core.timestamps import parse_timestamp

NO_DETECTION = math.inf  # a threshold above every score: nothing detected
MAX_PROBATION = 750


@dataclass(frozen=True)
class Profile:
    name: str
    tp: float
    fp: float
    fn: float


# NAB's standard application profile (its profiles.json), for scoring without NAB's files.
STANDARD = Profile("standard", tp=1.0, fp=0.11, fn=1.0)


def load_profiles(path: Path) -> dict[str, Profile]:
    raw = json.loads(path.read_text())
    return {
        name: Profile(
            name,
            c["CostMatrix"]["tpWeight"],
            c["CostMatrix"]["fpWeight"],
            c["CostMatrix"]["fnWeight"],
        )
        for name, c in raw.items()
    }


def load_windows(path: Path) -> dict[str, list[tuple[float, float]]]:
    """``category/file.csv`` -> [(start, end)] in epoch seconds, parsed as the data is (a
    time without a zone is UTC), so windows and rows compare exactly."""
    raw = json.loads(path.read_text())
    return {
        name: [(parse_timestamp(a), parse_timestamp(b)) for a, b in spans]
        for name, spans in raw.items()
    }


def probation_rows(n: int) -> int:
    return min(math.floor(0.15 * n), MAX_PROBATION)


def scaled_sigmoid(position: F64) -> F64:
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(5.0 * position)) - 1.0
    return np.where(position >= 3.0, -1.0, value)


@dataclass(frozen=True)
class ScoredFile:
    """One file, prepared for scoring: scorable rows only, weights before the profile."""

    name: str
    scores: F64  # anomaly score per scorable row
    window: npt.NDArray[np.intp]  # window index per scorable row, -1 outside windows
    worth: F64  # S(p): scaled sigmoid of the row's position (in or after windows)
    windows: int  # labelled windows of the file


def prepare(
    name: str,
    timestamps: F64,
    scores: F64,
    windows: Sequence[tuple[float, float]],
    probation: int | None = None,
) -> ScoredFile:
    """Window membership and position of every row of one file. ``probation``: rows left
    unscored at the start (default: NAB's rule; 0 when the detector was warmed up before)."""
    n = len(timestamps)
    window = np.full(n, -1, dtype=np.intp)
    position = np.full(n, 3.0)
    previous_end: int | None = None
    previous_width = 0
    for k, (start, end) in enumerate(sorted(windows)):
        rows = np.flatnonzero((timestamps >= start) & (timestamps <= end))
        if rows.size == 0:
            continue
        first, last = int(rows[0]), int(rows[-1])
        width = last - first + 1
        if previous_end is not None:
            _after_window(position, previous_end, previous_width, previous_end + 1, first)
        else:
            position[:first] = 3.0
        window[first : last + 1] = k
        position[first : last + 1] = -(last - np.arange(first, last + 1) + 1) / width
        previous_end, previous_width = last, width
    if previous_end is not None:
        _after_window(position, previous_end, previous_width, previous_end + 1, n)
    keep = np.arange(n) >= (probation_rows(n) if probation is None else probation)
    kept_windows = window[keep]
    return ScoredFile(
        name=name,
        scores=np.nan_to_num(np.asarray(scores, dtype=np.float64)[keep], nan=0.0),
        window=kept_windows,
        worth=scaled_sigmoid(position)[keep],
        windows=len(windows),
    )


def _after_window(position: F64, end: int, width: int, start: int, stop: int) -> None:
    if stop <= start:
        return
    rows = np.arange(start, stop)
    # A one-row window has no width to measure by: NAB divides by zero there; any row after
    # it is then "far" (3.0 and beyond cost the full -fp).
    position[start:stop] = np.abs(end - rows) / (width - 1) if width > 1 else 3.0


def file_scores(f: ScoredFile, profile: Profile, thresholds: F64) -> F64:
    """The file's raw score at each threshold (detection: score >= threshold)."""
    max_tp = float(scaled_sigmoid(np.array([-1.0]))[0])
    total = np.zeros(len(thresholds))
    outside = f.window < 0
    total += _cumulative_at(
        f.scores[outside], f.worth[outside] * profile.fp, thresholds, _running_sum, empty=0.0
    )
    for k in np.unique(f.window[f.window >= 0]):
        rows = f.window == k
        total += _cumulative_at(
            f.scores[rows],
            f.worth[rows] * profile.tp / max_tp,
            thresholds,
            _running_max,
            empty=-profile.fn,
            floor=-profile.fn,
        )
    return total


def _running_sum(values: F64) -> F64:
    return np.cumsum(values)


def _running_max(values: F64) -> F64:
    return np.asarray(np.maximum.accumulate(values), dtype=np.float64)


def _cumulative_at(
    scores: F64,
    values: F64,
    thresholds: F64,
    accumulate: Callable[[F64], F64],
    *,
    empty: float,
    floor: float | None = None,
) -> F64:
    """For each threshold t, ``accumulate`` over the values of rows with score >= t."""
    if scores.size == 0:
        return np.full(len(thresholds), empty)
    order = np.argsort(-scores, kind="stable")
    running = accumulate(values[order])
    if floor is not None:
        running = np.maximum(running, floor)
    ranked = -scores[order]  # ascending
    count = np.searchsorted(ranked, -thresholds, side="right")  # rows with score >= t
    return np.where(count > 0, running[np.maximum(count - 1, 0)], empty)


@dataclass(frozen=True)
class CorpusScore:
    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    per_file: dict[str, float]  # raw score per file at the chosen threshold

    @property
    def normalized(self) -> float:
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def score_corpus(
    files: Sequence[ScoredFile], profile: Profile, threshold: float | None = None
) -> CorpusScore:
    """Normalised score at ``threshold``, or at the threshold that maximises it."""
    if threshold is None:
        candidates = np.unique(np.concatenate([f.scores for f in files] + [[NO_DETECTION]]))
    else:
        candidates = np.array([threshold])
    per_file = np.stack([file_scores(f, profile, candidates) for f in files])
    totals = per_file.sum(axis=0)
    best = int(np.argmax(totals))
    null = sum(float(file_scores(f, profile, np.array([NO_DETECTION]))[0]) for f in files)
    return CorpusScore(
        profile=profile.name,
        threshold=float(candidates[best]),
        raw=float(totals[best]),
        null=null,
        perfect=profile.tp * sum(f.windows for f in files),
        per_file={f.name: float(per_file[i, best]) for i, f in enumerate(files)},
    )


@dataclass(frozen=True)
class CategoryScore:
    """One category's share of a corpus score at the corpus's threshold: its files' raw
    score against what no detection and a perfect detector would have scored on them."""

    raw: float
    null: float
    perfect: float
    windows: int
    false_positives: int  # detections outside every window, at that threshold

    @property
    def normalized(self) -> float:
        """NaN for a category without windows (only false alerts can score there)."""
        span = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / span if span else math.nan


def category_scores(
    files: Sequence[ScoredFile], score: CorpusScore, profile: Profile
) -> dict[str, CategoryScore]:
    """Per category (the folder of ``category/file.csv``), normalised the way the corpus
    is, so that a weak category is not hidden in the mean."""
    grouped: dict[str, list[ScoredFile]] = {}
    for f in files:
        grouped.setdefault(f.name.split("/", 1)[0], []).append(f)
    out: dict[str, CategoryScore] = {}
    for category, members in sorted(grouped.items()):
        windows = sum(f.windows for f in members)
        out[category] = CategoryScore(
            raw=sum(score.per_file[f.name] for f in members),
            null=-profile.fn * windows,
            perfect=profile.tp * windows,
            windows=windows,
            false_positives=sum(
                int(((f.scores >= score.threshold) & (f.window < 0)).sum()) for f in members
            ),
        )
    return out


def score_all_profiles(
    files: Sequence[ScoredFile], profiles: Mapping[str, Profile], threshold: float | None = None
) -> dict[str, CorpusScore]:
    return {name: score_corpus(files, p, threshold) for name, p in profiles.items()}
