"""Detectors: turning what the model saw into anomaly scores and decisions.

One detector, ``channels`` (composite.py): point, sustained, contextual, shift and extremes
channels (channel.py, contextual.py, range.py), each statistic priced on the stream's own
calibrated tails (tail.py, scale.py), on base.py's contract and common score scale. The
single-error detectors it was measured against are the benchmarks' baselines
(benchmarks/baselines/), not options of the product.
"""

from sensord.core.detect.base import (
    CHANNELS,
    DEFAULT_THRESHOLD,
    DETECTOR_CHANNELS,
    DETECTOR_KINDS,
    MIN_LOG_STD,
    Assessment,
    Detector,
    DetectorContext,
    DetectorKind,
    DetectorSettings,
    score_from_tail,
    score_from_z,
    z_from_score,
)
from sensord.core.detect.channel import Observation
from sensord.core.detect.composite import ChannelDetector
from sensord.core.detect.range import DEFAULT_RANGE_MARGIN, DEFAULT_RANGE_MIN_SAMPLES


def make_detector(context: DetectorContext, settings: DetectorSettings) -> Detector:
    """The detector of these settings: the channels detector, the only one."""
    return ChannelDetector(context, settings)


__all__ = [
    "CHANNELS",
    "DEFAULT_RANGE_MARGIN",
    "DEFAULT_RANGE_MIN_SAMPLES",
    "DEFAULT_THRESHOLD",
    "DETECTOR_CHANNELS",
    "DETECTOR_KINDS",
    "MIN_LOG_STD",
    "Assessment",
    "ChannelDetector",
    "Detector",
    "DetectorContext",
    "DetectorKind",
    "DetectorSettings",
    "Observation",
    "make_detector",
    "score_from_tail",
    "score_from_z",
    "z_from_score",
]
