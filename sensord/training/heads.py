"""The model's heads beyond its prediction, fitted after the network (core/heads.py applies
them in the daemon):

- the spread head's **reference**: its median spread per feature on the training rows, so
  that the exported graph gives the spread relative to a typical step;
- the **horizon**'s gain (``--horizon K``): per feature, the spread of the next-step errors
  over that of the K-step errors on the training rows, so that a K-step error is on the
  scale the detector knows;
- the **virtual sensor** (``--cross``): per feature, a ridge regression of its error on the
  other features' errors at the same instant, over the training rows (errors already
  divided by the spread), and the gain that puts the explained-away error back on the
  error's own scale. Closed form, F small: no second network to train and export.

``deviations`` gives a stream's errors exactly as the daemon's core will see them, for the
calibration (calibrate.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sensord.arrays import F32, F64
from sensord.core.bundle import Cross
from sensord.core.engine import CrossHead, HorizonHead
from sensord.core.heads import apply_heads, apply_horizon
from sensord.training.data import TrainingData
from sensord.training.model import Forecaster

# Ridge strength, relative to each explaining error's own sum of squares (so features of
# very different spreads are held alike): enough to keep a duplicated feature from getting
# huge opposite weights, small against any real relation (it shrinks a weight by ~1 %).
RIDGE = 1e-2
MIN_GAIN = 1.0  # explaining can only narrow an error's spread; a gain under 1 is noise


@dataclass(frozen=True)
class Run:
    """A model over one stream's rows from a zero state, every head at once (one pass)."""

    prediction: F64  # [n, F] of the next row, after each row
    spread: F64  # [n, F] the graph's ``s`` (relative to the reference); ones without the head
    ahead: F64 | None  # [n, F] of the row K ahead; None without the horizon head


def run(model: Forecaster, inputs: F32) -> Run:
    model.eval()
    with torch.no_grad():
        out = model.forward_full(torch.from_numpy(inputs).unsqueeze(0))
    prediction = np.asarray(out.prediction.squeeze(0).numpy(), dtype=np.float64)
    if out.log_sigma is None:
        spread = np.ones_like(prediction)
    else:
        relative = torch.exp(out.log_sigma) / model.spread_reference
        spread = np.asarray(relative.squeeze(0).double().numpy())
    ahead = None if out.ahead is None else np.asarray(out.ahead.squeeze(0).double().numpy())
    return Run(prediction, spread, ahead)


def relative_spread(model: Forecaster, inputs: F32) -> F64:
    """The graph's ``s`` after each row of one stream from a zero state; ones without
    the head."""
    return run(model, inputs).spread


def set_spread_reference(model: Forecaster, data: TrainingData) -> None:
    """The spread head's median spread per feature over every stream's training rows."""
    if model.spread_head is None:
        return
    model.spread_reference.fill_(1.0)
    spreads = [relative_spread(model, s.inputs)[: s.split] for s in data.streams]
    median = np.median(np.concatenate(spreads), axis=0)
    model.spread_reference.copy_(torch.from_numpy(np.maximum(median, 1e-12)))


def deviations(
    model: Forecaster,
    inputs: F32,
    scaled: F32,
    cross: CrossHead | None,
    horizon: HorizonHead | None = None,
) -> F64:
    """Per row, the errors the detector sees (row 0 has none: NaN)."""
    model_run = run(model, inputs)
    out = np.full(scaled.shape, np.nan)
    plain = scaled[1:].astype(np.float64) - model_run.prediction[:-1]
    out[1:] = apply_heads(plain, model_run.spread[:-1], cross)
    if horizon is not None and model_run.ahead is not None:
        k = horizon.steps
        prior = np.full(scaled.shape, np.nan)
        prior[k:] = model_run.ahead[:-k]
        out[1:] = apply_horizon(out[1:], scaled[1:].astype(np.float64), prior[1:], horizon)
    return out


def fit_horizon(model: Forecaster, data: TrainingData) -> HorizonHead | None:
    """The horizon head's gain from the training rows; None without the head."""
    if model.ahead_head is None:
        return None
    k = model.horizon
    next_step, k_step = [], []
    for s in data.streams:
        model_run = run(model, s.inputs)
        assert model_run.ahead is not None  # (the model has the head)
        train = s.scaled[: s.split].astype(np.float64)
        next_step.append(train[1:] - model_run.prediction[: s.split - 1])
        k_step.append(train[k:] - model_run.ahead[: s.split - k])
    spread_1 = np.concatenate(next_step).std(axis=0)
    spread_k = np.concatenate(k_step).std(axis=0)
    gain = np.clip(spread_1 / np.maximum(spread_k, 1e-12), 1e-6, 1e6)
    return HorizonHead(k, gain)


def fit_cross(model: Forecaster, data: TrainingData) -> Cross | None:
    """The virtual-sensor head from the training rows' errors; None for one feature."""
    n_f = model.features
    if n_f < 2:
        return None
    errors = np.concatenate(
        [deviations(model, s.inputs, s.scaled, None)[1 : s.split] for s in data.streams]
    )
    weights = np.zeros((n_f, n_f))
    gain = np.ones(n_f)
    for f in range(n_f):
        others = [g for g in range(n_f) if g != f]
        x, y = errors[:, others], errors[:, f]
        gram = x.T @ x
        ridge = RIDGE * np.maximum(np.diag(gram), 1e-12)
        coefficients = np.linalg.solve(gram + np.diag(ridge), x.T @ y)
        weights[f, others] = coefficients
        rest = y - x @ coefficients
        gain[f] = max(float(y.std()) / max(float(rest.std()), 1e-12), MIN_GAIN)
    return Cross(
        weights=[[float(v) for v in row] for row in weights], gain=[float(g) for g in gain]
    )
