"""What the trainer (``sensord train``) costs and how well it forecasts: the recurrent cell
(LSTM or GRU) and torch's threads (one or two), side by side in one run.

Every combination trains a bundle with ``train_bundle`` on the same data: each NAB file's
probationary rows, as benchmarks/nab.py trains them (its options otherwise: seed, defaults),
or, without ``--nab-root``, a generated series. For each run: wall seconds for the whole
``train_bundle`` call (fit, calibration, export, parity check, writing), seconds per epoch
(wall over the epochs run, which early stopping decides, and the median time between two
epochs' ends, which leaves the fixed costs out), validation MAE, its ratio to the MAE of
"repeat the last value" (below 1: the model beats persistence) and the export parity (the
worst difference of the exported graph from the torch model). The combinations take turns
file by file, so load drift on these shared machines hits all alike; each is reported as
medians over the files, the geometric mean of the MAE ratio, and the median of same-file
ratios of seconds per epoch to LSTM with one thread (only same-run ratios mean something).

    python benchmarks/training.py [--nab-root DIR] [--only SUBSTR] [--files N] [--seed 0]
        [--rows 1500] [--epochs N] [--hidden N] [--no-warm-up] [--json F]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sensord import logs
from sensord.core.bundle import Cell
from sensord.offline.nabscore import probation_rows
from sensord.training.options import FitOptions

COMBINATIONS: tuple[tuple[Cell, int], ...] = (("lstm", 1), ("gru", 1), ("lstm", 2), ("gru", 2))
BASELINE = "lstm/1"
GENERATED_ROWS = 1500


@dataclass(frozen=True)
class Run:
    file: str
    combination: str
    wall_s: float
    epochs_run: int
    seconds_per_epoch: float
    epoch_median_s: float  # median time from one epoch's end to the next's
    validation_mae: float
    persistence_mae: float
    mae_ratio: float | None  # None where persistence is exact (a flat line)
    parity: float


def mae_ratio(model: float, persistence: float) -> float | None:
    return model / persistence if persistence > 0 and model > 0 else None


def geomean(values: list[float]) -> float:
    return statistics.geometric_mean(values) if values else math.nan


def label(cell: Cell, threads: int) -> str:
    return f"{cell}/{threads}"


def probation_csv(path: Path, name: str, work: Path) -> Path:
    """The file's probationary rows as benchmarks/nab.py's ``bundle_for`` writes them."""
    lines = path.read_text().splitlines()
    target = work / "probation" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines[: probation_rows(len(lines) - 1) + 1]) + "\n")
    return target


def nab_sources(
    root: Path, only: str | None, files: int | None, work: Path
) -> list[tuple[str, Path]]:
    """(category/file.csv, its probationary rows) for the chosen files, in name order."""
    chosen = sorted((root / "data").glob("*/*.csv"))
    chosen = [f for f in chosen if only is None or only in f.as_posix()][:files]
    names = [f.relative_to(root / "data").as_posix() for f in chosen]
    return [(n, probation_csv(f, n, work)) for n, f in zip(names, chosen, strict=True)]


def generated_source(work: Path, rows: int, seed: int) -> list[tuple[str, Path]]:
    from sensord.offline.synthetic import generate, write_csv

    path = work / "generated" / "generated.csv"
    write_csv(path, generate(rows, seed=seed))
    return [("generated.csv", path)]


def train_once(data: Path, name: str, out: Path, fit: FitOptions, threads: int) -> Run:
    from sensord.training.options import TrainOptions
    from sensord.training.train import train_bundle

    ends: list[float] = []
    options = TrainOptions(name="bench", out_of_order="drop", fit=fit, threads=threads)
    started = time.perf_counter()
    report = train_bundle(data, out, options, lambda *_: ends.append(time.perf_counter()))
    wall = time.perf_counter() - started
    training = report.bundle.manifest.training
    gaps = [b - a for a, b in pairwise(ends)]
    return Run(
        file=name,
        combination=label(fit.cell, threads),
        wall_s=wall,
        epochs_run=training.epochs_run,
        seconds_per_epoch=wall / max(training.epochs_run, 1),
        epoch_median_s=statistics.median(gaps) if gaps else wall / max(training.epochs_run, 1),
        validation_mae=training.validation_mae,
        persistence_mae=training.persistence_mae,
        mae_ratio=mae_ratio(training.validation_mae, training.persistence_mae),
        parity=report.parity,
    )


def warm_up(data: Path, work: Path) -> None:
    """A tiny training a combination, not measured: the first would pay imports and setup."""
    for cell, threads in COMBINATIONS:
        train_once(
            data, "warm-up", work / "warm-up", FitOptions(epochs=1, hidden=8, cell=cell), threads
        )


def run_file(name: str, data: Path, work: Path, args: argparse.Namespace) -> list[Run]:
    """Every combination on one file, one after another."""
    runs = []
    for cell, threads in COMBINATIONS:
        fit = FitOptions(seed=args.seed, cell=cell, epochs=args.epochs, hidden=args.hidden)
        out = work / "bundles" / name.removesuffix(".csv") / label(cell, threads)
        runs.append(train_once(data, name, out, fit, threads))
        last = runs[-1]
        print(
            f"{name} {last.combination}: {last.epochs_run} epochs in {last.wall_s:.1f} s, "
            f"validation MAE {last.validation_mae:.4f} (persistence {last.persistence_mae:.4f})",
            flush=True,
        )
    return runs


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """One row a combination: medians over files, geometric means, same-file ratios."""
    base = {r.file: r for r in runs if r.combination == BASELINE}
    rows = []
    for cell, threads in COMBINATIONS:
        mine = [r for r in runs if r.combination == label(cell, threads)]
        rows.append(
            {
                "combination": label(cell, threads),
                "cell": cell,
                "threads": threads,
                "files": len(mine),
                "median_seconds_per_epoch": statistics.median(r.seconds_per_epoch for r in mine),
                "median_epoch_s": statistics.median(r.epoch_median_s for r in mine),
                "median_wall_s": statistics.median(r.wall_s for r in mine),
                "median_epochs_run": statistics.median(r.epochs_run for r in mine),
                "median_validation_mae": statistics.median(r.validation_mae for r in mine),
                "geomean_mae_ratio": geomean([r.mae_ratio for r in mine if r.mae_ratio]),
                "files_with_mae_ratio": sum(1 for r in mine if r.mae_ratio),
                "max_parity": max(r.parity for r in mine),
                "per_epoch_vs_baseline": statistics.median(
                    r.seconds_per_epoch / base[r.file].seconds_per_epoch for r in mine
                ),
                "wall_vs_baseline": statistics.median(r.wall_s / base[r.file].wall_s for r in mine),
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]], files: int, seconds: float) -> None:
    print(f"\n{files} files, {len(COMBINATIONS)} combinations, {seconds:.0f} s in all")
    print(
        f"{'cell/threads':<13}{'s/epoch':>9}{'epoch s':>9}{'wall s':>9}{'epochs':>8}"
        f"{'val MAE':>9}{'MAE/pers':>10}{'parity':>10}{'vs ' + BASELINE:>11}{'wall vs':>9}"
    )
    for r in rows:
        print(
            f"{r['combination']:<13}{r['median_seconds_per_epoch']:>9.3f}"
            f"{r['median_epoch_s']:>9.3f}{r['median_wall_s']:>9.1f}{r['median_epochs_run']:>8.0f}"
            f"{r['median_validation_mae']:>9.4f}{r['geomean_mae_ratio']:>10.3f}"
            f"{r['max_parity']:>10.1e}{r['per_epoch_vs_baseline']:>11.3f}"
            f"{r['wall_vs_baseline']:>9.3f}"
        )
    print(
        "medians over files; MAE/pers: geometric mean; vs: median of same-file ratios "
        f"(s/epoch, wall) to {BASELINE}"
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = FitOptions()
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--nab-root", type=Path, help="NAB layout (default: generated data)")
    parser.add_argument("--only", default=None, help="only files whose path contains this")
    parser.add_argument("--files", type=int, default=None, help="at most this many files")
    parser.add_argument("--rows", type=int, default=GENERATED_ROWS, help="of generated data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument(
        "--warm-up",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train each combination once, tiny and unmeasured, before the measured runs",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    logs.configure("warning", "console")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.nab_root is None:
            sources = generated_source(work, args.rows, args.seed)
        else:
            sources = nab_sources(args.nab_root.resolve(), args.only, args.files, work)
        if not sources:
            print(f"no NAB data under {args.nab_root}", file=sys.stderr)
            return 1
        if args.warm_up:
            warm_up(sources[0][1], work)
        runs: list[Run] = []
        for name, data in sources:
            runs += run_file(name, data, work, args)
            if args.json:  # after every file: an interrupted run still leaves its figures
                write_json(args, summarise(runs), runs)
    rows = summarise(runs)
    print_table(rows, len(sources), time.perf_counter() - started)
    if args.json:
        write_json(args, rows, runs)
        print(f"wrote {args.json}")
    return 0


def write_json(args: argparse.Namespace, rows: list[dict[str, Any]], runs: list[Run]) -> None:
    result = {
        "nab_root": str(args.nab_root) if args.nab_root else None,
        "seed": args.seed,
        "epochs": args.epochs,
        "hidden": args.hidden,
        "rows": rows,
        "runs": [asdict(r) for r in runs],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
