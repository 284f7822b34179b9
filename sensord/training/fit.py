"""The training loop: Adam, gradient clipping, early stopping on validation loss, Ctrl-C.

Validation follows how the daemon will use the model: each stream's whole sequence is run
from a zero state, state carried step to step, and the loss is taken on the validation rows
only. The best weights by validation loss are kept; Ctrl-C stops training and keeps them.

The loss is the mean squared error of the next sample; with the spread head it is the
Gaussian negative log-likelihood of the next sample under the predicted mean and spread,
each row's term weighted by its predicted variance to the power ``BETA`` (detached): the
"beta-NLL" of Seitzer et al. (ICLR 2022), which keeps the plain likelihood from buying a
small loss on hard rows with a large spread instead of a good mean (beta 0.5, their
recommendation; beta 0 is the plain likelihood, 1 the squared error's gradient for the
mean). Early stopping then watches the plain likelihood on the validation rows.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sensord.arrays import F32
from sensord.training.data import TrainingData, windows
from sensord.training.model import Forecaster
from sensord.training.options import FitOptions


@dataclass(frozen=True)
class FitResult:
    model: Forecaster
    epochs_run: int
    best_epoch: int
    train_loss: float
    validation_loss: float
    interrupted: bool


EpochCallback = Callable[[int, float, float, float], None]


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def fit(
    data: TrainingData, options: FitOptions, on_epoch: EpochCallback | None = None
) -> FitResult:
    """Fit a Forecaster; returns the weights of the epoch with the lowest validation loss."""
    seed_everything(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    inputs, targets = (torch.from_numpy(a) for a in windows(data, options.window, options.stride))
    model = Forecaster(
        len(data.features),
        options.hidden,
        options.layers,
        options.dropout,
        extra_inputs=len(data.time_features),
        cell=options.cell,
        spread=options.spread,
        horizon=options.horizon,
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=options.learning_rate)

    best_state = copy.deepcopy(model.state_dict())
    best_loss, best_epoch, train_loss = _objective(model, data), 0, math.nan
    epoch, interrupted = 0, False
    try:
        for epoch in range(1, options.epochs + 1):
            train_loss = _train_epoch(
                model, optimiser, inputs, targets, options=options, generator=generator
            )
            loss = _objective(model, data)
            if loss < best_loss:
                best_loss, best_epoch = loss, epoch
                best_state = copy.deepcopy(model.state_dict())
            if on_epoch is not None:
                on_epoch(epoch, train_loss, loss, best_loss)
            if epoch - best_epoch >= options.patience:
                break
    except KeyboardInterrupt:
        interrupted = True
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, epoch, best_epoch, train_loss, best_loss, interrupted)


def _train_epoch(
    model: Forecaster,
    optimiser: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    options: FitOptions,
    generator: torch.Generator,
) -> float:
    model.train()
    order = torch.randperm(len(inputs), generator=generator)[: options.max_windows_per_epoch]
    total, count = 0.0, 0
    for start in range(0, len(order), options.batch_size):
        batch = order[start : start + options.batch_size]
        optimiser.zero_grad()
        out = model.forward_full(inputs[batch])
        loss = _loss(out.prediction, out.log_sigma, targets[batch])
        if out.ahead is not None:
            loss = loss + _ahead_loss(out.ahead, targets[batch], model.horizon)
        torch.autograd.backward(loss)
        nn.utils.clip_grad_norm_(model.parameters(), options.clip_norm)
        optimiser.step()
        total += loss.item() * len(batch)
        count += len(batch)
    return total / max(count, 1)


BETA = 0.5  # of the beta-NLL (module docstring)


def _loss(
    prediction: torch.Tensor, log_sigma: torch.Tensor | None, target: torch.Tensor
) -> torch.Tensor:
    """Squared error, or with the spread head the beta-weighted Gaussian likelihood."""
    squared = (prediction - target) ** 2
    if log_sigma is None:
        return squared.mean()
    nll = 0.5 * squared * torch.exp(-2.0 * log_sigma) + log_sigma
    weight = torch.exp(2.0 * BETA * log_sigma).detach()
    return (nll * weight).mean()


def _ahead_loss(ahead: torch.Tensor, targets: torch.Tensor, horizon: int) -> torch.Tensor:
    """Squared error of the K-step predictions where the window holds their target: the
    prediction after row j is of row j + K, which is the next-step target of row j + K - 1."""
    usable = targets.shape[1] - horizon + 1
    if usable <= 0:
        return torch.zeros(())
    return ((ahead[:, :usable] - targets[:, horizon - 1 :]) ** 2).mean()


def _objective(model: Forecaster, data: TrainingData) -> float:
    """What early stopping watches: the validation MSE, or the plain Gaussian negative
    log-likelihood per value with the spread head."""
    if model.spread_head is None:
        return validation_loss(model, data)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for stream in data.streams:
            out = model.forward_full(torch.from_numpy(stream.inputs).unsqueeze(0))
            mean, log_sigma = out.prediction, out.log_sigma
            assert log_sigma is not None  # (the model has the head)
            given = slice(stream.split - 1, -1)
            target = torch.from_numpy(stream.scaled[stream.split :])
            error = mean[0, given] - target
            nll = 0.5 * error**2 * torch.exp(-2.0 * log_sigma[0, given]) + log_sigma[0, given]
            total += float(nll.double().sum())
            count += error.numel()
    return total / max(count, 1)


def predictions(model: Forecaster, inputs: F32) -> F32:
    """The model run over a whole sequence from a zero state: prediction after each row."""
    model.eval()
    with torch.no_grad():
        out, _ = model(torch.from_numpy(inputs).unsqueeze(0))
    return np.asarray(out.squeeze(0).numpy(), dtype=np.float32)


def validation_loss(model: Forecaster, data: TrainingData) -> float:
    """MSE of next-sample predictions on the validation rows, state carried from row 0."""
    total, count = 0.0, 0
    for stream in data.streams:
        predicted = predictions(model, stream.inputs)
        errors = predicted[stream.split - 1 : -1] - stream.scaled[stream.split :]
        total += float((errors.astype(np.float64) ** 2).sum())
        count += errors.size
    return total / max(count, 1)
