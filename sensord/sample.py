"""What goes into the core and what comes out of it.

A ``Sample`` is one reading of one stream; ``Scored`` is what the core did with a batch, as
columns (the daemon's hot path reads those, making no object per reading); ``Outcome`` is
the same for one sample, for replay and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from sensord.alert import AlertEvent
from sensord.state import Slots

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


class Status(StrEnum):
    SCORED = "scored"  # compared with a prediction, scored, stepped
    FIRST = "first"  # first sample of a new or reset stream: stepped, nothing to compare
    DUPLICATE = "duplicate"  # same timestamp as the stream's last sample: dropped
    LATE = "late"  # older than the stream's last sample: dropped


# Status codes of the columnar result, in STATUSES order.
SCORED, FIRST, DUPLICATE, LATE = range(4)
STATUSES = (Status.SCORED, Status.FIRST, Status.DUPLICATE, Status.LATE)


@dataclass(frozen=True)
class Sample:
    """One reading of one stream: epoch seconds and raw feature values in bundle order."""

    stream: str
    ts: float
    values: F64
    received: float = float("nan")  # when the daemon got it (idle eviction); default: ts


@dataclass(frozen=True)
class Outcome:
    """What the core did with one sample."""

    sample: Sample
    status: Status
    expected: F64 | None = None
    error: float = float("nan")
    score: float = float("nan")
    alert: bool = False
    warming_up: bool = False
    reset: bool = False
    event: AlertEvent | None = None


@dataclass
class Scored:
    """What the core did with a batch: one entry per sample, in the batch's order.

    The daemon reads these columns directly, so no per-sample object is made on its hot
    path; ``events`` holds the few alert transitions as ``(index in batch, event)``.
    """

    slots: Slots
    status: npt.NDArray[np.int8]  # SCORED, FIRST, DUPLICATE, LATE
    expected: F64  # [n, F], NaN where there was no prediction
    error: F64
    score: F64
    alert: Bools
    warming_up: Bools
    reset: Bools
    events: list[tuple[int, AlertEvent]]
    waves: list[int] = field(default_factory=list)  # readings per engine step, for metrics

    @classmethod
    def empty(cls, n: int, features: int, slots: Slots) -> Scored:
        return cls(
            slots=slots,
            status=np.full(n, FIRST, dtype=np.int8),
            expected=np.full((n, features), np.nan),
            error=np.full(n, np.nan),
            score=np.full(n, np.nan),
            alert=np.zeros(n, dtype=bool),
            warming_up=np.zeros(n, dtype=bool),
            reset=np.zeros(n, dtype=bool),
            events=[],
        )
