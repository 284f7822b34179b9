"""Probe (issue 15, deliverable 2): can a compiled per-reading path replace the per-wave numpy?

The alert lifecycle (core/alert.py ``advance``), one of the core's ~10 per-wave stages, run
two ways over one stream's 3,000 readings: as the daemon runs it for a single fast stream
(a numpy call per wave of one) and as one numba call over the whole sequence. Both must give
the same transitions and the same final columns. Not part of the project (numba is not a
dependency): ``pip install numba``, then ``.venv/bin/python scripts/probes/numba_alert.py``.
"""

# ruff: noqa: E501, PLR0917
# (a throwaway probe, kept to show how its figures were measured)
import time

import numpy as np
from numba import njit

from sensord.core.alert import ALERT_COLUMNS, AlertPolicy, advance
from sensord.core.state import StateTable

policy = AlertPolicy()
T = 3000
rng = np.random.default_rng(0)
scores = rng.beta(0.5, 3, T)
scores[rng.random(T) < 0.02] = 0.95
surprise = np.clip(scores + rng.normal(0, 0.05, T), 0, 1)
ts = 1.7e9 + 60.0 * np.arange(T)
warm = np.arange(T) >= policy.warmup
threshold = 0.5


def fresh():
    t = StateTable(1, 1, 1, extra=ALERT_COLUMNS)
    t.lookup(["s"])
    return t


@njit(cache=False)
def advance_seq(
    ts,
    scores,
    surprise,
    warm,
    threshold,
    hysteresis,
    raise_after,
    clear_after,
    repeat_window,
    cooldown_s,
    adopt_after_s,
    anomalous_run,
    normal_run,
    alert_active,
    recent_peak,
    recent_age,
    cooldown_until,
    raised_ts,
    surprise_calm,
    peak_score,
    alerts_raised,
    alert_updates,
    out,
):
    calm_below = threshold - hysteresis
    for t in range(ts.shape[0]):
        s = scores[t]
        anomalous = (s >= threshold) and warm[t]
        calm = s < calm_below
        ar = anomalous_run + 1 if anomalous else 0
        nr = normal_run + 1 if calm else 0
        active = alert_active
        remembered = recent_peak if recent_age < repeat_window else -np.inf
        fresh_ = s > remembered
        cooled = ts[t] >= cooldown_until
        raised = (not active) and ar >= raise_after and cooled and fresh_
        cleared = active and nr >= clear_after
        adopted = False
        if adopt_after_s >= 0:
            adopted = active and (not cleared) and (ts[t] - raised_ts >= adopt_after_s)
        surprised = (surprise[t] >= threshold) and warm[t]
        settled = surprise_calm >= clear_after
        updated = active and (not cleared) and (not adopted) and surprised and settled
        surprise_calm = surprise_calm + 1 if surprise[t] < calm_below else 0
        known = not np.isnan(s)
        renew = known and ((s >= recent_peak) or (recent_age >= repeat_window))
        if renew:
            recent_peak = s
            recent_age = 0
        else:
            recent_age = recent_age + (1 if known else 0)
        ended = cleared or adopted
        if raised:
            peak_score = s
        elif active:
            peak_score = np.fmax(peak_score, s)
        if raised:
            raised_ts = ts[t]
        alerts_raised += 1 if raised else 0
        alert_updates = 0 if raised else alert_updates + (1 if updated else 0)
        if ended:
            cooldown_until = ts[t] + cooldown_s
        alert_active = (active or raised) and not ended
        anomalous_run = 0 if ended else ar
        normal_run = 0 if raised else nr
        out[t] = 1 if raised else (3 if updated else (2 if cleared else (4 if adopted else 0)))
    return (
        anomalous_run,
        normal_run,
        alert_active,
        recent_peak,
        recent_age,
        cooldown_until,
        raised_ts,
        surprise_calm,
        peak_score,
        alerts_raised,
        alert_updates,
    )


# numpy, one wave of one stream per reading
tab = fresh()
slots = np.array([0])
t0 = time.perf_counter()
ref = np.array(
    [
        int(
            advance(
                tab,
                policy,
                slots,
                ts=ts[k : k + 1],
                scores=scores[k : k + 1],
                surprise=surprise[k : k + 1],
                warm=warm[k : k + 1],
                threshold=threshold,
            )[0]
        )
        for k in range(T)
    ]
)
numpy_us = (time.perf_counter() - t0) / T * 1e6

tab2 = fresh()
c = tab2.columns


def run_numba():
    out = np.zeros(T, np.int8)
    r = advance_seq(
        ts,
        scores,
        surprise,
        warm,
        threshold,
        policy.hysteresis,
        policy.raise_after,
        policy.clear_after,
        policy.repeat_window,
        policy.cooldown_s,
        -1.0 if policy.adopt_after_s is None else policy.adopt_after_s,
        int(c["anomalous_run"][0]),
        int(c["normal_run"][0]),
        bool(c["alert_active"][0]),
        float(c["recent_peak"][0]),
        int(c["recent_age"][0]),
        float(c["cooldown_until"][0]),
        float(c["raised_ts"][0]),
        int(c["surprise_calm"][0]),
        float(c["peak_score"][0]),
        int(c["alerts_raised"][0]),
        int(c["alert_updates"][0]),
        out,
    )
    return out, r


t0 = time.perf_counter()
out, r = run_numba()
first_s = time.perf_counter() - t0
t0 = time.perf_counter()
for _ in range(10):
    out, r = run_numba()
numba_us = (time.perf_counter() - t0) / 10 / T * 1e6
names = [
    "anomalous_run",
    "normal_run",
    "alert_active",
    "recent_peak",
    "recent_age",
    "cooldown_until",
    "raised_ts",
    "surprise_calm",
    "peak_score",
    "alerts_raised",
    "alert_updates",
]
same_cols = all(
    np.isclose(float(tab.columns[n][0]), float(v), equal_nan=True)
    or (np.isinf(tab.columns[n][0]) and np.isinf(v))
    for n, v in zip(names, r, strict=False)
)
print(
    f"T={T}: transitions equal: {np.array_equal(ref, out)} ({int((ref != 0).sum())} transitions); final columns equal: {same_cols}"
)
print(
    f"numpy per wave of one: {numpy_us:.1f} us/reading; numba over the sequence: {numba_us:.3f} us/reading; speed-up {numpy_us / numba_us:.0f}x; first call (JIT compile) {first_s:.2f} s"
)
