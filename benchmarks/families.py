"""Families of normal sensor data, generated: what a threshold must mean the same on.

Each family is a kind of sensor an operator watches, with no anomaly in it: a clean daily
cycle; bursty, heavy-tailed event volumes (a Hawkes process with log-normal marks, as message
or request counts are); a slowly wandering temperature; weekday/weekend seasonality; a machine
that switches on and off at random (a pump or compressor cycling); an integer sensor; a sensor
that sticks at its last value for a while (report-by-exception devices); and a multivariate
sensor whose features have noise of very different scales. ``benchmarks/calibration.py``
trains a bundle on each family's first weeks and counts the alerts the daemon raises on
months more of the same; ``tests/test_robustness.py`` injects anomalies into some of them.

Every generator is a pure function of its row count, start time and random generator, so a
family's training rows and each of its live streams are independent draws of one process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sensord.arrays import F64

DAY_S = 86_400.0
WEEK_S = 7 * DAY_S
Make = Callable[[int, float, np.random.Generator], F64]  # rows, start, rng -> values[rows, F]


@dataclass(frozen=True)
class Family:
    """A kind of normal data: how to draw it, and how often it is read."""

    name: str
    what: str
    make: Make
    features: tuple[str, ...] = ("value",)
    interval_s: float = 300.0

    def timestamps(self, rows: int, start: float) -> F64:
        out: F64 = start + self.interval_s * np.arange(rows, dtype=np.float64)
        return out

    def draw(self, rows: int, start: float, seed: int) -> tuple[F64, F64]:
        """``rows`` readings from ``start``: timestamps and values ``[rows, F]``."""
        ts = self.timestamps(rows, start)
        values = self.make(rows, start, np.random.default_rng(seed))
        return ts, values.reshape(rows, len(self.features))


def _times(rows: int, start: float, interval_s: float = 300.0) -> F64:
    out: F64 = start + interval_s * np.arange(rows, dtype=np.float64)
    return out


def _phase(ts: F64) -> F64:
    out: F64 = 2 * np.pi * (ts % DAY_S) / DAY_S
    return out


def periodic(
    rows: int, start: float, rng: np.random.Generator, *, interval_s: float = 300.0
) -> F64:
    """A daily cycle (with a harmonic) and Gaussian noise of sigma 0.6."""
    ts = _times(rows, start, interval_s)
    phase = _phase(ts)
    values = 20.0 + 3.0 * np.sin(phase) + 1.0 * np.sin(3 * phase + 0.5)
    out: F64 = values + 0.6 * rng.standard_normal(rows)
    return out


def bursty(rows: int, start: float, rng: np.random.Generator) -> F64:
    """Event volume per 5 minutes: a self-exciting (Hawkes) count with a daily cycle in its
    base rate, occasional exogenous shocks (a post that goes viral), and a log-normal size per
    event; the volume is the sum of the sizes. Heavy-tailed and bursty, like NAB's social
    media volumes or a broker's message bytes."""
    ts = _times(rows, start)
    base = 3.0 * (1.0 + 0.8 * np.sin(_phase(ts) - np.pi / 2))
    shocks = rng.random(rows) < 0.003
    shock_size = rng.poisson(60.0, rows) * shocks
    counts = np.zeros(rows, dtype=np.int64)
    excitation = 0.0
    for t in range(rows):  # the intensity depends on the counts before it
        counts[t] = rng.poisson(base[t] + excitation) + shock_size[t]
        excitation = 0.75 * excitation + 0.2 * counts[t]
    sizes = rng.lognormal(mean=0.0, sigma=1.3, size=int(counts.sum()))
    ends = np.cumsum(counts)
    totals = np.concatenate([[0.0], np.cumsum(sizes)])
    out: F64 = totals[ends] - totals[ends - counts]
    return out


def drifting(rows: int, start: float, rng: np.random.Generator) -> F64:
    """A temperature that wanders: an Ornstein-Uhlenbeck level (two days' memory, sd 1.5), a
    season that moves it 3 degrees over two months, a small daily swing and a fine noise."""
    ts = _times(rows, start)
    tau, sd = 576.0, 1.5
    shocks = sd * np.sqrt(2.0 / tau) * rng.standard_normal(rows)
    level = np.zeros(rows)
    x = sd * rng.standard_normal()
    for t in range(rows):
        x += -x / tau + shocks[t]
        level[t] = x
    season = 3.0 * np.sin(2 * np.pi * ts / (60 * DAY_S) + rng.uniform(0, 2 * np.pi))
    out: F64 = 40.0 + level + season + 0.4 * np.sin(_phase(ts)) + 0.05 * rng.standard_normal(rows)
    return out


def weekly(rows: int, start: float, rng: np.random.Generator) -> F64:
    """An office's power: a working-hours bump on weekdays, a small one at weekends."""
    ts = _times(rows, start)
    hour = (ts % DAY_S) / 3600.0
    bump = 1.0 / (1.0 + np.exp(-(hour - 8.0) * 2.0)) - 1.0 / (1.0 + np.exp(-(hour - 18.0) * 2.0))
    weekday = ((ts // DAY_S + 3) % 7) < 5  # 1970-01-01 was a Thursday
    height = np.where(weekday, 10.0, 2.0)
    out: F64 = 5.0 + height * bump + 0.5 * rng.standard_normal(rows)
    return out


def on_off(rows: int, start: float, rng: np.random.Generator) -> F64:
    """A compressor read every minute: on for about 25 minutes, off for about 50 (both at
    random, shorter pauses in the afternoon), drawing 4.5 A with an inrush on its first
    minute, 0.1 A when off."""
    ts = _times(rows, start, 60.0)
    on = np.zeros(rows, dtype=bool)
    t = 0
    state = bool(rng.random() < 0.35)
    while t < rows:
        afternoon = 12.0 <= (ts[t] % DAY_S) / 3600.0 < 18.0
        mean = 25.0 if state else (35.0 if afternoon else 50.0)
        length = max(1, int(rng.gamma(4.0, mean / 4.0)))
        on[t : t + length] = state
        t += length
        state = not state
    starts = on & ~np.concatenate([[False], on[:-1]])
    values = np.where(on, 4.5 + 0.15 * rng.standard_normal(rows), 0.1)
    values = values + np.where(starts, 2.0 + 0.3 * rng.standard_normal(rows), 0.0)
    out: F64 = values + 0.02 * rng.standard_normal(rows)
    return out


def quantised(rows: int, start: float, rng: np.random.Generator) -> F64:
    """A thermometer that reports whole degrees: a daily cycle of +-2 and a little noise,
    rounded."""
    ts = _times(rows, start)
    out: F64 = np.round(21.0 + 2.0 * np.sin(_phase(ts)) + 0.4 * rng.standard_normal(rows))
    return out


def sticky(rows: int, start: float, rng: np.random.Generator) -> F64:
    """The daily cycle of ``periodic``, from a sensor that now and then stops updating and
    repeats its last value for a while (about once a day, an hour on average), then catches
    up with a jump."""
    values = periodic(rows, start, rng)
    t = 0
    while t < rows:
        t += int(rng.exponential(288.0))
        if t >= rows:
            break
        length = 1 + int(rng.exponential(12.0))
        values[t : t + length] = values[t - 1] if t > 0 else values[0]
        t += length
    return values


def multivariate(rows: int, start: float, rng: np.random.Generator) -> F64:
    """Four features of one machine driven by a shared daily load, each with its own gain,
    offset and noise, the noise scales four orders of magnitude apart (a pressure in bar, a
    current, a temperature, a flow in litres per hour)."""
    ts = _times(rows, start)
    load = np.sin(_phase(ts)) + 0.3 * np.sin(3 * _phase(ts) + 1.0)
    shared = np.zeros(rows)
    x = 0.0
    innovations = 0.2 * rng.standard_normal(rows)
    for t in range(rows):  # a slowly varying common disturbance
        x = 0.95 * x + innovations[t]
        shared[t] = x
    gains = np.array([0.05, 2.0, 5.0, 400.0])
    offsets = np.array([1.5, 10.0, 60.0, 2000.0])
    noise = np.array([0.001, 0.5, 0.4, 60.0])
    drive = (load + 0.5 * shared)[:, None]
    out: F64 = offsets + gains * drive + noise * rng.standard_normal((rows, 4))
    return out


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("periodic", "a daily cycle, Gaussian noise", periodic),
        Family("bursty", "Hawkes event volumes, log-normal sizes", bursty),
        Family("drifting", "a wandering temperature with a season", drifting),
        Family("weekly", "weekday/weekend working hours", weekly),
        Family("on-off", "a compressor cycling at random, 1 min", on_off, interval_s=60.0),
        Family("quantised", "whole-degree readings", quantised),
        Family("sticky", "repeats its last value now and then", sticky),
        Family(
            "multivariate",
            "four features, noise scales 1e-3 to 30",
            multivariate,
            features=("pressure", "current", "temperature", "flow"),
        ),
    )
}
