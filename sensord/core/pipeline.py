"""The pure core: samples in, scored outcomes and alert events out.

No I/O, no clock, no globals: the daemon and ``sensord replay`` both drive this same code, so
what replay shows offline is what the daemon would do online. One ``Pipeline`` serves one
bundle; ``process`` takes a micro-batch, splits it into waves and runs one batched engine
step per wave.

Per sample, in order: drop it if it is not after the stream's last timestamp (duplicate or
late); reset the stream's LSTM state if the gap since its last sample exceeds ``max_gap_s``;
compare it with the prediction made at the previous step (the error); step the LSTM to
predict the next sample; score the error; advance the alert lifecycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from sensord.core.alert import (
    ALERT_COLUMNS,
    AlertEvent,
    AlertPolicy,
    Transition,
    accept,
    advance,
    alert_event,
    drive,
    driver_columns,
    held_scores,
    trust,
)
from sensord.core.bundle import Bundle
from sensord.core.detect import (
    Detector,
    DetectorContext,
    DetectorSettings,
    Observation,
    make_detector,
)
from sensord.core.detect.range import range_columns
from sensord.core.engine import StepEngine
from sensord.core.gaps import GAP_COLUMNS, learn_step
from sensord.core.nodata import NODATA_COLUMNS, learn_period
from sensord.core.sample import (
    DUPLICATE,
    FIRST,
    LATE,
    SCORED,
    Counters,
    Outcome,
    Sample,
    Scored,
    outcomes,
)
from sensord.core.state import ColumnSpec, Slots, StateTable
from sensord.core.swap import RECENT, carry_over, recent_columns, remember
from sensord.core.timefeatures import time_features
from sensord.core.transform import forward, inverse
from sensord.core.wave import split_waves

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
# Kept for the edges: when the daemon last heard from a stream (idle eviction), the status
# it last published for it (so only changes are published), its usual period (nodata) and
# its longest recent step in its own time (the reorder stage).
EDGE_COLUMNS = {
    "last_received": ColumnSpec(np.float64, (), -np.inf),
    "published_status": ColumnSpec(np.int8, (), 0),
    # The published status's start (its reading's time) and when a state was last sent
    # (receive time), for refreshing the retained state with the latest score.
    "status_since": ColumnSpec(np.float64, (), np.nan),
    "state_sent_at": ColumnSpec(np.float64, (), -np.inf),
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

    def __init__(self, engine: StepEngine, settings: PipelineSettings | None = None) -> None:
        self.engine = engine
        self.bundle: Bundle = engine.bundle
        self.settings = settings or PipelineSettings()
        self.detector: Detector = make_detector(
            DetectorContext.of(self.bundle.manifest), self.settings.detector
        )
        self.table = self.new_table()
        self.counters = Counters()
        self._transform = self.bundle.manifest.transform

    def new_table(self) -> StateTable:
        """An empty state table with the columns this pipeline's parts keep."""
        return StateTable(
            layers=self.engine.layers,
            hidden=self.engine.hidden,
            features=self.engine.features,
            extra={
                **self.detector.columns(),
                **ALERT_COLUMNS,
                **driver_columns(self.engine.features),
                **EDGE_COLUMNS,
                **range_columns(self.engine.features),
                **recent_columns(self.engine.features),
            },
        )

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
            if scaling.low is not None and scaling.high is not None:
                # The range rule starts from what training saw of this kind of stream.
                center, scale = np.asarray(scaling.center), np.asarray(scaling.scale)
                low, high = np.asarray(scaling.low), np.asarray(scaling.high)
                self.table["seen_min"][slots[i]] = forward(self._transform, (low - center) / scale)
                self.table["seen_max"][slots[i]] = forward(self._transform, (high - center) / scale)
                self.table["seen_n"][slots[i]] = self.bundle.manifest.training.rows
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
        table = self.table
        reset = self._reset_after_gap(slots, ts)
        center, scale = table["center"][slots], table["scale"][slots]
        scaled = forward(self._transform, (values - center) / scale)
        x = scaled.astype(np.float32)
        time_names = self.bundle.manifest.time_features
        inputs = (
            x
            if not time_names
            else np.concatenate([x, time_features(time_names, ts).astype(np.float32)], axis=1)
        )

        steps = table["steps"][slots]
        has_prediction = steps > 0
        predicted = table["prediction"][slots].astype(np.float64)
        deviations = scaled - predicted
        errors = np.sqrt(np.mean(deviations**2, axis=1))
        errors[~has_prediction] = np.nan

        h = np.ascontiguousarray(table["h"][slots].transpose(1, 0, 2))
        c = np.ascontiguousarray(table["c"][slots].transpose(1, 0, 2))
        result = self.engine.step(inputs, h, c)
        table["h"][slots] = result.h.transpose(1, 0, 2)
        table["c"][slots] = result.c.transpose(1, 0, 2)
        table["prediction"][slots] = result.prediction
        table["steps"][slots] = steps + 1
        remember(table, slots, steps, ts, values)  # for a new bundle to start from (swap.py)
        learn_step(table, slots, table["last_ts"][slots], ts)
        table["last_ts"][slots] = ts
        arrived = np.where(np.isnan(received), ts, received)
        learn_period(table, slots, table["last_received"][slots], arrived)
        table["last_received"][slots] = arrived

        n, f = len(slots), self.engine.features
        scores, surprise = np.full(n, np.nan), np.full(n, np.nan)
        # Each feature's own score, then the relation's: what an alert is held by (alert.py).
        features = np.full((n, f + 1), np.nan)
        channel = np.full(n, -1, dtype=np.int8)
        scored = np.flatnonzero(has_prediction)
        if scored.size:
            obs = Observation(values=scaled[scored], errors=deviations[scored], ts=ts[scored])
            assessment = self.detector.assess(table, slots[scored], obs)
            scores[scored], surprise[scored] = assessment.score, assessment.surprise
            channel[scored] = assessment.channel
            if assessment.features is None:  # one score for the sample: every feature's
                features[scored] = assessment.score[:, None]
            else:
                features[scored] = assessment.features
        threshold = self.detector.threshold
        calm_below = threshold - self.settings.alerts.hysteresis
        warm = steps >= self.settings.alerts.warmup
        transitions = advance(
            table,
            self.settings.alerts,
            slots,
            ts=ts,
            scores=scores,
            surprise=surprise,
            warm=warm,
            threshold=threshold,
            held=held_scores(table, slots, scores, features),
        )
        drive(table, slots, transitions, features, threshold=threshold, calm_below=calm_below)
        # Which features drove it: only for the samples that make an event (most make none).
        shares = np.zeros((n, f))
        eventful = np.flatnonzero((transitions != 0) & has_prediction)
        if eventful.size:
            shares[eventful] = assessment.shares(np.searchsorted(scored, eventful))
        if scored.size:
            trusted = trust(table, slots[scored], features[scored], calm_below)
            self.detector.learn(table, slots[scored], obs, assessment, trusted)
        adopted = transitions == int(Transition.ADOPTED)
        if adopted.any():
            self.detector.forget_normal(table, slots[adopted])
        expected = inverse(self._transform, predicted) * scale + center
        self._count(has_prediction, reset, transitions)
        out.status[index] = np.where(has_prediction, SCORED, FIRST)
        out.expected[index] = expected
        out.error[index] = errors
        out.score[index] = scores
        out.alert[index] = table["alert_active"][slots]
        out.warming_up[index] = ~warm
        out.reset[index] = reset
        for i in np.flatnonzero(transitions):
            out.events.append(
                (
                    int(index[i]),
                    alert_event(
                        self.table,
                        self.bundle.manifest,
                        self.detector.threshold,
                        streams[index[i]],
                        int(slots[i]),
                        ts=float(ts[i]),
                        values=values[i],
                        expected=expected[i],
                        error=float(errors[i]),
                        score=float(scores[i]),
                        transition=Transition(transitions[i]),
                        channel=int(channel[i]),
                        shares=shares[i],
                    ),
                )
            )

    def accept(self, stream: str, now: float) -> AlertEvent | None:
        """An operator's verdict that the stream's active alert is its new normal: clear
        the alert (reason ``accepted``) and have the detector learn the stream's normal again
        from here. None when the stream has no active alert."""
        slot = self.table.slot_of.get(stream)
        if slot is None or not self.table["alert_active"][slot]:
            return None
        table, slots = self.table, np.asarray([slot], dtype=np.intp)
        ts = float(table["last_ts"][slot])
        event = alert_event(
            self.table,
            self.bundle.manifest,
            self.detector.threshold,
            stream,
            slot,
            ts=ts,
            values=table["recent_values"][slot, (int(table["steps"][slot]) - 1) % RECENT],
            expected=np.full(self.engine.features, np.nan),
            error=float("nan"),
            score=float("nan"),
            transition=Transition.CLEARED,
            channel=-1,
            shares=np.zeros(self.engine.features),
        )
        accept(table, slot, ts, self.settings.alerts)
        self.detector.forget_normal(table, slots)
        self.counters.cleared += 1
        return replace(event, reason="accepted")

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
        same = (engine.features, engine.layers, engine.hidden) == (
            self.engine.features,
            self.engine.layers,
            self.engine.hidden,
        )
        old = self.bundle.manifest
        self.engine, self.bundle = engine, engine.bundle
        self._transform = self.bundle.manifest.transform
        self.detector = make_detector(
            DetectorContext.of(self.bundle.manifest), self.settings.detector
        )
        if not same:
            self.table = self.new_table()
        elif self.bundle.manifest != old:  # (the same bundle again: nothing to refit)
            carry_over(self.table, old, engine)
        return same

    def _reset_after_gap(self, slots: Slots, ts: F64) -> npt.NDArray[np.bool_]:
        if self.settings.max_gap_s is None:
            return np.zeros(len(slots), dtype=bool)
        last = self.table["last_ts"][slots]
        reset: npt.NDArray[np.bool_] = np.isfinite(last) & (ts - last > self.settings.max_gap_s)
        if reset.any():
            self.table.clear(
                slots[reset], ("h", "c", "prediction", "steps", "recent_values", "recent_ts")
            )
            self.detector.restart(self.table, slots[reset])
        return reset

    def _count(
        self,
        has_prediction: npt.NDArray[np.bool_],
        reset: npt.NDArray[np.bool_],
        transitions: npt.NDArray[np.int8],
    ) -> None:
        counters = self.counters
        scored = int(np.count_nonzero(has_prediction))
        counters.scored += scored
        counters.first += len(has_prediction) - scored
        counters.resets += int(np.count_nonzero(reset))
        if transitions.any():
            counters.raised += int(np.count_nonzero(transitions == int(Transition.RAISED)))
            counters.updated += int(np.count_nonzero(transitions == int(Transition.UPDATED)))
            counters.cleared += int(
                np.count_nonzero(
                    (transitions == int(Transition.CLEARED))
                    | (transitions == int(Transition.ADOPTED))
                )
            )
