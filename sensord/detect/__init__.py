"""Detectors: turning prediction errors into anomaly scores and decisions.

``adaptive`` (the default) and ``fixed`` (lognormal.py), ``likelihood`` (HTM-style anomaly
likelihood), ``telemanom`` (Hundman et al.'s nonparametric dynamic threshold) and ``spot``
(DSPOT extreme-value thresholds, by libspot). All keep base.py's contract and score scale.
"""

from sensord.bundle import Calibration
from sensord.detect.base import (
    DEFAULT_THRESHOLD,
    DETECTOR_KINDS,
    Detector,
    DetectorKind,
    DetectorSettings,
    score_from_tail,
    score_from_z,
    z_from_score,
)
from sensord.detect.likelihood import LikelihoodDetector
from sensord.detect.lognormal import MIN_LOG_STD, AdaptiveDetector, FixedDetector
from sensord.detect.spot import SpotDetector
from sensord.detect.telemanom import TelemanomDetector

DETECTORS: dict[DetectorKind, type[Detector]] = {
    "adaptive": AdaptiveDetector,
    "fixed": FixedDetector,
    "likelihood": LikelihoodDetector,
    "telemanom": TelemanomDetector,
    "spot": SpotDetector,
}


def make_detector(calibration: Calibration, settings: DetectorSettings) -> Detector:
    """The detector of ``settings.kind``."""
    return DETECTORS[settings.kind](calibration, settings)


__all__ = [
    "DEFAULT_THRESHOLD",
    "DETECTORS",
    "DETECTOR_KINDS",
    "MIN_LOG_STD",
    "Detector",
    "DetectorKind",
    "DetectorSettings",
    "make_detector",
    "score_from_tail",
    "score_from_z",
    "z_from_score",
]
