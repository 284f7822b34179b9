"""The pure core: samples in, scored outcomes and alert events out.

No I/O, no clock, no globals: the daemon and ``sensord replay`` both drive this same code, so
what replay shows offline is what the daemon would do online. One ``Pipeline`` serves one
bundle; ``process`` takes a micro-batch, splits it into waves and runs one batched engine
step per wave.

Per sample, in order: drop it if it is not after the stream's last timestamp (duplicate or
late); reset the stream's LSTM state if the gap since its last sample exceeds ``max_gap_s``;
then step.py: compare it with the prediction made at the previous step (the error) and step
the LSTM to predict the next sample (predict); score it and advance the alert lifecycle
(judge); write the outcome and any alert event (emit).

The state table holds the core's columns (the model's, the detector's, the alert
lifecycle's, the arrival bookkeeping below) and those the edges ``register``: what the
daemon's publisher last said of each stream is its own, not the core's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64
from sensord.core.alert import ALERT_COLUMNS, AlertEvent, AlertPolicy, accept, driver_columns
from sensord.core.bundle import Bundle
from sensord.core.compiled.path import CompiledPath
from sensord.core.detect import Detector, DetectorContext, DetectorSettings, make_detector
from sensord.core.detect.composite import ChannelDetector
from sensord.core.detect.range import start_from_training
from sensord.core.engine import StepEngine
from sensord.core.gaps import GAP_COLUMNS
from sensord.core.heads import horizon_columns
from sensord.core.nodata import NODATA_COLUMNS
from sensord.core.sample import DUPLICATE, LATE, Counters, Outcome, Sample, Scored, outcomes
from sensord.core.state import ColumnSpec, Slots, StateTable
from sensord.core.step import emit, judge, predict, split_waves
from sensord.core.swap import carry_over, latest, recent_columns

# What makes a pipeline's detector for a bundle: the channels detector, or (benchmarks only)
# a baseline measured against it; kept across engine swaps.
DetectorFactory = Callable[[DetectorContext, DetectorSettings], Detector]

# When each stream was last heard from (receive time: idle eviction, nodata.py), its usual
# period, and its longest recent step in its own time (gaps.py; the daemon's reorder stage
# reads it): the core learns them as it steps a stream, the edges read them.
ARRIVAL_COLUMNS = {
    "last_received": ColumnSpec(np.float64, (), -np.inf),
    **NODATA_COLUMNS,
    **GAP_COLUMNS,
}


@dataclass(frozen=True)
class PipelineSettings:
    """Per-route behaviour of the core."""

    detector: DetectorSettings = field(default_factory=DetectorSettings)
    alerts: AlertPolicy = field(default_factory=AlertPolicy)
    max_gap_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_gap_s is not None and self.max_gap_s <= 0:
            raise ValueError(f"max_gap_s {self.max_gap_s} must be > 0 (or None: never reset)")


class Pipeline:
    """The core for one bundle: per-stream state, detector and alert lifecycle."""

    def __init__(
        self,
        engine: StepEngine,
        settings: PipelineSettings | None = None,
        *,
        detector_factory: DetectorFactory = make_detector,
        compiled: bool | None = None,
    ) -> None:
        self.engine = engine
        self.bundle: Bundle = engine.bundle
        self.settings = settings or PipelineSettings()
        self.detector_factory = detector_factory
        self.detector: Detector = detector_factory(
            DetectorContext.of(self.bundle.manifest), self.settings.detector
        )
        self._registered: dict[str, ColumnSpec] = {}
        self.table = self.new_table()
        self.counters = Counters()
        # The compiled path (core/compiled/) for the product's detector, unless told not
        # to (None: wherever it applies); the numpy reference for the baselines.
        self._use_compiled = compiled
        self.path = self._compiled_path()

    def new_table(self) -> StateTable:
        """An empty state table with the columns this pipeline's parts keep, and those the
        edges registered."""
        return StateTable(
            layers=self.engine.layers,
            hidden=self.engine.hidden,
            features=self.engine.features,
            extra={
                **self.detector.columns(),
                **ALERT_COLUMNS,
                **driver_columns(self.engine.features),
                **ARRIVAL_COLUMNS,
                **recent_columns(self.engine.features),
                **horizon_columns(self.engine),
                **self._registered,
            },
        )

    def use_detector(self, factory: DetectorFactory) -> None:
        """Score with the detector ``factory`` makes from now on, also after an engine swap
        (a benchmark's baseline on a daemon's route). Before anything is scored: the state
        table starts again with its columns, and the compiled path runs only for the
        product's detector."""
        self.detector_factory = factory
        self.detector = factory(DetectorContext.of(self.bundle.manifest), self.settings.detector)
        self.table = self.new_table()
        self.path = self._compiled_path()

    def register(self, columns: Mapping[str, ColumnSpec]) -> None:
        """Keep these columns per stream too: what an edge remembers of each stream (the
        daemon's publisher: what it last published). In the state table they are
        snapshotted, handed over and forgotten with their stream; every new table has them.
        Register before restoring a snapshot, or its values of them are not loaded."""
        self.table.add(columns)
        self._registered.update(columns)

    def process(self, samples: Sequence[Sample]) -> list[Outcome]:
        """Run a micro-batch through the core; outcomes come back in the samples' order."""
        if not samples:
            return []
        scored = self.process_batch(
            [s.stream for s in samples],
            np.fromiter((s.ts for s in samples), dtype=np.float64, count=len(samples)),
            np.stack([s.values for s in samples]).astype(np.float64, copy=False),
            np.fromiter((s.received for s in samples), dtype=np.float64, count=len(samples)),
        )
        return outcomes(samples, scored)

    def process_batch(
        self, streams: Sequence[str], ts: F64, values: F64, received: F64 | None = None
    ) -> Scored:
        """The columnar core: ``values[n, F]`` of ``streams[n]`` at ``ts[n]`` in, one
        entry per sample out, in the batch's order. ``received`` (NaN: use ``ts``) is when
        the daemon got each reading, for idle eviction."""
        n = len(streams)
        if received is None:
            received = np.full(n, np.nan)
        slots, new = self.table.lookup(streams)
        if new.any():
            self._start_streams(streams, slots, new)
        if self.path is not None:
            return self.path.process(
                self.table,
                self.engine,
                self.counters,
                slots=slots,
                streams=streams,
                ts=np.ascontiguousarray(ts, dtype=np.float64),
                values=np.ascontiguousarray(values, dtype=np.float64),
                received=np.ascontiguousarray(received, dtype=np.float64),
                max_gap_s=self.settings.max_gap_s,
            )
        out = Scored.empty(n, self.engine.features, slots)
        for wave in split_waves(slots):
            out.waves.append(len(wave))
            self._step_wave(
                out,
                wave,
                streams=streams,
                ts=ts[wave],
                values=values[wave],
                received=received[wave],
            )
        out.events.sort(key=lambda item: item[0])
        return out

    def _step_wave(
        self,
        out: Scored,
        index: Slots,
        *,
        streams: Sequence[str],
        ts: F64,
        values: F64,
        received: F64,
    ) -> None:
        slots = out.slots[index]
        last = self.table["last_ts"][slots]
        late, duplicate = ts < last, ts == last
        keep = ~(late | duplicate)
        if not keep.all():
            dropped = ~keep
            out.status[index[dropped]] = np.where(late[dropped], LATE, DUPLICATE)
            out.alert[index[dropped]] = self.table["alert_active"][slots[dropped]]
            self.counters.late += int(late.sum())
            self.counters.duplicate += int(duplicate.sum())
            index, slots, ts, values, received = (
                index[keep],
                slots[keep],
                ts[keep],
                values[keep],
                received[keep],
            )
        if index.size:
            self._step_kept(
                out, index, slots=slots, streams=streams, ts=ts, values=values, received=received
            )

    def _start_streams(
        self, streams: Sequence[str], slots: Slots, new: npt.NDArray[np.bool_]
    ) -> None:
        manifest = self.bundle.manifest
        for i in np.flatnonzero(new).tolist():
            scaling = manifest.stream_scaling.get(streams[i], manifest.scaling)
            self.table["center"][slots[i]] = scaling.center
            self.table["scale"][slots[i]] = scaling.scale
            # Only the bundle knows what training saw of this kind of stream.
            start_from_training(self.table, int(slots[i]), scaling, manifest)
        self.detector.start(self.table, slots[new])

    def _step_kept(
        self,
        out: Scored,
        index: Slots,
        *,
        slots: Slots,
        streams: Sequence[str],
        ts: F64,
        values: F64,
        received: F64,
    ) -> None:
        """Step the wave's samples that are kept: predict, judge, emit (step.py)."""
        table = self.table
        reset = self._reset_after_gap(slots, ts)
        predicted = predict(table, self.engine, slots, ts=ts, values=values, received=received)
        judged = judge(
            table, self.detector, self.settings.alerts, slots, ts=ts, predicted=predicted
        )
        self.counters.count(predicted.has_prediction, reset, judged.transitions)
        emit(
            out,
            index,
            slots,
            table=table,
            manifest=self.bundle.manifest,
            threshold=self.detector.threshold,
            streams=streams,
            ts=ts,
            values=values,
            reset=reset,
            predicted=predicted,
            judged=judged,
        )

    def accept(self, stream: str, now: float) -> AlertEvent | None:
        """An operator's verdict that the stream's active alert is its new normal: clear
        the alert (reason ``accepted``, alert.py) and have the detector learn the stream's
        normal again from here. None when the stream has no active alert."""
        slot = self.table.slot_of.get(stream)
        if slot is None:
            return None
        event = accept(
            self.table,
            self.settings.alerts,
            slot,
            manifest=self.bundle.manifest,
            threshold=self.detector.threshold,
            values=latest(self.table, slot),
        )
        if event is not None:
            self.detector.forget_normal(self.table, np.asarray([slot], dtype=np.intp))
            self.counters.cleared += 1
        return event

    def evict_idle(self, now: float, ttl_s: float) -> list[str]:
        """Forget streams not heard from since ``now - ttl_s``; return their ids."""
        idle_slots = np.flatnonzero(self.table["last_received"] < now - ttl_s)
        idle = [s for s in (self.table.stream_of[slot] for slot in idle_slots) if s is not None]
        for stream in idle:
            self.table.release(stream)
        return idle

    def replace_engine(self, engine: StepEngine) -> bool:
        """Swap in a new bundle's engine; keep stream state if the shapes match.

        Returns True if state was kept: then each stream takes the new bundle's scaling and
        its LSTM state is rebuilt by the new graph from its recent readings (swap.py), while
        its step count, detector statistics and alert state go on. With other shapes the
        state cannot carry over, so every stream starts afresh (and warms up again).
        """
        same = _shapes(engine) == _shapes(self.engine)
        old = self.bundle.manifest
        self.engine, self.bundle = engine, engine.bundle
        self.detector = self.detector_factory(
            DetectorContext.of(self.bundle.manifest), self.settings.detector
        )
        fresh = self.new_table()
        # The detector's columns follow the bundle too (its time-of-day slots come with the
        # time features): a table laid out for the old one cannot be stepped by the new.
        same = same and _layout(fresh) == _layout(self.table)
        if not same:
            self.table = fresh
        elif self.bundle.manifest != old:  # (the same bundle again: nothing to refit)
            carry_over(self.table, old, engine)
        self.path = self._compiled_path()
        return same

    def _compiled_path(self) -> CompiledPath | None:
        """The compiled path for this detector, if it has one and it is wanted."""
        wanted = self._use_compiled is not False
        if not wanted or type(self.detector) is not ChannelDetector:
            if self._use_compiled:
                raise ValueError(f"no compiled path for the {self.detector.kind} detector")
            return None
        path = CompiledPath(
            self.detector,
            self.settings.alerts,
            self.bundle.manifest,
            self.engine.cross,
            self.engine.horizon,
        )
        path.warm(self.table, self.engine)
        return path

    def _reset_after_gap(self, slots: Slots, ts: F64) -> npt.NDArray[np.bool_]:
        if self.settings.max_gap_s is None:
            return np.zeros(len(slots), dtype=bool)
        last = self.table["last_ts"][slots]
        reset: npt.NDArray[np.bool_] = np.isfinite(last) & (ts - last > self.settings.max_gap_s)
        if reset.any():
            model = ("h", "c", "prediction", "spread", "ahead", "steps")
            self.table.clear(slots[reset], (*model, "recent_values", "recent_ts"))
            self.detector.restart(self.table, slots[reset])
        return reset


def _shapes(engine: StepEngine) -> tuple[int, int, int, int]:
    """What a state table's shapes depend on: features, layers, hidden size, look ahead."""
    ahead = 0 if engine.horizon is None else engine.horizon.steps
    return engine.features, engine.layers, engine.hidden, ahead


def _layout(table: StateTable) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each column's dtype and shape per stream."""
    return {name: (np.dtype(spec.dtype).str, spec.shape) for name, spec in table.specs.items()}
