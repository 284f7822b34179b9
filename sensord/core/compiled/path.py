"""The compiled path's Python side: what a pipeline's batch becomes for the kernel.

Per batch: the streams' readings in stream order (``order``); which are kept (not late, not
a duplicate) and which reset their stream after a gap (``admit``, compiled too); the
engine's runs, one per length of a stream's queued readings (``x[T, B, I]``: a lone reading
is T = 1, a replayed file one sequence); then the kernel; then the few alert events. The
numpy reference (step.py) is what this must agree with, reading for reading."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord.arrays import F32, F64, Bools
from sensord.core.alert import AlertPolicy, Transition, alert_event
from sensord.core.bundle import Manifest
from sensord.core.compiled import kernel
from sensord.core.compiled.columns import GROUPS, Columns, Outputs, stand_in, work
from sensord.core.compiled.maths import compiled
from sensord.core.compiled.settings import (
    LEARNING_NORMAL,
    channel_table,
    settings_of,
    tail_spec,
)
from sensord.core.detect.composite import ChannelDetector
from sensord.core.engine import CrossHead, HorizonHead, SequenceResult, StepEngine
from sensord.core.sample import Counters, Scored
from sensord.core.state import Slots, StateTable
from sensord.core.transform import forward, time_features

KEPT = 0
# The kernel's tally of a batch (kernel.TALLY's order), into the pipeline's counters.
TALLY = 8
RAISED_AT = 5


def _count(counters: Counters, tally: npt.NDArray[np.int64]) -> None:
    late, duplicate, scored, first, resets, raised, updated, cleared = tally.tolist()
    counters.late += late
    counters.duplicate += duplicate
    counters.scored += scored
    counters.first += first
    counters.resets += resets
    counters.raised += raised
    counters.updated += updated
    counters.cleared += cleared


class CompiledPath:
    """The kernel's settings for one pipeline's detector and alert policy."""

    def __init__(
        self,
        detector: ChannelDetector,
        policy: AlertPolicy,
        manifest: Manifest,
        cross: CrossHead | None = None,
        horizon: HorizonHead | None = None,
    ) -> None:
        self.detector = detector
        self.settings = settings_of(detector, policy, manifest.transform)
        self.channels = channel_table(detector)
        self.spec = tail_spec(detector)
        self.manifest = manifest
        self._columns: Columns | None = None
        self._entry: Callable[..., None] | None = None
        # Scratch for one reading at a time (the kernel runs in one thread at a time).
        heads = None if cross is None else (cross.weights, cross.gain)
        gain = None if horizon is None else horizon.gain
        self._work = work(
            len(manifest.features), detector.tail.width, len(self.channels), heads, gain
        )

    def columns(self, table: StateTable) -> Columns:
        """The table's arrays the kernel takes, by part (stand-ins for a channel that is
        off); made again only when the table's arrays are (it grew, or was loaded: every
        array is new then, so one held array that is no longer the table's tells)."""
        if self._columns is not None and self._columns.core.steps is table.columns["steps"]:
            return self._columns
        found: dict[str, Any] = {}
        for name, kind in COLUMN_TYPES.items():
            column = table.columns.get(name)
            found[name] = column if column is not None else stand_in(*kind)
        found["tail"] = table.columns[f"tail_{self.detector.tail.name}"]
        found["tail_counts"] = table.columns[f"tail_{self.detector.tail.name}_counts"]
        self._columns = Columns._make(
            group._make(found[f] for f in group._fields) for group in GROUPS
        )
        return self._columns

    def warm(self, table: StateTable, engine: StepEngine) -> None:
        """Compile the kernels now (numba loads them from its disk cache if an earlier run
        compiled them), so that no reading waits for a compiler: a batch of none."""
        nothing = np.zeros(0)
        self.process(
            table,
            engine,
            Counters(),
            slots=np.zeros(0, dtype=np.intp),
            streams=[],
            ts=nothing,
            values=np.zeros((0, len(self.manifest.features))),
            received=nothing,
            max_gap_s=None,
        )

    def process(
        self,
        table: StateTable,
        engine: StepEngine,
        counters: Counters,
        *,
        slots: Slots,
        streams: Sequence[str],
        ts: F64,
        values: F64,
        received: F64,
        max_gap_s: float | None,
    ) -> Scored:
        """Step a batch whose streams have their slots already (new ones started)."""
        n = len(slots)
        # (Training's replay of its rows turns this on after the pipeline was built.)
        self.settings[LEARNING_NORMAL] = float(self.detector.learning_normal)
        order = np.argsort(slots, kind="stable") if n > 1 else np.zeros(n, dtype=np.intp)
        status, reset = np.zeros(n, dtype=np.int8), np.zeros(n, dtype=bool)
        gap = math.nan if max_gap_s is None else max_gap_s
        admit(order, slots, ts, table["last_ts"], gap, status, reset)
        scaled = forward(
            self.manifest.transform, (values - table["center"][slots]) / table["scale"][slots]
        )
        stepped = order[status[order] == KEPT] if status.any() else order
        out = Scored.empty(n, values.shape[1], slots)
        pred_after, spread_after, ahead_after = _run_engine(
            table, engine, stepped, slots, ts, scaled, reset, out
        )
        outputs = self._outputs(out, reset)
        tally = np.zeros(TALLY, dtype=np.int64)
        self._run(
            self.columns(table),
            self.settings,
            self.channels,
            self.spec,
            order,
            status,
            reset,
            slots,
            ts,
            values,
            scaled,
            received,
            pred_after,
            spread_after,
            ahead_after,
            outputs,
            self._work,
            tally,
        )
        _count(counters, tally)
        if tally[RAISED_AT:].any():
            self._events(out, outputs, streams, ts, values)
        return out

    def _run(self, *args: Any) -> None:
        """The kernel, called past numba's dispatcher once its machine code is known: the
        dispatcher types all 90 arrays on every call (25 us), while the arguments' types
        never change here (every array is made C-contiguous, of the same dtypes)."""
        if self._entry is None:
            dispatcher: Any = kernel.run  # (numba's Dispatcher, typed as the function it runs)
            signature = tuple(dispatcher.typeof_pyval(a) for a in args)
            dispatcher(*args)
            self._entry = dispatcher.overloads[signature].entry_point
            return
        self._entry(*args)

    def _outputs(self, out: Scored, reset: Bools) -> Outputs:
        """The kernel's outputs: the batch's columns, and what its events need."""
        n, n_f = out.expected.shape
        out.reset[:] = reset
        return Outputs(
            out.status,
            out.expected,
            out.error,
            out.score,
            out.alert,
            out.warming_up,
            out.reset,
            np.zeros(n, dtype=np.int8),
            np.full(n, -1, dtype=np.int8),
            np.zeros((n, n_f)),
            np.empty(n),
            np.empty(n),
        )

    def _events(
        self, out: Scored, outputs: Outputs, streams: Sequence[str], ts: F64, values: F64
    ) -> None:
        """An event per transition, in the batch's order."""
        for i in np.flatnonzero(outputs.transition).tolist():
            event = alert_event(
                None,
                self.manifest,
                self.detector.threshold,
                streams[i],
                int(out.slots[i]),
                ts=float(ts[i]),
                values=values[i],
                expected=out.expected[i],
                error=float(out.error[i]),
                score=float(out.score[i]),
                transition=Transition(outputs.transition[i]),
                channel=int(outputs.channel[i]),
                shares=outputs.shares[i],
                raised=(float(outputs.raised_ts[i]), float(outputs.peak[i])),
            )
            out.events.append((i, event))


LATE_CODE, DUPLICATE_CODE = 1, 2


# The kernel's columns by name: dimensions and dtype (a stand-in's when one is absent).
def _types(names: str, ndim: int, dtype: Any) -> dict[str, tuple[int, Any]]:
    return {name: (ndim, dtype) for name in names.split()}


COLUMN_TYPES: dict[str, tuple[int, Any]] = {
    **_types("prediction spread", 2, np.float32),
    **_types("ahead", 3, np.float32),
    **_types(
        "last_ts log_long_step last_received log_period error_n sustained_n context_ac_n "
        "context_corr_n cooldown_until raised_ts peak_score recent_peak",
        1,
        np.float64,
    ),
    **_types(
        "center scale recent_ts error_var error_slot_n sustained_drift sustained_mean "
        "sustained_usual sustained_var context_level context_prev context_lag context_sq "
        "shift_mean seen_min seen_max",
        2,
        np.float64,
    ),
    **_types(
        "recent_values error_slot_var context_mean context_var context_n context_corr",
        3,
        np.float64,
    ),
    **_types(
        "steps intervals seen_n anomalous_run normal_run surprise_calm recent_age "
        "alert_updates alerts_raised",
        1,
        np.int64,
    ),
    **_types("alert_active", 1, np.bool_),
    **_types("alert_drivers", 2, np.bool_),
}


@compiled
def admit(
    order: npt.NDArray[np.intp],
    slots: Slots,
    ts: F64,
    last_ts: F64,
    max_gap_s: float,
    status: npt.NDArray[np.int8],
    reset: Bools,
) -> None:
    """Which readings are stepped (status KEPT) and which are late or duplicates, as
    pipeline.py's checks decide them one wave at a time; and which reset their stream after
    a gap longer than ``max_gap_s`` (NaN: never)."""
    previous, last = -1, -math.inf
    for i in order:
        s = slots[i]
        if s != previous:
            previous, last = s, last_ts[s]
        if ts[i] < last:
            status[i] = LATE_CODE
        elif ts[i] == last:
            status[i] = DUPLICATE_CODE
        else:
            reset[i] = (
                not math.isnan(max_gap_s) and math.isfinite(last) and ts[i] - last > max_gap_s
            )
            last = ts[i]


def _run_engine(
    table: StateTable,
    engine: StepEngine,
    stepped: npt.NDArray[np.intp],
    slots: Slots,
    ts: F64,
    scaled: F64,
    reset: Bools,
    out: Scored,
) -> tuple[F32, F32, F32]:
    """The model's prediction after each stepped reading (``stepped``: in stream order),
    and its spread and look ahead if it has those heads (else ``[n, 0]``: nothing for the
    kernel to copy, nothing allocated for a model without heads): each stream's readings
    since its last reset one sequence, the sequences of one length one engine run; every
    stream's last state into the table."""
    pred_after = np.zeros((len(slots), engine.features), dtype=np.float32)
    none = np.empty((len(slots), 0), dtype=np.float32)
    after = [pred_after, none, none]
    if stepped.size == 0:
        return pred_after, none, none
    inputs = _inputs(engine, scaled, ts)
    ordered = slots[stepped]
    starts = np.ones(len(stepped), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    if starts.all() and not reset.any():  # every stream once (live traffic): one step
        _run_once(table, engine, stepped, slots, inputs, after, out)
        return after[0], after[1], after[2]
    starts = np.flatnonzero(starts | reset[stepped])
    lengths = np.diff(starts, append=len(stepped))
    # A stream's last stepped reading ends the sequence whose state the table keeps. (The
    # states are written after every run: a stream reset in this batch has two sequences,
    # and the earlier one starts from the table's state as it was before the batch.)
    last_of_stream = np.zeros(len(slots), dtype=bool)
    last_of_stream[stepped[np.r_[starts[1:], len(stepped)] - 1]] = True
    last_of_stream[stepped[:-1]] &= ordered[1:] != ordered[:-1]
    finals: list[tuple[Slots, F32, F32]] = []
    for length in np.unique(lengths).tolist():
        chosen = starts[lengths == length]
        rows = stepped[chosen[None, :] + np.arange(length)[:, None]]  # [T, B]
        first = slots[rows[0]]
        h = np.ascontiguousarray(table["h"][first].transpose(1, 0, 2))
        c = np.ascontiguousarray(table["c"][first].transpose(1, 0, 2))
        fresh = reset[rows[0]]
        h[:, fresh], c[:, fresh] = 0.0, 0.0
        result = engine.run(np.ascontiguousarray(inputs[rows]), h, c)
        _keep(after, rows, result)
        out.waves.append(length * len(chosen))  # readings this engine call stepped
        final = np.flatnonzero(last_of_stream[rows[-1]])
        finals.append(
            (
                slots[rows[-1][final]],
                result.h.transpose(1, 0, 2)[final],
                result.c.transpose(1, 0, 2)[final],
            )
        )
    for kept, h_final, c_final in finals:
        table["h"][kept] = h_final
        table["c"][kept] = c_final
    return after[0], after[1], after[2]


def _inputs(engine: StepEngine, scaled: F64, ts: F64) -> F32:
    """The engine's inputs: the scaled readings, then their time features (if any)."""
    inputs = scaled.astype(np.float32)
    names = engine.bundle.manifest.time_features
    if names:
        inputs = np.concatenate([inputs, time_features(names, ts).astype(np.float32)], axis=1)
    return inputs


def _keep(after: list[F32], rows: npt.NDArray[np.intp], result: SequenceResult) -> None:
    """An engine run's outputs after each of its readings (``rows[T, B]``): the prediction,
    and the spread and look ahead where the model has those heads (their columns made at
    the first run that gives them)."""
    outputs = (result.predictions, result.spread, result.ahead)
    for k, got in enumerate(outputs):
        if got is None:
            continue
        if after[k].shape[1] == 0:
            after[k] = np.full_like(after[0], 1.0 if k == 1 else np.nan)
        after[k][rows] = got


def _run_once(
    table: StateTable,
    engine: StepEngine,
    stepped: npt.NDArray[np.intp],
    slots: Slots,
    inputs: F32,
    after: list[F32],
    out: Scored,
) -> None:
    """One step of streams that each have one reading here (and no reset)."""
    stepped_slots = slots[stepped]
    h = np.ascontiguousarray(table["h"][stepped_slots].transpose(1, 0, 2))
    c = np.ascontiguousarray(table["c"][stepped_slots].transpose(1, 0, 2))
    result = engine.run(inputs[stepped][None], h, c)
    _keep(after, stepped[None], result)
    table["h"][stepped_slots] = result.h.transpose(1, 0, 2)
    table["c"][stepped_slots] = result.c.transpose(1, 0, 2)
    out.waves.append(len(stepped))
