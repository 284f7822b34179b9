"""Detectors: turning what the model saw into anomaly scores and decisions.

``channels`` (the default, composite.py: point, sustained, contextual and extremes channels
on calibrated tails); and, scoring the RMS prediction error alone, ``likelihood`` (HTM-style
anomaly likelihood, the default before), ``adaptive`` and ``fixed`` (lognormal.py),
``telemanom`` (Hundman et al.'s nonparametric dynamic threshold) and ``spot`` (DSPOT
extreme-value thresholds, by libspot). All keep base.py's contract and score scale.
"""

from sensord.core.detect.base import (
    CHANNELS,
    DEFAULT_THRESHOLD,
    DETECTOR_KINDS,
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
from sensord.core.detect.likelihood import LikelihoodDetector
from sensord.core.detect.lognormal import MIN_LOG_STD, AdaptiveDetector, FixedDetector
from sensord.core.detect.spot import SpotDetector
from sensord.core.detect.telemanom import TelemanomDetector

DETECTORS: dict[DetectorKind, type[Detector]] = {
    "channels": ChannelDetector,
    "adaptive": AdaptiveDetector,
    "fixed": FixedDetector,
    "likelihood": LikelihoodDetector,
    "telemanom": TelemanomDetector,
    "spot": SpotDetector,
}


def make_detector(context: DetectorContext, settings: DetectorSettings) -> Detector:
    """The detector of ``settings.kind``."""
    return DETECTORS[settings.kind](context, settings)


__all__ = [
    "CHANNELS",
    "DEFAULT_THRESHOLD",
    "DETECTORS",
    "DETECTOR_KINDS",
    "MIN_LOG_STD",
    "Assessment",
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
