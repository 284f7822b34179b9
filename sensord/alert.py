"""The alert lifecycle: decisions per sample in, raised/cleared events out.

Separate from scoring on purpose: a detector says whether one sample is anomalous; the
lifecycle decides when that becomes an alert an operator sees. An alert is raised after
``raise_after`` consecutive anomalous samples (and not within ``cooldown_s`` of the last
clear), and cleared after ``clear_after`` consecutive samples scoring below
``threshold - hysteresis``. Streams still warming up never count as anomalous.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from sensord.state import ColumnSpec, Slots, StateTable

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
ALERT_ID_NAMESPACE = uuid.UUID("6f1c7a52-3d0e-4b8e-9a57-5e6a3b1f0c11")


class Transition(IntEnum):
    NONE = 0
    RAISED = 1
    CLEARED = 2


@dataclass(frozen=True)
class AlertPolicy:
    """When decisions become alerts."""

    raise_after: int = 1
    clear_after: int = 5
    hysteresis: float = 0.1
    cooldown_s: float = 0.0
    warmup: int = 10

    def __post_init__(self) -> None:
        if self.raise_after < 1 or self.clear_after < 1:
            raise ValueError("raise_after and clear_after must be >= 1")
        if not 0.0 <= self.hysteresis < 1.0 or self.cooldown_s < 0 or self.warmup < 0:
            raise ValueError("hysteresis must be in [0, 1), cooldown_s and warmup >= 0")


ALERT_COLUMNS: dict[str, ColumnSpec] = {
    "alert_active": ColumnSpec(np.bool_, (), False),
    "anomalous_run": ColumnSpec(np.int64),
    "normal_run": ColumnSpec(np.int64),
    "cooldown_until": ColumnSpec(np.float64, (), -np.inf),
    "raised_ts": ColumnSpec(np.float64, (), np.nan),
    "peak_score": ColumnSpec(np.float64, (), np.nan),
    "alerts_raised": ColumnSpec(np.int64),
}


def advance(
    table: StateTable,
    policy: AlertPolicy,
    slots: Slots,
    *,
    ts: F64,
    scores: F64,
    anomalous: Bools,
    threshold: float,
) -> npt.NDArray[np.int8]:
    """Advance the lifecycle of these streams by one sample each; return their transitions.

    ``anomalous`` is the detector's decision with warm-up already applied; NaN scores (no
    prediction yet) neither raise nor clear.
    """
    calm = scores < threshold - policy.hysteresis
    anomalous_run = np.where(anomalous, table["anomalous_run"][slots] + 1, 0)
    normal_run = np.where(calm, table["normal_run"][slots] + 1, 0)
    active = table["alert_active"][slots].astype(bool)

    cooled = ts >= table["cooldown_until"][slots]
    raised = (~active) & (anomalous_run >= policy.raise_after) & cooled
    cleared = active & (normal_run >= policy.clear_after)

    peak = table["peak_score"][slots]
    peak = np.where(raised, scores, np.where(active, np.fmax(peak, scores), peak))
    table["peak_score"][slots] = peak
    table["raised_ts"][slots] = np.where(raised, ts, table["raised_ts"][slots])
    table["alerts_raised"][slots] += raised
    table["cooldown_until"][slots] = np.where(
        cleared, ts + policy.cooldown_s, table["cooldown_until"][slots]
    )
    table["alert_active"][slots] = (active | raised) & ~cleared
    table["anomalous_run"][slots] = np.where(cleared, 0, anomalous_run)
    table["normal_run"][slots] = np.where(raised, 0, normal_run)

    transitions = np.zeros(len(slots), dtype=np.int8)
    transitions[raised] = Transition.RAISED
    transitions[cleared] = Transition.CLEARED
    return transitions


@dataclass(frozen=True)
class AlertEvent:
    """An alert raised or cleared for one stream."""

    event: str  # "raised" | "cleared"
    alert_id: str
    stream: str
    ts: float
    raised_ts: float
    values: tuple[float, ...]
    expected: tuple[float, ...]
    error: float
    score: float
    peak_score: float
    threshold: float
    severity: str
    model: str
    model_version: str


def alert_id(model: str, stream: str, raised_ts: float) -> str:
    """A stable id: the same alert (model, stream, time raised) always gets the same id."""
    return str(uuid.uuid5(ALERT_ID_NAMESPACE, f"{model}|{stream}|{raised_ts:.6f}"))


def severity(score: float, threshold: float) -> str:
    """``critical`` past halfway from the threshold to 1, else ``warning``."""
    return "critical" if score >= (1.0 + threshold) / 2 else "warning"
