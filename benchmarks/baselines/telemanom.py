"""``telemanom``: the nonparametric dynamic threshold of Hundman et al. (KDD 2018).

Errors are smoothed (EWMA, span 5 % of the history), and over each stream's last
``HISTORY`` smoothed errors the threshold ``eps = mean + z std`` is chosen, among
``z`` in 2.5, 3, ..., 11.5, to maximise

    (delta_mean / mean + delta_std / std) / (|anomalous errors| + |anomalous sequences|^2)

where the deltas are how much mean and std fall when the errors above ``eps`` are removed:
the threshold that removes the most spread with the fewest, most compact anomalies. As in the
paper, a candidate is only taken if it leaves at most 5 sequences and under half the window
above it; with none, ``eps`` is the mean plus 11.5 std. The score of the newest smoothed
error ``e`` is ``e / (e + eps)``: 0.5 exactly at the dynamic threshold. (The paper's pruning
of sequences by their relative size, which works on batches of past errors, is not done: a
stream here is scored one sample at a time, as it arrives.)

Until a stream has ``MIN_HISTORY`` errors, the bundle's calibration scores it (as ``fixed``).
"""

from __future__ import annotations

import numpy as np

from benchmarks.baselines.base import BaselineSettings, ErrorDetector, ewma
from benchmarks.baselines.lognormal import FixedDetector
from sensord.arrays import F64
from sensord.core.detect import DetectorContext, DetectorSettings
from sensord.core.state import ColumnSpec, Slots, StateTable

HISTORY = 250
MIN_HISTORY = 30
SMOOTHING = 2.0 / (max(1, int(HISTORY * 0.05)) + 1)
Z_CANDIDATES = np.arange(2.5, 12.0, 0.5)
MAX_SEQUENCES = 5


class TelemanomDetector(ErrorDetector):
    kind = "telemanom"

    def __init__(
        self, context: DetectorContext, settings: DetectorSettings, options: BaselineSettings
    ) -> None:
        super().__init__(context, settings, options)
        self._fallback = FixedDetector(context, settings, options)

    def error_columns(self) -> dict[str, ColumnSpec]:
        return {
            **self._fallback.error_columns(),
            "telemanom_error": ColumnSpec(np.float64, (), np.nan),
            "history": ColumnSpec(np.float64, (HISTORY,), np.nan),
            "history_next": ColumnSpec(np.int64),
        }

    def restart(self, table: StateTable, slots: Slots) -> None:
        self._fallback.restart(table, slots)
        table["telemanom_error"][slots] = np.nan

    def _with_newest(self, table: StateTable, slots: Slots, errors: F64) -> tuple[F64, F64]:
        smoothed = ewma(table["telemanom_error"][slots], errors, SMOOTHING)
        history = table["history"][slots].copy()
        history[np.arange(len(slots)), table["history_next"][slots]] = smoothed
        return smoothed, history

    def score(self, table: StateTable, slots: Slots, errors: F64) -> F64:
        smoothed, history = self._with_newest(table, slots, errors)
        # Oldest first, so anomalous sequences are counted in time order.
        order = (table["history_next"][slots][:, None] + 1 + np.arange(HISTORY)) % HISTORY
        ordered = np.take_along_axis(history, order, axis=1)
        epsilon = dynamic_threshold(ordered)
        scores = smoothed / (smoothed + epsilon)
        young = np.isnan(ordered).sum(axis=1) > HISTORY - MIN_HISTORY
        if young.any():
            scores[young] = self._fallback.score(table, slots[young], errors[young])
        return scores

    def learn_errors(self, table: StateTable, slots: Slots, errors: F64, scores: F64) -> None:
        smoothed, history = self._with_newest(table, slots, errors)
        table["history"][slots] = history
        table["history_next"][slots] = (table["history_next"][slots] + 1) % HISTORY
        table["telemanom_error"][slots] = smoothed
        self._fallback.learn_errors(table, slots, errors, scores)

    def start(self, table: StateTable, slots: Slots) -> None:
        super().start(table, slots)
        table["history"][slots] = np.nan
        table["history_next"][slots] = 0


def dynamic_threshold(windows: F64) -> F64:
    """Hundman's epsilon for each row of ``windows`` (time order, NaN where empty)."""
    valid = ~np.isnan(windows)
    count = valid.sum(axis=1)
    n = np.maximum(count, 1)
    mean = np.where(valid, windows, 0.0).sum(axis=1) / n
    std = np.sqrt(np.where(valid, (windows - mean[:, None]) ** 2, 0.0).sum(axis=1) / n)
    std = np.where(std > 0, std, 1e-12)
    best = np.full(len(windows), -np.inf)
    epsilon = mean + Z_CANDIDATES[-1] * std
    filled = np.where(valid, windows, -np.inf)
    for z in Z_CANDIDATES:
        eps = mean + z * std
        above = filled >= eps[:, None]
        n_above = above.sum(axis=1)
        kept = valid & ~above
        n_kept = np.maximum(kept.sum(axis=1), 1)
        kept_mean = np.where(kept, windows, 0.0).sum(axis=1) / n_kept
        kept_var = np.where(kept, (windows - kept_mean[:, None]) ** 2, 0.0).sum(axis=1) / n_kept
        mean_drop = (mean - kept_mean) / np.where(mean != 0, mean, 1e-12)
        std_drop = (std - np.sqrt(kept_var)) / std
        starts = above & ~np.concatenate([np.zeros((len(windows), 1), bool), above[:, :-1]], axis=1)
        sequences = starts.sum(axis=1)
        score = (mean_drop + std_drop) / np.maximum(n_above + sequences**2, 1)
        ok = (n_above > 0) & (sequences <= MAX_SEQUENCES) & (n_above < 0.5 * count)
        better = ok & (score >= best)
        best = np.where(better, score, best)
        epsilon = np.where(better, eps, epsilon)
    return np.asarray(epsilon, dtype=np.float64)
