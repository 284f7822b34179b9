"""Training data: time-ordered split, per-stream scaling, windows for truncated BPTT.

Each stream is split by time: the first ``1 - validation_fraction`` of its usable rows train,
the rest validate. Scaling is fitted on the training part only, so nothing of the validation
rows leaks into the model or its inputs. Rows with an empty or non-finite cell are skipped
(the daemon rejects such readings, and the stream simply goes on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensord.arrays import F32, F64
from sensord.core.bundle import Scaling
from sensord.core.transform import TIME_OF_DAY, Transform, forward, shows_daily_cycle, time_features
from sensord.errors import InputError
from sensord.offline.series import Series
from sensord.training.options import TimeOfDay

MIN_ROWS_PER_STREAM = 100
MIN_VALIDATION_ROWS = 10


@dataclass(frozen=True)
class StreamData:
    """One stream's scaled sequence and where validation starts."""

    stream: str
    scaled: F32  # (n, F): the targets
    inputs: F32  # (n, F + T): the scaled features, then the time features
    split: int  # rows [0, split) train, [split, n) validate
    scaling: Scaling
    timestamps: F64


@dataclass(frozen=True)
class TrainingData:
    streams: tuple[StreamData, ...]
    features: tuple[str, ...]
    rows: int
    skipped: int
    out_of_order: int = 0
    time_features: tuple[str, ...] = ()
    transform: Transform = "none"

    @property
    def train_rows(self) -> int:
        return sum(s.split for s in self.streams)

    @property
    def validation_rows(self) -> int:
        return sum(len(s.scaled) - s.split for s in self.streams)


def prepare(
    series: Series,
    validation_fraction: float,
    time_of_day: TimeOfDay = "auto",
    transform: Transform = "none",
) -> TrainingData:
    """Split and scale every stream of a series; InputError if a stream is too short."""
    keep = series.usable & series.in_order
    daily = time_of_day == "on" or (
        time_of_day == "auto" and shows_daily_cycle(series.timestamps[keep])
    )
    names = TIME_OF_DAY if daily else ()
    streams = []
    for stream in series.stream_names:
        index = series.stream_rows(stream)
        index = index[series.usable[index] & series.in_order[index]]
        if len(index) < MIN_ROWS_PER_STREAM:
            of_stream = f" for stream {stream!r}" if len(series.stream_names) > 1 else ""
            raise InputError(
                f"{series.path}: {len(index)} usable rows{of_stream}; training needs at "
                f"least {MIN_ROWS_PER_STREAM} (a model learns nothing useful from fewer)"
            )
        values = series.values[index]
        split = min(
            round(len(index) * (1.0 - validation_fraction)), len(index) - MIN_VALIDATION_ROWS
        )
        # Scaling from the training rows only; the range from every row training read, so a
        # new stream in the daemon starts from the range this stream showed.
        scaling = fit_scaling(values[:split], values)
        center, scale = np.asarray(scaling.center), np.asarray(scaling.scale)
        scaled = forward(transform, (values - center) / scale).astype(np.float32)
        stamps = series.timestamps[index]
        inputs = np.concatenate([scaled, time_features(names, stamps).astype(np.float32)], axis=1)
        streams.append(StreamData(stream, scaled, inputs, split, scaling, stamps))
    return TrainingData(
        tuple(streams),
        series.features,
        len(series.rows),
        series.skipped,
        series.out_of_order,
        names,
        transform,
    )


def fit_scaling(values: F64, seen: F64 | None = None) -> Scaling:
    """Mean and standard deviation per feature (a constant feature gets scale 1), and the
    range of ``seen`` (default: the same values)."""
    center = values.mean(axis=0)
    std = values.std(axis=0)
    tiny = 1e-9 * np.maximum(1.0, np.abs(center))
    scale = np.where(std > tiny, std, 1.0)
    seen = values if seen is None else seen
    return Scaling(
        center=[float(v) for v in center],
        scale=[float(v) for v in scale],
        low=[float(v) for v in seen.min(axis=0)],
        high=[float(v) for v in seen.max(axis=0)],
    )


def windows(data: TrainingData, length: int, stride: int) -> tuple[F32, F32]:
    """Training windows of every stream: inputs ``[N, T, F]`` and next-step targets."""
    inputs, targets = [], []
    for stream in data.streams:
        train, given = stream.scaled[: stream.split], stream.inputs[: stream.split]
        span = min(length, len(train) - 1)
        for start in range(0, len(train) - span, stride):
            inputs.append(given[start : start + span])
            targets.append(train[start + 1 : start + span + 1])
        # The last window ends at the last training row, so no training row is left out.
        inputs.append(given[len(train) - 1 - span : len(train) - 1])
        targets.append(train[len(train) - span :])
    shortest = min(len(w) for w in inputs)
    return (np.stack([w[-shortest:] for w in inputs]), np.stack([t[-shortest:] for t in targets]))
