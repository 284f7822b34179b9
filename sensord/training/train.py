"""``sensord train``: a history CSV in, a verified model bundle out."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import sensord
from sensord.core.bundle import (
    FORMAT_VERSION,
    Bundle,
    Cross,
    Graph,
    Heads,
    Manifest,
    Training,
    sha256_hex,
)
from sensord.core.engine import CrossHead, Engine
from sensord.core.timestamps import format_timestamp
from sensord.errors import InputError
from sensord.offline.series import read_series
from sensord.ops.models import write_bundle
from sensord.training.calibrate import calibrate
from sensord.training.data import TrainingData, prepare
from sensord.training.export import GRAPH_KIND, OPSET, check_parity, export_sequence
from sensord.training.fit import EpochCallback, FitResult, fit, predictions
from sensord.training.heads import fit_cross, fit_horizon, set_spread_reference
from sensord.training.model import Forecaster
from sensord.training.normal import learn_normal
from sensord.training.options import TrainOptions


@dataclass(frozen=True)
class TrainReport:
    bundle: Bundle
    seconds: float
    parity: float
    persistence_mae: float
    model: Forecaster  # the fitted network (benchmarks compare it run the naive way)


def train_bundle(
    data_path: Path, out: Path, options: TrainOptions, on_epoch: EpochCallback | None = None
) -> TrainReport:
    """Train, calibrate, export, check parity and write the bundle; return what happened.

    Runs torch with ``options.threads`` threads and restores the caller's setting after.
    """
    if options.threads < 1:
        raise InputError(f"threads {options.threads} must be at least 1")
    previous = torch.get_num_threads()
    torch.set_num_threads(options.threads)
    try:
        return _train(data_path, out, options, on_epoch)
    finally:
        torch.set_num_threads(previous)


def _train(
    data_path: Path, out: Path, options: TrainOptions, on_epoch: EpochCallback | None
) -> TrainReport:
    started = time.perf_counter()
    series = read_series(data_path, options.features, options.out_of_order)
    if options.fit.horizon < 0 or options.fit.horizon == 1:
        raise InputError(
            f"horizon {options.fit.horizon}: 0 (no horizon head) or at least 2 steps ahead"
        )
    if options.cross and len(series.features) < 2:
        raise InputError(
            f"{data_path}: --cross needs two features or more (the file has "
            f"{len(series.features)}): a virtual sensor predicts one from the others"
        )
    if not 0.05 <= options.validation_fraction <= 0.5:
        raise InputError(f"validation fraction {options.validation_fraction} not in [0.05, 0.5]")
    data = prepare(series, options.validation_fraction, options.time_of_day, options.transform)
    result = fit(data, options.fit, on_epoch)
    set_spread_reference(result.model, data)
    cross = fit_cross(result.model, data) if options.cross else None
    horizon = fit_horizon(result.model, data)
    heads = Heads(
        spread=options.fit.spread,
        cross=cross,
        horizon=0 if horizon is None else horizon.steps,
        horizon_gain=[] if horizon is None else [float(g) for g in horizon.gain],
    )
    calibration = calibrate(
        result.model, data, cross=None if cross is None else _arrays(cross), horizon=horizon
    )
    graph = export_sequence(result.model)
    parity = check_parity(result.model, graph, data)
    digest = sha256_hex(graph)
    persistence = _persistence_mae(data)
    manifest = Manifest(
        format_version=FORMAT_VERSION if heads.any else 1,
        name=options.name,
        version=options.version or digest[:12],
        sensord_version=sensord.__version__,
        features=list(data.features),
        time_features=list(data.time_features),
        transform=data.transform,
        cell=options.fit.cell,
        layers=options.fit.layers,
        hidden=options.fit.hidden,
        scaling=data.streams[0].scaling,
        stream_scaling={s.stream: s.scaling for s in data.streams} if len(data.streams) > 1 else {},
        graph=Graph(sha256=digest, opset=OPSET, kind=GRAPH_KIND),
        calibration=calibration,
        training=_training_summary(data_path, data, options, result, persistence),
        heads=heads,
    )
    bundle = write_bundle(out, manifest, graph)
    Engine(bundle)  # opens the written graph the way the daemon will: shapes must check out
    # What the detector learns from the training rows is the normal new streams start from.
    normal = learn_normal(bundle, series)
    if normal is not None:
        bundle = write_bundle(out, manifest.model_copy(update={"normal": normal}), graph)
    return TrainReport(bundle, time.perf_counter() - started, parity, persistence, result.model)


def _arrays(cross: Cross) -> CrossHead:
    return CrossHead(np.array(cross.weights), np.array(cross.gain))


def _persistence_mae(data: TrainingData) -> float:
    """MAE of predicting 'the next sample repeats this one' on the validation rows."""
    diffs = [np.abs(np.diff(s.scaled[s.split - 1 :], axis=0)) for s in data.streams]
    return float(np.concatenate(diffs).mean())


def _validation_mae(result: FitResult, data: TrainingData) -> float:
    errors = []
    for stream in data.streams:
        predicted = predictions(result.model, stream.inputs)
        errors.append(np.abs(predicted[stream.split - 1 : -1] - stream.scaled[stream.split :]))
    return float(np.concatenate(errors).mean())


def _training_summary(
    data_path: Path,
    data: TrainingData,
    options: TrainOptions,
    result: FitResult,
    persistence: float,
) -> Training:
    stamps = np.concatenate([s.timestamps for s in data.streams])
    intervals = np.concatenate([np.diff(s.timestamps) for s in data.streams])
    hyper = {k: v for k, v in asdict(options.fit).items() if k != "seed"}
    hyper["validation_fraction"] = options.validation_fraction
    hyper["threads"] = options.threads  # with the seed, what reproduces the bundle
    hyper["spread"] = int(options.fit.spread)
    hyper["horizon"] = options.fit.horizon
    hyper["cross"] = int(options.cross)
    return Training(
        source=data_path.name,
        rows=data.rows,
        train_rows=data.train_rows,
        validation_rows=data.validation_rows,
        skipped_rows=data.skipped + data.out_of_order,
        streams=len(data.streams),
        data_start=format_timestamp(float(stamps.min())),
        data_end=format_timestamp(float(stamps.max())),
        median_interval_s=float(np.median(intervals)),
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        interrupted=result.interrupted,
        train_loss=result.train_loss if np.isfinite(result.train_loss) else 0.0,
        validation_loss=result.validation_loss,
        validation_mae=_validation_mae(result, data),
        persistence_mae=persistence,
        seed=options.fit.seed,
        hyperparameters=hyper,
    )
