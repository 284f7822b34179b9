"""``spot``: streaming extreme-value thresholds, DSPOT (Siffer et al., KDD 2017), by libspot.

libspot is the C library by SPOT's author. Each stream's smoothed error, less its recent
drift (DSPOT: the mean of the last ``DRIFT_DEPTH`` normal values), feeds a SPOT model that
fits a generalised Pareto distribution to the excesses over a high quantile (``LEVEL``) and
updates it as excesses arrive; anomalies are kept out of the fit. The score is the model's
tail probability of the value, on the common scale (0.5 = 1e-5). A stream's model is fitted
on its first ``INIT_SAMPLES`` errors; until then the bundle's calibration scores it (as
``fixed``).

The libspot models live beside the state table, one per stream, not in its columns: they are
not in snapshots, so after a restart each stream fits its model again.

libspot comes with the ``dev`` extra, not with the product: its package pulls build tools an
edge install has no use for. It is imported when a ``spot`` baseline is made, and its absence
is an error that says how to install it.
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.baselines.base import BaselineSettings, ErrorDetector, ewma
from benchmarks.baselines.lognormal import FixedDetector
from sensord.arrays import F64
from sensord.core.detect import DetectorContext, DetectorSettings, score_from_tail
from sensord.core.state import ColumnSpec, Slots, StateTable

if TYPE_CHECKING:
    import libspot

LEVEL = 0.98
Q = 1e-5  # tail probability (a score of 0.5) above which a value is kept out of the fit
MAX_EXCESS = 400
INIT_SAMPLES = 150
DRIFT_DEPTH = 10
SMOOTHING = 0.5


class SpotDetector(ErrorDetector):
    kind = "spot"

    def __init__(
        self, context: DetectorContext, settings: DetectorSettings, options: BaselineSettings
    ) -> None:
        super().__init__(context, settings, options)
        self._libspot = load_libspot()
        self._fallback = FixedDetector(context, settings, options)
        self._models: dict[int, libspot.Spot] = {}
        self._init: dict[int, list[float]] = {}

    def error_columns(self) -> dict[str, ColumnSpec]:
        return {
            **self._fallback.error_columns(),
            "spot_error": ColumnSpec(np.float64, (), np.nan),
            "spot_drift": ColumnSpec(np.float64, (), np.nan),
        }

    def start(self, table: StateTable, slots: Slots) -> None:
        super().start(table, slots)
        for slot in slots.tolist():
            self._models.pop(slot, None)
            self._init[slot] = []

    def restart(self, table: StateTable, slots: Slots) -> None:
        # After a gap the stream's local level is unknown again: smoothing and drift restart.
        self._fallback.restart(table, slots)
        table["spot_error"][slots] = np.nan
        table["spot_drift"][slots] = np.nan

    def _excess(self, table: StateTable, slots: Slots, errors: F64) -> tuple[F64, F64]:
        smoothed = ewma(table["spot_error"][slots], errors, SMOOTHING)
        drift = np.nan_to_num(table["spot_drift"][slots], nan=0.0)
        return smoothed, smoothed - drift

    def score(self, table: StateTable, slots: Slots, errors: F64) -> F64:
        _, excess = self._excess(table, slots, errors)
        scores = self._fallback.score(table, slots, errors)
        for i, slot in enumerate(slots.tolist()):
            model = self._models.get(slot)
            if model is not None:
                scores[i] = _score(model, float(excess[i]))
        return scores

    def learn_errors(self, table: StateTable, slots: Slots, errors: F64, scores: F64) -> None:
        smoothed, excess = self._excess(table, slots, errors)
        drift = table["spot_drift"][slots]
        for i, slot in enumerate(slots.tolist()):
            model = self._models.get(slot)
            value = float(excess[i])
            if model is None:
                self._collect(slot, value)
                normal = True
            else:
                normal = model.step(value) != self._libspot.ANOMALY
            if normal:  # DSPOT: the drift follows normal values only
                previous = drift[i]
                drift[i] = (
                    smoothed[i]
                    if math.isnan(previous)
                    else (previous + (smoothed[i] - previous) / DRIFT_DEPTH)
                )
        table["spot_drift"][slots] = drift
        table["spot_error"][slots] = smoothed
        self._fallback.learn_errors(table, slots, errors, scores)

    def _collect(self, slot: int, value: float) -> None:
        buffer = self._init.setdefault(slot, [])
        buffer.append(value)
        if len(buffer) < INIT_SAMPLES:
            return
        model = self._libspot.Spot(q=Q, level=LEVEL, max_excess=MAX_EXCESS)
        try:
            model.fit(np.asarray(buffer, dtype=np.float64))
        except RuntimeError:
            # No tail to fit (e.g. a flat line's errors are all equal): keep the fallback
            # and try again once half a buffer of new errors has come.
            del buffer[: INIT_SAMPLES // 2]
            return
        self._models[slot] = model
        del self._init[slot]


def load_libspot() -> ModuleType:
    """The libspot module, or a RuntimeError saying how to install it."""
    try:
        return importlib.import_module("libspot")
    except ImportError:
        raise RuntimeError(
            "the spot baseline needs libspot, which is not installed: "
            "pip install libspot (or -e '.[dev]')"
        ) from None


def _score(model: libspot.Spot, value: float) -> float:
    threshold = model.excess_threshold
    if value <= threshold:
        # Below the tail the model only knows P(X > t) = 1 - LEVEL; scale up to it.
        below = float(score_from_tail(np.array([1.0 - LEVEL]))[0])
        return below * max(value, 0.0) / threshold if threshold > 0 else 0.0
    tail = model.probability(value)
    if not math.isfinite(tail) or tail <= 0:
        return 1.0
    return float(score_from_tail(np.array([min(tail, 1.0 - LEVEL)]))[0])
