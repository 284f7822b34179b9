"""What the model's heads do to a reading's errors before the detector sees them.

A bundle's model may give more than its prediction of the next sample (bundle.py
``Heads``). Both act on the errors, so the detector and its calibration stay the same:

- **spread**: the graph's ``s``, the spread it expects of the next error relative to its
  usual. Each error is divided by it, so a step the model knew would be noisy (a busy
  hour, a start-up transient) surprises less, and one it expected to be calm more.
- **cross** (the virtual sensor): each feature's error less what the other features'
  errors at the same instant explain, on its own scale (``Cross``). The detector sees the
  larger in size of the plain and the explained-away error per feature, so a relation that
  breaks while every sensor stays in its range shows, and a spike shows as before.
- **horizon**: the reading against the prediction the model made K steps before it (kept
  per stream in a ring of K, ``ahead``), on the next-step scale (``horizon_gain``); again
  the larger in size per feature. A drift that a next-step model follows step by step
  adds up over K steps. Silent for a stream's first K readings, after a gap's reset and
  after a bundle swap (the ring held the old model's predictions).

The compiled path does the same per reading (compiled/kernel.py); tests hold them equal.
"""

from __future__ import annotations

import numpy as np

from sensord.arrays import F64
from sensord.core.engine import CrossHead, HorizonHead, StepEngine
from sensord.core.state import ColumnSpec


def apply_heads(deviations: F64, spread: F64, cross: CrossHead | None) -> F64:
    """``deviations[n, F]`` as the detector sees them, given each reading's pending
    ``spread[n, F]`` (1 without the head) and the virtual-sensor head."""
    scaled = deviations / spread
    if cross is None:
        return scaled
    conditional = (scaled - scaled @ cross.weights.T) * cross.gain
    out: F64 = np.where(np.abs(conditional) > np.abs(scaled), conditional, scaled)
    return out


def apply_horizon(deviations: F64, scaled: F64, prior: F64, horizon: HorizonHead) -> F64:
    """``deviations[n, F]`` with, per feature, the reading's error against ``prior`` (the
    prediction made K steps before; NaN when there is none) where it is larger in size."""
    ahead = (scaled - prior) * horizon.gain
    larger = np.isfinite(ahead) & (np.abs(ahead) > np.abs(deviations))
    out: F64 = np.where(larger, ahead, deviations)
    return out


def horizon_columns(engine: StepEngine) -> dict[str, ColumnSpec]:
    """The ring of a stream's last K look-ahead predictions (one row without the head, so
    that the compiled kernel's columns are the same either way)."""
    steps = 1 if engine.horizon is None else engine.horizon.steps
    return {"ahead": ColumnSpec(np.float32, (steps, engine.features), np.nan)}
