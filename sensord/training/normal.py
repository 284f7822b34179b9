"""What the detector learns from the training rows: the normal a route's new streams start from.

The training rows are, by definition, the sensor's normal. The trainer replays them through the
daemon's own core (the exported graph, the default detector) with every value taken as normal,
and keeps what the detector's calibrated tails learnt, pooled over the training streams, in the
bundle's manifest (``normal``). A stream the daemon has never seen then starts knowing, for
instance, that this machine's switching makes a cluster of large errors or that its counts
come in bursts, instead of alerting on them until it has shown them itself (detect/tail.py).
"""

from __future__ import annotations

import numpy as np

from sensord.core.bundle import Bundle, NormalTails
from sensord.core.detect.composite import ChannelDetector
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline, PipelineSettings
from sensord.offline.replay import run_series
from sensord.offline.series import Series


def learn_normal(
    bundle: Bundle, series: Series, settings: PipelineSettings | None = None
) -> NormalTails | None:
    """The tails the detector of ``settings`` (default: the daemon's) learns on ``series``
    through ``bundle``'s graph; None for a detector without calibrated tails."""
    pipeline = Pipeline(Engine(bundle), settings)
    detector = pipeline.detector
    if not isinstance(detector, ChannelDetector):
        return None
    detector.learning_normal = True
    run_series(series, pipeline)
    slots = np.asarray(sorted(pipeline.table.slot_of.values()), dtype=np.intp)
    if slots.size == 0:
        return None
    return detector.normal_tails(pipeline.table, slots)
