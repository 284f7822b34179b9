"""The baselines: the single-error detectors the product's channels detector is measured
against on NAB and SKAB (docs/benchmarks.md), kept out of the product.

Each scores the RMS prediction error alone, with the range rule on top (base.py):
``likelihood`` (HTM-style anomaly likelihood, the product's default before the channels),
``adaptive`` and ``fixed`` (a lognormal fit, lognormal.py), ``telemanom`` (Hundman et al.'s
nonparametric dynamic threshold) and ``spot`` (DSPOT extreme-value thresholds, by libspot).

The product's configuration cannot name them; a benchmark puts one into a core it builds
(``baseline_factory``) or one a daemon built (``use_baseline``), which then scores, alerts
and replays as with the product's detector, also after an engine swap.
"""

from __future__ import annotations

from benchmarks.baselines.base import (
    BASELINE_KINDS,
    BaselineKind,
    BaselineSettings,
    ErrorDetector,
)
from benchmarks.baselines.likelihood import LikelihoodDetector
from benchmarks.baselines.lognormal import AdaptiveDetector, FixedDetector
from benchmarks.baselines.spot import SpotDetector
from benchmarks.baselines.telemanom import TelemanomDetector
from sensord.core.detect import DetectorContext, DetectorSettings
from sensord.core.pipeline import DetectorFactory, Pipeline

BASELINES: dict[BaselineKind, type[ErrorDetector]] = {
    "adaptive": AdaptiveDetector,
    "fixed": FixedDetector,
    "likelihood": LikelihoodDetector,
    "telemanom": TelemanomDetector,
    "spot": SpotDetector,
}


def make_baseline(
    context: DetectorContext, settings: DetectorSettings, options: BaselineSettings
) -> ErrorDetector:
    """The baseline ``options.kind``, with the threshold and range rule of ``settings``."""
    return BASELINES[options.kind](context, settings, options)


def baseline_factory(options: BaselineSettings) -> DetectorFactory:
    """What makes the baseline ``options.kind`` for a pipeline (``Pipeline(...,
    detector_factory=...)``), with the pipeline's own threshold and range rule."""
    return lambda context, settings: make_baseline(context, settings, options)


def use_baseline(pipeline: Pipeline, options: BaselineSettings) -> None:
    """Score a pipeline built elsewhere (a daemon's route) with a baseline from now on,
    also after an engine swap. Call it before the pipeline scores anything: its state table
    starts again, with the baseline's columns."""
    pipeline.use_detector(baseline_factory(options))


__all__ = [
    "BASELINES",
    "BASELINE_KINDS",
    "BaselineKind",
    "BaselineSettings",
    "ErrorDetector",
    "baseline_factory",
    "make_baseline",
    "use_baseline",
]
