"""``sensord train``: its options (their defaults the options' own torch-free dataclasses')
and the command, which loads torch only when it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from sensord.cli.arguments import SubParsers, positive_int
from sensord.cli.extras import require_train_extra
from sensord.errors import missing_train_extra
from sensord.offline.report import describe_bundle
from sensord.training.options import FitOptions, TrainOptions

TRAIN = TrainOptions()
FIT = TRAIN.fit


def add_command(commands: SubParsers) -> None:
    _add_train(commands)


def _add_train(commands: SubParsers) -> None:
    p = commands.add_parser("train", help="fit a model on a history CSV and write a bundle")
    p.add_argument("data", type=Path, help="CSV: timestamp, feature columns[, stream]")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--name", default=TRAIN.name, help="model name (letters, digits, _ . -)")
    p.add_argument(
        "--model-version",
        dest="model_version",
        default=None,
        help="model version (default: first 12 hex digits of the graph's sha256)",
    )
    p.add_argument(
        "--features",
        default=None,
        help="comma-separated feature columns (default: all but timestamp, stream)",
    )
    p.add_argument("--epochs", type=positive_int, default=FIT.epochs, help="most epochs to run")
    p.add_argument(
        "--seed", type=int, default=FIT.seed, help="random seed (same seed, same bundle)"
    )
    p.add_argument(
        "--cell",
        choices=("lstm", "gru"),
        default=FIT.cell,
        help="recurrent cell (the bundle's graph signature is the same for both)",
    )
    p.add_argument(
        "--spread",
        action=argparse.BooleanOptionalAction,
        default=FIT.spread,
        help="also predict the spread of the next error (Gaussian likelihood); the detector "
        "divides each error by it (docs/detection.md, what the model adds)",
    )
    p.add_argument(
        "--horizon",
        type=int,
        default=FIT.horizon,
        metavar="K",
        help="also predict the sample K steps ahead (0: no; else at least 2); the detector "
        "also sees each reading against the prediction made K steps before it",
    )
    p.add_argument(
        "--cross",
        action=argparse.BooleanOptionalAction,
        default=TRAIN.cross,
        help="the virtual sensor: each feature's error less what the others' explain "
        "(two features or more)",
    )
    p.add_argument("--hidden", type=positive_int, default=FIT.hidden, help="recurrent hidden size")
    p.add_argument("--layers", type=positive_int, default=FIT.layers, help="recurrent layers")
    p.add_argument("--dropout", type=float, default=FIT.dropout, help="dropout between layers")
    p.add_argument(
        "--learning-rate", type=float, default=FIT.learning_rate, help="Adam learning rate"
    )
    p.add_argument("--window", type=positive_int, default=FIT.window, help="training window, rows")
    p.add_argument(
        "--patience",
        type=positive_int,
        default=FIT.patience,
        help="stop after this many epochs without a better validation loss",
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=TRAIN.validation_fraction,
        help="last fraction of each stream's rows kept for validation",
    )
    p.add_argument(
        "--time-of-day",
        choices=("auto", "on", "off"),
        default=TRAIN.time_of_day,
        help="time-of-day inputs: auto adds them when the data spans >= 2 days sampled at "
        "least hourly",
    )
    p.add_argument(
        "--transform",
        choices=("none", "asinh"),
        default=TRAIN.transform,
        help="value transform after scaling (asinh compresses spikes)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=TRAIN.threads,
        help="torch threads (default 1: fastest for these small nets, above all on a busy "
        "machine; the same seed, data and threads give the same bundle)",
    )
    add_out_of_order(p)
    p.set_defaults(command=_train)


def _train(args: argparse.Namespace) -> int:
    require_train_extra("train")
    try:
        from sensord.training.export import PARITY_TOLERANCE
        from sensord.training.progress import train_with_progress
    except ImportError as exc:
        raise missing_train_extra("train", exc.name) from None

    options = TrainOptions(
        name=args.name,
        version=args.model_version,
        features=[f.strip() for f in args.features.split(",")] if args.features else None,
        validation_fraction=args.validation_fraction,
        out_of_order=args.out_of_order,
        time_of_day=args.time_of_day,
        transform=args.transform,
        threads=args.threads,
        cross=args.cross,
        fit=FitOptions(
            epochs=args.epochs,
            cell=args.cell,
            spread=args.spread,
            horizon=args.horizon,
            hidden=args.hidden,
            layers=args.layers,
            dropout=args.dropout,
            learning_rate=args.learning_rate,
            window=args.window,
            patience=args.patience,
            seed=args.seed,
        ),
    )
    report = train_with_progress(args.data, args.out, options)
    print(describe_bundle(report.bundle, verified=True))
    print(
        f"trained in {report.seconds:.1f} s; parity {report.parity:.1e} "
        f"(tolerance {PARITY_TOLERANCE:.0e}, relative to 1 + |value|)"
    )
    return 0


def add_out_of_order(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out-of-order",
        choices=("error", "drop"),
        default=TRAIN.out_of_order,
        help="a row not after its stream's previous one: an error, or dropped and "
        "counted as the daemon drops a late reading",
    )
