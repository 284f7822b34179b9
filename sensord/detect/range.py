"""The range rule: a value beyond everything the stream has shown so far is an anomaly.

Per stream, the minimum and maximum of every feature seen so far (scaled units). Once a
stream has shown ``min_samples`` values, one outside ``[min - m span, max + m span]`` (``m``
the margin, ``span = max - min``) scores 1 whatever the detector says; then the range widens
to include it, so only a new extreme fires. A prediction error can be small for a value that
has never been seen (the LSTM follows a slow climb to a new level step by step): this catches
what the error misses, and costs two numbers per feature.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sensord.detect.base import F64
from sensord.state import ColumnSpec, Slots, StateTable


def range_columns(features: int) -> dict[str, ColumnSpec]:
    return {
        "seen_min": ColumnSpec(np.float64, (features,), np.inf),
        "seen_max": ColumnSpec(np.float64, (features,), -np.inf),
        "seen_n": ColumnSpec(np.int64),
    }


def out_of_range(
    table: StateTable, slots: Slots, values: F64, margin: float, min_samples: int
) -> npt.NDArray[np.bool_]:
    """Which of these (scaled) values fall outside their stream's widened range."""
    low, high = table["seen_min"][slots], table["seen_max"][slots]
    slack = margin * (high - low)
    with np.errstate(invalid="ignore"):
        outside = ((values < low - slack) | (values > high + slack)).any(axis=1)
    return np.asarray(outside & (table["seen_n"][slots] >= min_samples), dtype=bool)


def widen(table: StateTable, slots: Slots, values: F64) -> None:
    table["seen_min"][slots] = np.minimum(table["seen_min"][slots], values)
    table["seen_max"][slots] = np.maximum(table["seen_max"][slots], values)
    table["seen_n"][slots] += 1
