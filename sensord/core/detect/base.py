"""What every detector is: prediction error in, anomaly score in [0, 1] out.

Following river's anomaly module, a detector's ``score`` (how surprising is this error?) is
separate from ``learn`` (update the per-stream statistics) and from ``classify`` (is the
score at or above the threshold?). The alert lifecycle that turns decisions into raised and
cleared events is alert.py's job. Every method works on the slots of one wave at once; the
per-stream statistics live in the state table as columns the detector declares.

Scores share one scale, whatever the detector: with ``d = -log10 p`` the decades of the
upper-tail probability ``p`` of an error this large, the score is ``d / (d + 5)``. So 0.5 is
"one in 100,000", a threshold means the same rarity for every detector and every stream, and
the scale never saturates: a one-in-1e20 surprise still outranks a one-in-1e10 one.

The product has one detector, ``channels`` (composite.py). The single-error detectors it was
compared with (likelihood, adaptive, fixed, telemanom, spot) live in benchmarks/baselines/
and keep this same contract, so the benchmarks score them through the same core.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64
from sensord.core.bundle import Calibration, Manifest, NormalTails
from sensord.core.detect.channel import Observation, Reading
from sensord.core.detect.normal import log_upper_tail
from sensord.core.detect.range import DEFAULT_RANGE_MARGIN, DEFAULT_RANGE_MIN_SAMPLES
from sensord.core.state import ColumnSpec, Slots, StateTable

# One kind: the settings still name it, because the published bridge info and old
# configuration files do (config/detection.py turns a removed kind into a clear error).
DetectorKind = Literal["channels"]
DETECTOR_KINDS: tuple[DetectorKind, ...] = ("channels",)

# Decades of tail probability that score 0.5.
HALF_SCORE_DECADES = 5.0
# The default threshold: 4.1 decades, a sample as surprising as one in 12,000 of the stream's
# normal ones, all channels together (the channels detector's scores are calibrated per
# stream, detect/tail.py): about one false alert in 40 days on a stream read every 5 minutes.
# The lowest of the measured thresholds (0.4, 0.45, 0.5) whose promise is inside the bound
# the robustness suite holds (one false alert per 10,000 clean readings; 0.4 promises 4.6),
# and the better of them on NAB's worst category and on SKAB (docs/benchmarks.md). It was 0.5
# before the tails were learnt per stream, when 0.5 raised about six times its promise.
DEFAULT_THRESHOLD = 0.45
# A calibration's spread of log errors (training/calibrate.py) is never taken below this, so
# a stream whose validation errors were nearly constant does not call every wobble impossible.
MIN_LOG_STD = 0.1


CHANNELS = ("point", "sustained", "contextual", "shift", "extremes", "error")
"""Every channel a detector may name as the one that fired. ``error``, the single prediction
error, is the benchmarks' baselines' (benchmarks/baselines/): kept so that their alerts, and a
state table's alert channel written before they left the product, still have a name."""
CHANNEL_CODES = {name: code for code, name in enumerate(CHANNELS)}
CALIBRATED_CHANNELS = ("point", "sustained", "contextual", "shift")
DETECTOR_CHANNELS = CHANNELS[:5]  # what the channels detector listens to (all by default)


@dataclass(frozen=True)
class DetectorSettings:
    """How a route turns errors into scores and decisions."""

    kind: DetectorKind = "channels"
    threshold: float = DEFAULT_THRESHOLD
    range_margin: float | None = DEFAULT_RANGE_MARGIN
    range_min_samples: int = DEFAULT_RANGE_MIN_SAMPLES
    channels: frozenset[str] = frozenset(DETECTOR_CHANNELS)
    error_horizon: int = 2000
    sustained_span: float = 10.0
    context_span: float = 9.0
    context_days: float = 20.0
    shift_span: float = 30.0
    min_samples: int = 100

    def __post_init__(self) -> None:
        if self.kind not in DETECTOR_KINDS:
            raise ValueError(f"detector kind {self.kind!r} is not one of {DETECTOR_KINDS}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold {self.threshold} is not in (0, 1)")
        if self.range_margin is not None and self.range_margin < 0:
            raise ValueError(f"range_margin {self.range_margin} must be >= 0 (or None: off)")
        unknown = sorted(set(self.channels) - set(DETECTOR_CHANNELS))
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}; channels are {DETECTOR_CHANNELS}")
        if self.error_horizon < 2 or self.sustained_span < 1 or self.context_span < 1:
            raise ValueError("error_horizon must be >= 2, the spans >= 1")
        if self.context_days <= 0 or self.min_samples < 1:
            raise ValueError("context_days must be > 0 and min_samples >= 1")


@dataclass(frozen=True)
class DetectorContext:
    """What a detector knows of the bundle it scores for."""

    calibration: Calibration
    features: int = 1
    interval_s: float = 60.0
    daily: bool = False
    normal: NormalTails | None = None  # what the tails learnt on the training rows

    @classmethod
    def of(cls, manifest: Manifest) -> DetectorContext:
        return cls(
            calibration=manifest.calibration,
            features=len(manifest.features),
            interval_s=manifest.training.median_interval_s,
            daily=bool(manifest.time_features),
            normal=manifest.normal,
        )


@dataclass
class Assessment:
    """A detector's view of one wave (see ``Detector.assess``)."""

    score: F64  # [n] on the common scale
    surprise: F64  # [n] the same from the surprise channels alone (onsets inside an alert)
    channel: npt.NDArray[np.int8]  # [n] code (CHANNELS) of the channel that decided the score
    # Each feature's share in the surprise ([rows, F]) for the given rows of the wave:
    # asked only for the samples that make an event.
    shares: Callable[[npt.NDArray[np.intp]], F64]
    readings: tuple[Reading, ...] = ()
    # [n, F + 1] each feature's own score (its most surprised statistic in any channel, on
    # the same scale as ``score``), then the relation's (the joint statistic of several
    # features; 0 with one): what an alert is held by and what stops learning while it is up
    # (alert.py). None from a detector that scores the sample as one: all features drive it.
    features: F64 | None = None


def score_from_decades(decades: F64) -> F64:
    """Scores from ``-log10`` of tail probabilities."""
    d = np.maximum(decades, 0.0)
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(d), 1.0, d / (d + HALF_SCORE_DECADES))


def decades_of_score(score: float) -> float:
    """The decades of tail probability that score ``score`` (inverse of
    ``score_from_decades`` on [0, 1))."""
    return HALF_SCORE_DECADES * score / (1.0 - score)


def score_from_tail(tail: F64) -> F64:
    """Scores from upper-tail probabilities."""
    with np.errstate(divide="ignore"):
        return score_from_decades(-np.log10(np.clip(tail, 0.0, 1.0)))


def score_from_z(z: F64) -> F64:
    """Scores from z-scores of a normal fit, by their upper-tail probability."""
    return score_from_decades(-log_upper_tail(z) / math.log(10.0))


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
    """The contract every detector keeps (see the module docstring)."""

    kind: ClassVar[str]  # "channels" in the product; a baseline's own name in the benchmarks

    def __init__(self, context: DetectorContext, settings: DetectorSettings) -> None:
        self.context = context
        self.calibration = context.calibration
        self.settings = settings
        self.threshold = settings.threshold

    def columns(self) -> dict[str, ColumnSpec]:
        """The per-stream columns this detector keeps in the state table."""
        return {}

    def start(self, table: StateTable, slots: Slots) -> None:
        """Initialise the statistics of new streams."""
        self.restart(table, slots)

    def restart(self, table: StateTable, slots: Slots) -> None:
        """After a gap reset: forget the short-term context, keep what was learnt."""

    def assess(self, table: StateTable, slots: Slots, obs: Observation) -> Assessment:
        """Scores in [0, 1] for these samples, and what decided them; changes nothing."""
        raise NotImplementedError

    def learn(
        self,
        table: StateTable,
        slots: Slots,
        obs: Observation,
        assessment: Assessment,
        trust: F64,
    ) -> None:
        """Take these samples into the streams' statistics. ``assessment`` is what
        ``assess`` gave for them (the core always assesses a sample before it learns from
        it); ``trust`` (alert.py) is how far each may move its stream's model of normal:
        0 while an alert is up, a little for a suspicious sample, 1 for a calm one."""
        raise NotImplementedError

    def forget_normal(self, table: StateTable, slots: Slots) -> None:
        """These streams' normal changed for good: learn it again from here."""

    def classify(self, scores: F64) -> npt.NDArray[np.bool_]:
        """Anomalous or not; NaN scores are not anomalous."""
        return np.asarray(scores >= self.threshold, dtype=bool)
