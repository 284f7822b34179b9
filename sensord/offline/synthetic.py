"""Generated sensor series with known anomalies, for the demo and the tests.

A daily cycle plus a slower drift and noise, sampled every ``interval_s``; anomalies are
injected at known rows: spikes (one sample far off), dips (a few samples far below), and a
level shift (everything after a row moves by a constant).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensord.arrays import F64
from sensord.core.timestamps import format_timestamp

DAY_S = 86_400.0


@dataclass(frozen=True)
class Anomaly:
    kind: str  # "spike" | "dip" | "shift"
    row: int
    length: int = 1


@dataclass(frozen=True)
class Generated:
    timestamps: F64
    values: F64
    anomalies: tuple[Anomaly, ...]


def generate(
    rows: int,
    *,
    seed: int = 0,
    interval_s: float = 300.0,
    start: float = 1.7e9,
    anomalies: tuple[Anomaly, ...] = (),
    noise: float = 0.05,
) -> Generated:
    """A clean periodic series of ``rows`` samples, with ``anomalies`` injected."""
    rng = np.random.default_rng(seed)
    timestamps = start + interval_s * np.arange(rows, dtype=np.float64)
    phase = 2 * np.pi * (timestamps % DAY_S) / DAY_S
    values = 20.0 + 3.0 * np.sin(phase) + 1.0 * np.sin(3 * phase + 0.5)
    values += 0.5 * np.sin(2 * np.pi * np.arange(rows) / (rows * 1.7))
    values += noise * 3.0 * rng.standard_normal(rows)
    for anomaly in anomalies:
        span = slice(anomaly.row, anomaly.row + anomaly.length)
        if anomaly.kind == "spike":
            values[span] += 6.0
        elif anomaly.kind == "dip":
            values[span] -= 6.0
        elif anomaly.kind == "shift":
            values[anomaly.row :] += 4.0
        else:
            raise ValueError(f"unknown anomaly kind {anomaly.kind!r}")
    return Generated(timestamps, values, anomalies)


def standard_anomalies(rows: int) -> tuple[Anomaly, ...]:
    """A spike, a dip and a level shift, spread over the second half of ``rows``."""
    return (
        Anomaly("spike", int(rows * 0.55)),
        Anomaly("dip", int(rows * 0.7), length=3),
        Anomaly("shift", int(rows * 0.85)),
    )


def write_csv(path: Path, generated: Generated, feature: str = "value") -> None:
    """Write ``timestamp,<feature>`` rows (ISO 8601 UTC)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", feature])
        for ts, value in zip(generated.timestamps, generated.values, strict=True):
            writer.writerow([format_timestamp(float(ts)), f"{value:.6f}"])
