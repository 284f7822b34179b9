"""What goes into the core and what comes out of it.

A ``Sample`` is one reading of one stream; ``Scored`` is what the core did with a batch, as
columns (the daemon's hot path reads those, making no object per reading); ``Outcome`` is
the same for one sample, for replay and the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64, Bools
from sensord.core.alert import AlertEvent, Transition
from sensord.core.state import Slots
from sensord.figures import counter


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
    waves: list[int] = field(default_factory=list)  # readings per engine call, for metrics

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


def outcomes(samples: Sequence[Sample], scored: Scored) -> list[Outcome]:
    """A batch's columns as one ``Outcome`` per sample, in the samples' order."""
    events = dict(scored.events)
    # (Columns to Python lists first: one conversion per column, not one per value.)
    columns = zip(
        scored.status.tolist(),
        scored.error.tolist(),
        scored.score.tolist(),
        scored.alert.tolist(),
        scored.warming_up.tolist(),
        scored.reset.tolist(),
        strict=True,
    )
    result = []
    for i, (sample, (code, error, score, alert, warming_up, reset)) in enumerate(
        zip(samples, columns, strict=True)
    ):
        status = STATUSES[code]
        result.append(
            Outcome(
                sample=sample,
                status=status,
                expected=scored.expected[i] if status is Status.SCORED else None,
                error=error,
                score=score,
                alert=alert,
                warming_up=warming_up,
                reset=reset,
                event=events.get(i),
            )
        )
    return result


@dataclass
class Counters:
    """Running totals, for metrics and summaries."""

    scored: int = counter(
        "sensord_readings_scored", "Readings compared with a prediction and scored."
    )
    first: int = counter(
        "sensord_readings_first",
        "First readings of new or reset streams (stepped, nothing to compare with).",
    )
    duplicate: int = counter(
        "sensord_readings_duplicate", "Readings dropped: same timestamp as the stream's last."
    )
    late: int = counter("sensord_readings_late", "Readings dropped: older than the stream's last.")
    resets: int = counter(
        "sensord_stream_resets", "Streams reset after a gap longer than max_gap_s."
    )
    raised: int = counter("sensord_alerts_raised", "Alerts raised.")
    updated: int = counter("sensord_alerts_updated", "New onsets inside alerts (updated events).")
    cleared: int = counter("sensord_alerts_cleared", "Alerts cleared.")

    def count(self, has_prediction: Bools, reset: Bools, transitions: npt.NDArray[np.int8]) -> None:
        """Count a wave's stepped samples: scored or first, the resets, the transitions."""
        scored = int(np.count_nonzero(has_prediction))
        self.scored += scored
        self.first += len(has_prediction) - scored
        self.resets += int(np.count_nonzero(reset))
        if transitions.any():
            self.raised += int(np.count_nonzero(transitions == int(Transition.RAISED)))
            self.updated += int(np.count_nonzero(transitions == int(Transition.UPDATED)))
            ended = (transitions == int(Transition.CLEARED)) | (
                transitions == int(Transition.ADOPTED)
            )
            self.cleared += int(np.count_nonzero(ended))
