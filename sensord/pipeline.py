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

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from sensord.alert import ALERT_COLUMNS, AlertPolicy, Transition, advance
from sensord.bundle import Bundle
from sensord.detect import Detector, DetectorSettings, make_detector
from sensord.detect.range import out_of_range, range_columns, widen
from sensord.engine import Engine
from sensord.state import ColumnSpec, Slots, StateTable
from sensord.timefeatures import time_features
from sensord.transform import forward, inverse
from sensord.wave import split_waves

F64 = npt.NDArray[np.float64]
# Kept for the edges: when the daemon last heard from a stream (for idle eviction).
EDGE_COLUMNS = {"last_received": ColumnSpec(np.float64, (), -np.inf)}
ALERT_ID_NAMESPACE = uuid.UUID("6f1c7a52-3d0e-4b8e-9a57-5e6a3b1f0c11")


class Status(StrEnum):
    SCORED = "scored"  # compared with a prediction, scored, stepped
    FIRST = "first"  # first sample of a new or reset stream: stepped, nothing to compare
    DUPLICATE = "duplicate"  # same timestamp as the stream's last sample: dropped
    LATE = "late"  # older than the stream's last sample: dropped


@dataclass(frozen=True)
class Sample:
    """One reading of one stream: epoch seconds and raw feature values in bundle order."""

    stream: str
    ts: float
    values: F64
    received: float = float("nan")  # when the daemon got it (idle eviction); default: ts


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


@dataclass(frozen=True)
class PipelineSettings:
    """Per-route behaviour of the core."""

    detector: DetectorSettings = field(default_factory=DetectorSettings)
    alerts: AlertPolicy = field(default_factory=AlertPolicy)
    max_gap_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_gap_s is not None and self.max_gap_s <= 0:
            raise ValueError(f"max_gap_s {self.max_gap_s} must be > 0 (or None: never reset)")


@dataclass
class Counters:
    """Running totals, for metrics and summaries."""

    scored: int = 0
    first: int = 0
    duplicate: int = 0
    late: int = 0
    resets: int = 0
    raised: int = 0
    cleared: int = 0


class Pipeline:
    """The core for one bundle: per-stream state, detector and alert lifecycle."""

    def __init__(self, engine: Engine, settings: PipelineSettings | None = None) -> None:
        self.engine = engine
        self.bundle: Bundle = engine.bundle
        self.settings = settings or PipelineSettings()
        self.detector: Detector = make_detector(
            self.bundle.manifest.calibration, self.settings.detector
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
                **EDGE_COLUMNS,
                **range_columns(self.engine.features),
            },
        )

    def process(self, samples: Sequence[Sample]) -> list[Outcome]:
        """Run a micro-batch through the core; outcomes come back in the samples' order."""
        outcomes: list[Outcome | None] = [None] * len(samples)
        for wave in split_waves([s.stream for s in samples]):
            for index, outcome in zip(
                wave, self._step_wave([samples[i] for i in wave]), strict=True
            ):
                outcomes[index] = outcome
        return [o for o in outcomes if o is not None]

    def _step_wave(self, wave: list[Sample]) -> list[Outcome]:
        slots, new = self.table.lookup(s.stream for s in wave)
        if new.any():
            self._start_streams(wave, slots, new)
        ts = np.fromiter((s.ts for s in wave), dtype=np.float64, count=len(wave))
        last = self.table["last_ts"][slots]
        late, duplicate = ts < last, ts == last
        keep = ~(late | duplicate)
        outcomes: list[Outcome | None] = [None] * len(wave)
        for i in np.flatnonzero(~keep):
            status = Status.LATE if late[i] else Status.DUPLICATE
            outcomes[i] = Outcome(
                sample=wave[i], status=status, alert=bool(self.table["alert_active"][slots[i]])
            )
        self.counters.late += int(late.sum())
        self.counters.duplicate += int(duplicate.sum())
        kept = np.flatnonzero(keep)
        if kept.size:
            stepped = self._step_kept([wave[i] for i in kept], slots[kept], ts[kept])
            for i, outcome in zip(kept, stepped, strict=True):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    def _start_streams(self, wave: list[Sample], slots: Slots, new: npt.NDArray[np.bool_]) -> None:
        manifest = self.bundle.manifest
        for i in np.flatnonzero(new):
            scaling = manifest.stream_scaling.get(wave[i].stream, manifest.scaling)
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

    def _step_kept(self, wave: list[Sample], slots: Slots, ts: F64) -> list[Outcome]:
        table = self.table
        reset = self._reset_after_gap(slots, ts)
        values = np.stack([s.values for s in wave]).astype(np.float64, copy=False)
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
        errors = np.sqrt(np.mean((x - predicted) ** 2, axis=1))
        errors[~has_prediction] = np.nan

        h = np.ascontiguousarray(table["h"][slots].transpose(1, 0, 2))
        c = np.ascontiguousarray(table["c"][slots].transpose(1, 0, 2))
        result = self.engine.step(inputs, h, c)
        table["h"][slots] = result.h.transpose(1, 0, 2)
        table["c"][slots] = result.c.transpose(1, 0, 2)
        table["prediction"][slots] = result.prediction
        table["steps"][slots] = steps + 1
        table["last_ts"][slots] = ts
        received = np.fromiter((s.received for s in wave), dtype=np.float64, count=len(wave))
        table["last_received"][slots] = np.where(np.isnan(received), ts, received)

        scores = np.full(len(wave), np.nan)
        scored = np.flatnonzero(has_prediction)
        if scored.size:
            scores[scored] = self.detector.score(table, slots[scored], errors[scored])
            self.detector.learn(table, slots[scored], errors[scored], scores[scored])
        margin = self.settings.detector.range_margin
        if margin is not None:
            novel = out_of_range(
                table, slots, scaled, margin, self.settings.detector.range_min_samples
            )
            scores = np.where(novel & has_prediction, 1.0, scores)
        widen(table, slots, scaled)
        warm = steps >= self.settings.alerts.warmup
        anomalous = self.detector.classify(scores) & warm
        transitions = advance(
            table,
            self.settings.alerts,
            slots,
            ts=ts,
            scores=scores,
            anomalous=anomalous,
            threshold=self.detector.threshold,
        )
        expected = inverse(self._transform, predicted) * scale + center
        self._count(has_prediction, reset, transitions)
        return [
            self._outcome(
                wave[i],
                int(slots[i]),
                has_prediction=bool(has_prediction[i]),
                expected=expected[i],
                error=float(errors[i]),
                score=float(scores[i]),
                reset=bool(reset[i]),
                warm=bool(warm[i]),
                transition=Transition(transitions[i]),
            )
            for i in range(len(wave))
        ]

    def evict_idle(self, now: float, ttl_s: float) -> list[str]:
        """Forget streams not heard from since ``now - ttl_s``; return their ids."""
        idle_slots = np.flatnonzero(self.table["last_received"] < now - ttl_s)
        idle = [s for s in (self.table.stream_of[slot] for slot in idle_slots) if s is not None]
        for stream in idle:
            self.table.release(stream)
        return idle

    def replace_engine(self, engine: Engine) -> bool:
        """Swap in a new bundle's engine; keep stream state if the shapes match.

        Returns True if state was kept. With other shapes the state cannot carry over, so
        every stream starts afresh (and warms up again).
        """
        same = (engine.features, engine.layers, engine.hidden) == (
            self.engine.features,
            self.engine.layers,
            self.engine.hidden,
        )
        self.engine, self.bundle = engine, engine.bundle
        self._transform = self.bundle.manifest.transform
        self.detector = make_detector(self.bundle.manifest.calibration, self.settings.detector)
        if not same:
            self.table = self.new_table()
        return same

    def _reset_after_gap(self, slots: Slots, ts: F64) -> npt.NDArray[np.bool_]:
        if self.settings.max_gap_s is None:
            return np.zeros(len(slots), dtype=bool)
        last = self.table["last_ts"][slots]
        reset: npt.NDArray[np.bool_] = np.isfinite(last) & (ts - last > self.settings.max_gap_s)
        if reset.any():
            self.table.clear(slots[reset], ("h", "c", "prediction", "steps"))
            self.detector.restart(self.table, slots[reset])
        return reset

    def _count(
        self,
        has_prediction: npt.NDArray[np.bool_],
        reset: npt.NDArray[np.bool_],
        transitions: npt.NDArray[np.int8],
    ) -> None:
        counters = self.counters
        counters.scored += int(has_prediction.sum())
        counters.first += int((~has_prediction).sum())
        counters.resets += int(reset.sum())
        counters.raised += int((transitions == Transition.RAISED).sum())
        counters.cleared += int((transitions == Transition.CLEARED).sum())

    def _outcome(
        self,
        sample: Sample,
        slot: int,
        *,
        has_prediction: bool,
        expected: F64,
        error: float,
        score: float,
        reset: bool,
        warm: bool,
        transition: Transition,
    ) -> Outcome:
        event = None
        if transition is not Transition.NONE:
            event = self._event(
                sample, slot, expected=expected, error=error, score=score, transition=transition
            )
        return Outcome(
            sample=sample,
            status=Status.SCORED if has_prediction else Status.FIRST,
            expected=expected if has_prediction else None,
            error=error,
            score=score,
            alert=bool(self.table["alert_active"][slot]),
            warming_up=not warm,
            reset=reset,
            event=event,
        )

    def _event(
        self,
        sample: Sample,
        slot: int,
        *,
        expected: F64,
        error: float,
        score: float,
        transition: Transition,
    ) -> AlertEvent:
        table, manifest = self.table, self.bundle.manifest
        raised_ts = float(table["raised_ts"][slot])
        peak = float(table["peak_score"][slot])
        threshold = self.detector.threshold
        return AlertEvent(
            event="raised" if transition is Transition.RAISED else "cleared",
            alert_id=alert_id(manifest.name, sample.stream, raised_ts),
            stream=sample.stream,
            ts=sample.ts,
            raised_ts=raised_ts,
            values=tuple(float(v) for v in sample.values),
            expected=tuple(float(v) for v in expected),
            error=error,
            score=score,
            peak_score=peak,
            threshold=threshold,
            severity=severity(peak, threshold),
            model=manifest.name,
            model_version=manifest.version,
        )


def alert_id(model: str, stream: str, raised_ts: float) -> str:
    """A stable id: the same alert (model, stream, time raised) always gets the same id."""
    return str(uuid.uuid5(ALERT_ID_NAMESPACE, f"{model}|{stream}|{raised_ts:.6f}"))


def severity(score: float, threshold: float) -> str:
    """``critical`` past halfway from the threshold to 1, else ``warning``."""
    return "critical" if score >= (1.0 + threshold) / 2 else "warning"
