"""What the kernel takes: a pipeline's state columns and its settings, as arrays.

numba takes a named tuple of arrays as one argument (typed in a few microseconds per call,
cheaper than as many positional arguments), so the state table's columns travel as
``Columns``, each field the table's own array (the kernel writes into them in place), and
a detector's constants as ``TailSpec`` and a float array (``Settings``' indices)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from sensord.arrays import F32, F64, Bools
from sensord.core.detect.histogram import EDGES

I64 = npt.NDArray[np.int64]


class CoreColumns(NamedTuple):
    """A stream's model and bookkeeping (step.py, swap.py, gaps.py, nodata.py)."""

    prediction: F32
    spread: F32
    ahead: F32  # [S, K, F] the horizon head's ring (heads.py)
    center: F64
    scale: F64
    last_ts: F64
    steps: I64
    recent_values: F64
    recent_ts: F64
    log_long_step: F64
    last_received: F64
    log_period: F64
    intervals: I64


class ScaleColumns(NamedTuple):
    error_var: F64
    error_n: F64
    error_slot_var: F64
    error_slot_n: F64


class SustainedColumns(NamedTuple):
    sustained_drift: F64
    sustained_mean: F64
    sustained_usual: F64
    sustained_var: F64
    sustained_n: F64


class ContextColumns(NamedTuple):
    context_level: F64
    context_mean: F64
    context_var: F64
    context_n: F64
    context_prev: F64
    context_lag: F64
    context_sq: F64
    context_ac_n: F64
    context_corr: F64
    context_corr_n: F64


class ShiftColumns(NamedTuple):
    shift_mean: F64


class RangeColumns(NamedTuple):
    seen_min: F64
    seen_max: F64
    seen_n: I64


class TailColumns(NamedTuple):
    tail: F64
    tail_counts: npt.NDArray[np.float32]


class AlertColumns(NamedTuple):
    alert_active: Bools
    anomalous_run: I64
    normal_run: I64
    surprise_calm: I64
    cooldown_until: F64
    raised_ts: F64
    peak_score: F64
    recent_peak: F64
    recent_age: I64
    alert_updates: I64
    alerts_raised: I64
    alert_drivers: Bools


class Columns(NamedTuple):
    """The state table's columns the kernel reads and writes (detect/, alert.py, step.py
    declare them; a channel that is off gets empty stand-ins of the same types), by the
    part that keeps them: each compiled function takes only its part's (numba compiles a
    function per argument type, and one taking all 48 arrays took a second to compile)."""

    core: CoreColumns
    scale: ScaleColumns
    sustained: SustainedColumns
    context: ContextColumns
    shift: ShiftColumns
    range: RangeColumns
    tail: TailColumns
    alert: AlertColumns


GROUPS = (
    CoreColumns,
    ScaleColumns,
    SustainedColumns,
    ContextColumns,
    ShiftColumns,
    RangeColumns,
    TailColumns,
    AlertColumns,
)


class TailSpec(NamedTuple):
    """A detector's tail constants, per statistic (detect/tail.py ``Tail``)."""

    lowest: F64  # [W] a firm statistic's prior threshold (0: none)
    floor: F64  # [W]
    shape: F64  # [W]
    learnt: bool  # new streams started from learnt tails
    learnt_counts: F64  # [W, EDGES] (empty without)
    learnt_values: F64  # [W]
    learnt_heavy: F64  # [W] how far the learnt start contradicts the light fit
    edge_values: F64  # [EDGES] the histogram's edges


# Stand-ins for the columns of a channel that is off, by their dimensions and type.
def stand_in(ndim: int, dtype: Any = np.float64) -> npt.NDArray[Any]:
    return np.zeros((0,) * ndim, dtype=dtype)


class Outputs(NamedTuple):
    """What the kernel says of each reading of a batch, at its place in the batch (the
    first seven are the batch's ``Scored`` columns)."""

    status: npt.NDArray[np.int8]
    expected: F64  # [n, F]
    error: F64
    score: F64
    alert: Bools
    warming_up: Bools
    reset: Bools
    transition: npt.NDArray[np.int8]
    channel: npt.NDArray[np.int8]
    shares: F64  # [n, F] for the readings that made an event
    raised_ts: F64  # the alert's, after this reading (for its event)
    peak: F64


class Work(NamedTuple):
    """One reading's intermediate values, allocated once per batch."""

    dev: F64  # [F] scaled value minus the prediction
    var: F64  # [F] the error variance it is standardised by
    z: F64  # [F]
    stat: F64  # [W] the calibrated statistics, side by side
    lp: F64  # [W] their log probabilities
    extremes: F64  # [F]
    drift: F64  # [F] the sustained channel's keep
    mean: F64  # [F]
    context: F64  # [6, F] the contextual channel's keep, and room to solve
    square: F64  # [F, F] room to solve the contextual channel's correlation
    edges: F64  # [2, EDGES] room to refit a tail
    shift: F64  # [F]
    least: F64  # [channels] each channel's most surprised column
    features: F64  # [F + 1]
    trust: F64  # [F + 1]
    learn: F64  # [W] the statistics the tail learns
    flagged: Bools  # [W] those anomalous by themselves
    weights: F64  # [F]
    cross_weights: F64  # [F, F] the virtual-sensor head's (heads.py); [0, 0] without it
    cross_gain: F64  # [F]; [0] without it
    explained: F64  # [F] room for the explained-away errors
    horizon_gain: F64  # [F] the horizon head's (heads.py); [0] without it


def work(
    features: int,
    width: int,
    channels: int,
    cross: tuple[F64, F64] | None = None,
    horizon_gain: F64 | None = None,
) -> Work:
    """Scratch for one reading, and the heads' constants: the virtual sensor's weights and
    gain, the horizon's gain (if the bundle has them)."""
    f = features
    cross_weights, cross_gain = cross if cross is not None else (np.zeros((0, 0)), np.zeros(0))
    return Work(
        dev=np.zeros(f),
        var=np.zeros(f),
        z=np.zeros(f),
        stat=np.zeros(width),
        lp=np.zeros(width),
        extremes=np.zeros(f),
        drift=np.zeros(f),
        mean=np.zeros(f),
        context=np.zeros((6, f)),
        square=np.zeros((f, f)),
        edges=np.zeros((2, EDGES)),
        shift=np.zeros(f),
        least=np.zeros(channels),
        features=np.zeros(f + 1),
        trust=np.zeros(f + 1),
        learn=np.zeros(width),
        flagged=np.zeros(width, dtype=bool),
        weights=np.zeros(f),
        cross_weights=np.ascontiguousarray(cross_weights, dtype=np.float64),
        cross_gain=np.ascontiguousarray(cross_gain, dtype=np.float64),
        explained=np.zeros(f),
        horizon_gain=np.zeros(0) if horizon_gain is None else horizon_gain.astype(np.float64),
    )
