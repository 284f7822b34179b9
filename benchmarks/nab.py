"""NAB with the daemon's own code: ``python benchmarks/nab.py --nab-root DIR``.

For every series under ``DIR/data`` (NAB layout: ``data/<category>/<file>.csv``,
``labels/combined_windows.json``, ``profiles.json``):

1. train a bundle with sensord's trainer on the probationary rows only (the first
   ``min(floor(0.15 n), 750)`` rows; NAB's rule), one configuration for every file;
2. replay the whole series through the daemon's core (``sensord replay``: state carried step
   to step, the score of a row uses only rows up to it) once per detector;
3. write NAB result files ``OUT/<detector>/<category>/<file>.csv`` (the data file's rows in
   order, with ``anomaly_score``, and the daemon's own ``alert`` and ``event`` columns);
4. score them with sensord/nabscore.py: per detector and profile, the swept-threshold
   score of ``anomaly_score`` and the score of the binary ``alert`` column.

Rows whose timestamp is not after an earlier row's (a clock that jumped back) are dropped as
the daemon drops a late reading: no score (0 in the result file), and counted.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sensord.detect import DETECTOR_KINDS, DetectorKind, DetectorSettings
from sensord.engine import Engine
from sensord.nabscore import (
    CorpusScore,
    ScoredFile,
    load_profiles,
    load_windows,
    prepare,
    probation_rows,
    score_all_profiles,
)
from sensord.pipeline import Pipeline, PipelineSettings
from sensord.replay import replay

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "nab"
DEFAULT_DETECTOR = PipelineSettings().detector.kind


@dataclass(frozen=True)
class FileRun:
    name: str  # category/file.csv
    rows: int
    probation: int
    dropped: int
    train_seconds: float
    replay_seconds: dict[str, float]
    timestamps: list[float]
    scores: dict[str, list[float]]
    alerts: dict[str, list[int]]
    onsets: dict[str, list[int]]


def run_file(
    path: Path, root: Path, out: Path, detectors: list[DetectorKind], seed: int
) -> FileRun:
    """Train on the probationary rows, replay with each detector, write the result files."""
    import torch

    from sensord.training.fit import FitOptions
    from sensord.training.train import TrainOptions, train_bundle

    torch.set_num_threads(1)  # one file per core
    name = path.relative_to(root / "data").as_posix()
    lines = path.read_text().splitlines()
    rows = len(lines) - 1
    probation = probation_rows(rows)
    probation_csv = out / "probation" / name
    probation_csv.parent.mkdir(parents=True, exist_ok=True)
    probation_csv.write_text("\n".join(lines[: probation + 1]) + "\n")
    bundle_dir = out / "bundles" / name.removesuffix(".csv")
    stem = Path(name).stem.replace(" ", "_")
    started = time.perf_counter()
    report = train_bundle(
        probation_csv,
        bundle_dir,
        TrainOptions(name=stem[:128], out_of_order="drop", fit=FitOptions(seed=seed)),
    )
    train_seconds = time.perf_counter() - started

    scores: dict[str, list[float]] = {}
    alerts: dict[str, list[int]] = {}
    onsets: dict[str, list[int]] = {}
    replay_seconds: dict[str, float] = {}
    timestamps: list[float] = []
    dropped = 0
    for kind in detectors:
        settings = PipelineSettings(detector=DetectorSettings(kind=kind))
        pipeline = Pipeline(Engine(report.bundle), settings)
        result = replay(path, pipeline, out_of_order="drop")
        replay_seconds[kind] = result.seconds
        outcomes = result.outcomes
        score = [0.0 if o is None or np.isnan(o.score) else float(o.score) for o in outcomes]
        alert = _alert_column(outcomes)
        onset = [
            1 if o is not None and o.event is not None and o.event.event == "raised" else 0
            for o in outcomes
        ]
        _write_result(
            out / kind / name,
            result.series.header,
            result.series.rows,
            scores=score,
            alerts=alert,
            onsets=onset,
        )
        scores[kind], alerts[kind], onsets[kind] = score, alert, onset
        timestamps = [float(t) for t in result.series.timestamps]
        dropped = result.series.out_of_order
    return FileRun(
        name,
        rows,
        probation,
        dropped,
        train_seconds,
        replay_seconds,
        timestamps,
        scores,
        alerts,
        onsets,
    )


def _alert_column(outcomes: tuple[object, ...]) -> list[int]:
    from sensord.sample import Outcome

    column, state = [], 0
    for outcome in outcomes:
        if isinstance(outcome, Outcome):
            state = int(outcome.alert)
        column.append(state)
    return column


def _write_result(
    path: Path,
    header: tuple[str, ...],
    rows: tuple[tuple[str, ...], ...],
    *,
    scores: list[float],
    alerts: list[int],
    onsets: list[int],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*header, "anomaly_score", "alert", "raised"])
        for cells, score, alert, onset in zip(rows, scores, alerts, onsets, strict=True):
            writer.writerow([*cells, f"{score:.6f}", alert, onset])


def score_runs(
    runs: list[FileRun], detectors: Sequence[str], root: Path
) -> dict[str, dict[str, dict[str, CorpusScore]]]:
    """detector -> column (score / alert / raised) -> profile -> score."""
    windows = load_windows(root / "labels" / "combined_windows.json")
    profiles = load_profiles(root / "profiles.json")
    results: dict[str, dict[str, dict[str, CorpusScore]]] = {}
    for kind in detectors:
        columns: dict[str, list[ScoredFile]] = {"score": [], "alert": [], "raised": []}
        for run in runs:
            stamps = np.asarray(run.timestamps)
            spans = windows.get(run.name, [])
            columns["score"].append(prepare(run.name, stamps, np.asarray(run.scores[kind]), spans))
            columns["alert"].append(
                prepare(run.name, stamps, np.asarray(run.alerts[kind], float), spans)
            )
            columns["raised"].append(
                prepare(run.name, stamps, np.asarray(run.onsets[kind], float), spans)
            )
        results[kind] = {
            "score": score_all_profiles(columns["score"], profiles),
            "alert": score_all_profiles(columns["alert"], profiles, threshold=1.0),
            "raised": score_all_profiles(columns["raised"], profiles, threshold=1.0),
        }
    return results


def print_tables(
    results: dict[str, dict[str, dict[str, CorpusScore]]], runs: list[FileRun], default: str
) -> None:
    profiles = list(next(iter(results.values()))["score"])
    short = {"standard": "std", "reward_low_FP_rate": "lowFP", "reward_low_FN_rate": "lowFN"}
    heads = [
        f"{column} {short.get(p, p)}" for column in ("score", "raised", "alert") for p in profiles
    ]
    print(f"\n{'detector':<11}" + "".join(f"{h:>13}" for h in heads))
    for kind, columns in results.items():
        cells = [
            columns[column][p].normalized
            for column in ("score", "raised", "alert")
            for p in profiles
        ]
        print(f"{kind:<11}" + "".join(f"{c:>13.1f}" for c in cells))
    best = results[default]["score"]["standard"]
    print(
        f"\nper file, {default}, standard profile at threshold {best.threshold:.3f} "
        "(raw score; null = -windows)"
    )
    for run in runs:
        print(
            f"  {run.name:<58} {best.per_file[run.name]:>8.3f}  rows {run.rows:>6}  "
            f"train {run.train_seconds:5.1f} s  dropped {run.dropped}"
        )


def to_json(
    results: dict[str, dict[str, dict[str, CorpusScore]]],
    runs: list[FileRun],
    seconds: float,
    default: str,
) -> dict[str, object]:
    return {
        "default_detector": default,
        "seconds": seconds,
        "files": len(runs),
        "results": {
            kind: {
                column: {
                    profile: {
                        "normalized": s.normalized,
                        "threshold": s.threshold,
                        "raw": s.raw,
                        "null": s.null,
                        "perfect": s.perfect,
                        "per_file": s.per_file,
                    }
                    for profile, s in by_profile.items()
                }
                for column, by_profile in columns.items()
            }
            for kind, columns in results.items()
        },
        "runs": [
            {
                "file": r.name,
                "rows": r.rows,
                "probation": r.probation,
                "dropped_out_of_order": r.dropped,
                "train_seconds": r.train_seconds,
                "replay_seconds": r.replay_seconds,
            }
            for r in runs
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--nab-root",
        type=Path,
        default=DEFAULT_ROOT,
        help="NAB layout: data/, labels/combined_windows.json, profiles.json",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("nab-results"), help="where result files and bundles go"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument(
        "--detectors",
        default=",".join(DETECTOR_KINDS),
        help=f"comma-separated, from {', '.join(DETECTOR_KINDS)}",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", default=None, help="only files whose path contains this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = args.nab_root.resolve()
    files = sorted((root / "data").glob("*/*.csv"))
    if args.only:
        files = [f for f in files if args.only in f.as_posix()]
    if not files:
        print(f"no NAB data under {root / 'data'}", file=sys.stderr)
        return 1
    asked = [d.strip() for d in args.detectors.split(",") if d.strip()]
    unknown = sorted(set(asked) - set(DETECTOR_KINDS))
    if unknown:
        print(f"unknown detector(s): {', '.join(unknown)}", file=sys.stderr)
        return 1
    detectors = [kind for kind in DETECTOR_KINDS if kind in asked]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_file, f, root, args.out, detectors, args.seed) for f in files]
        runs = []
        for future in futures:
            run = future.result()
            runs.append(run)
            print(
                f"{run.name}: {run.rows} rows, trained on {run.probation} in "
                f"{run.train_seconds:.1f} s, replayed "
                + ", ".join(f"{k} {s:.1f} s" for k, s in run.replay_seconds.items()),
                flush=True,
            )
    results = score_runs(runs, detectors, root)
    seconds = time.perf_counter() - started
    default = DEFAULT_DETECTOR if DEFAULT_DETECTOR in detectors else detectors[0]
    print_tables(results, runs, default)
    print(f"\n{len(runs)} files in {seconds:.0f} s with {args.jobs} jobs")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(to_json(results, runs, seconds, default), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
